//! net: the libp2p shell that carries Cairn market messages between nodes.
//!
//! The crate moves opaque bytes and knows nothing of what they mean. Each
//! node authenticates as its `cairn_wire` ed25519 key (the libp2p peer id is
//! derived from it, and [`public_key`] recovers the key from a peer id), and
//! offers the application two ways to talk:
//!
//! - **gossip** (gossipsub): signed messages on named topics, delivered to
//!   every subscriber. The application must judge each received message with
//!   [`Network::report`]; only accepted messages are forwarded, and rejected
//!   ones lower the sender's score until it is cut off.
//! - **requests** (request-response on `/cairn/rpc/5`): one message each way,
//!   length-prefixed, with separate size limits for requests and responses
//!   and a timeout that bounds the whole exchange.
//!
//! Around them run Kademlia (peer discovery, in server mode), identify,
//! optional mDNS, and optional NAT traversal (AutoNAT, relay client, DCUtR),
//! over TCP (noise, yamux) and QUIC.
//!
//! [`Network::start`] spawns one task that owns the libp2p swarm; the
//! [`Network`] handle sends it commands and the application receives
//! [`Event`]s from a bounded queue. The task never waits for the application
//! on behalf of a peer: when the queue is full, inbound requests are refused
//! and gossip is ignored, and both are counted ([`Stats`]). Input from peers
//! never panics the node; what is malformed or oversized is dropped and
//! counted. The task stops when every handle and [`Responder`] is dropped.
//!
//! ```no_run
//! # async fn example() -> Result<(), cairn_net::NetError> {
//! use cairn_net::{Event, NetConfig, Network};
//!
//! let (network, mut events) = Network::start(NetConfig::loopback(cairn_wire::Keypair::generate())).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Request { data, reply, .. } = event {
//!         reply.send(data); // an echo server
//!     }
//! }
//! # drop(network);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod behaviour;
mod codec;
mod config;
mod network;
mod stats;

use std::fmt;

use cairn_wire::codec::DecodeFixed as _;
use libp2p::identity;
use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;

pub use behaviour::{IDENTIFY_PROTOCOL, KAD_PROTOCOL};
pub use codec::RPC_PROTOCOL;
pub use config::NetConfig;
pub use libp2p::gossipsub::MessageId;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
pub use network::Network;
pub use stats::Stats;

use network::Command;
use stats::{Counters, bump};

/// The libp2p peer id of a Cairn node key.
///
/// Ed25519 peer ids are the key itself (an identity multihash of its
/// protobuf encoding), so this never fails and [`public_key`] reverses it.
pub fn peer_id(key: &cairn_wire::PublicKey) -> PeerId {
    // The protobuf encoding of a libp2p public key: field 1 (key type) is
    // Ed25519 = 1, field 2 (data) is 32 bytes.
    let mut encoded = [0u8; 36];
    encoded[..4].copy_from_slice(&[0x08, 0x01, 0x12, 0x20]);
    encoded[4..].copy_from_slice(key.as_bytes());
    const IDENTITY: u64 = 0x00;
    let multihash = libp2p::multihash::Multihash::<64>::wrap(IDENTITY, &encoded)
        .expect("36 bytes fit a 64-byte multihash");
    PeerId::from_multihash(multihash).expect("an inline ed25519 key is a valid peer id")
}

/// The Cairn node key behind a peer id, or `None` if the peer id does not
/// inline an ed25519 key (hashed or other key types).
pub fn public_key(peer: &PeerId) -> Option<cairn_wire::PublicKey> {
    let multihash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if multihash.code() != 0x00 {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let bytes = key.try_into_ed25519().ok()?.to_bytes();
    cairn_wire::PublicKey::decode_fixed(bytes).ok()
}

/// What the network tells the application.
#[derive(Debug)]
pub enum Event {
    /// A gossip message, not yet forwarded: answer with [`Network::report`].
    Gossip {
        /// The message's id, for [`Network::report`].
        id: MessageId,
        /// The peer that passed the message on (not necessarily its author),
        /// for [`Network::report`].
        from: PeerId,
        /// The peer that signed the message.
        author: Option<PeerId>,
        /// The topic it was published on.
        topic: String,
        /// The payload.
        data: Vec<u8>,
    },
    /// A request from a peer; answer it through `reply`.
    Request {
        /// The requesting peer.
        from: PeerId,
        /// The request payload.
        data: Vec<u8>,
        /// Where the response goes.
        reply: Responder,
    },
    /// The first connection to a peer opened.
    Connected(PeerId),
    /// The last connection to a peer closed.
    Disconnected(PeerId),
}

/// The way back to a peer that sent a request. Dropping it without calling
/// [`Responder::send`] closes the stream, so the requester fails at once
/// instead of waiting for its timeout.
pub struct Responder {
    channel: ResponseChannel<Vec<u8>>,
    commands: mpsc::Sender<Command>,
    counters: std::sync::Arc<Counters>,
}

impl Responder {
    /// Sends the response. It is lost (and counted as a dropped command) if
    /// the network's command queue is full or the request has timed out.
    pub fn send(self, data: Vec<u8>) {
        let command = Command::Respond {
            channel: self.channel,
            data,
        };
        if self.commands.try_send(command).is_err() {
            bump(&self.counters.dropped_commands);
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

/// Why a network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration is inconsistent.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// The node key could not be converted to a libp2p key.
    #[error("node key rejected by libp2p: {0}")]
    Key(String),
    /// A transport (TCP, QUIC, relay) could not be built.
    #[error("cannot build transport: {0}")]
    Transport(String),
    /// Gossipsub rejected its configuration.
    #[error("cannot configure gossipsub: {0}")]
    Gossip(String),
    /// mDNS could not start.
    #[error("cannot start mdns: {0}")]
    Mdns(String),
    /// A listen address could not be bound.
    #[error("cannot listen on '{addr}': {reason}")]
    Listen {
        /// The address from the configuration.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No response arrived within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The peer could not be dialled.
    #[error("peer unreachable")]
    Unreachable,
    /// The connection closed before the response arrived.
    #[error("connection closed before the response")]
    ConnectionClosed,
    /// The peer does not speak the request protocol.
    #[error("peer does not support {RPC_PROTOCOL}")]
    Unsupported,
    /// The stream failed: the peer refused the request (too large, or no
    /// answer from its application), the response was too large or
    /// truncated, or the transport failed.
    #[error("request stream failed: {0}")]
    Stream(String),
    /// The network task has stopped.
    #[error("network stopped")]
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_matches_libp2p_derivation() {
        for seed in [[0u8; 32], [1; 32], [0xff; 32]] {
            let key = cairn_wire::Keypair::from_seed(seed);
            let libp2p_key = identity::Keypair::ed25519_from_bytes(seed).unwrap();
            assert_eq!(peer_id(&key.public()), libp2p_key.public().to_peer_id());
            assert_eq!(public_key(&peer_id(&key.public())), Some(key.public()));
        }
    }

    #[test]
    fn hashed_peer_id_has_no_key() {
        let hashed = libp2p::multihash::Multihash::<64>::wrap(0x12, &[7; 32]).unwrap();
        let peer = PeerId::from_multihash(hashed).unwrap();
        assert_eq!(public_key(&peer), None);
    }
}
