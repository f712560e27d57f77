//! Settings of one network node.

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

use crate::NetError;

/// How a node identifies itself, where it listens, whom it contacts first,
/// and the limits it puts on what peers send it.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The node's identity; its libp2p peer id is derived from the public half.
    pub key: cairn_wire::Keypair,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/0` and
    /// `/ip4/0.0.0.0/udp/0/quic-v1`. Port 0 picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Peers to contact at start. Each address must end in `/p2p/<peer id>`;
    /// it is dialled and added to the DHT routing table.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Run AutoNAT, the relay client and hole punching (DCUtR), for nodes
    /// behind NAT.
    pub nat: bool,
    /// Gossip topics to subscribe to.
    pub topics: Vec<String>,
    /// The largest inbound request, and the largest gossip message, accepted.
    pub request_bytes_max: usize,
    /// The largest inbound response accepted.
    pub response_bytes_max: usize,
    /// How long a request may take, from sending to the whole response
    /// having arrived; the same bound applies to serving an inbound request.
    pub request_timeout: Duration,
}

/// The largest frame length the wire format can announce.
const FRAME_BYTES_MAX: usize = u32::MAX as usize;

impl NetConfig {
    /// A node for tests and local clusters: TCP on an ephemeral loopback
    /// port, no bootstrap peers, mDNS and NAT traversal off, no topics,
    /// requests up to 1 MiB, responses up to 16 MiB, a 10 s request timeout.
    pub fn loopback(key: cairn_wire::Keypair) -> Self {
        Self {
            key,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            bootstrap: Vec::new(),
            mdns: false,
            nat: false,
            topics: Vec::new(),
            request_bytes_max: 1 << 20,
            response_bytes_max: 16 << 20,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Checks the relationships between settings that `Network::start`
    /// relies on.
    pub fn check(&self) -> Result<(), NetError> {
        let invalid = |reason: String| Err(NetError::Config(reason));
        if self.listen.is_empty() {
            return invalid("no listen address".into());
        }
        for (name, value) in [
            ("request_bytes_max", self.request_bytes_max),
            ("response_bytes_max", self.response_bytes_max),
        ] {
            if value == 0 || value > FRAME_BYTES_MAX {
                return invalid(format!(
                    "{name} is {value}; it must be between 1 and {FRAME_BYTES_MAX}"
                ));
            }
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout is zero".into());
        }
        for addr in &self.bootstrap {
            if bootstrap_peer(addr).is_none() {
                return invalid(format!(
                    "bootstrap address '{addr}' does not end in /p2p/<peer id>"
                ));
            }
        }
        for topic in &self.topics {
            if topic.is_empty() {
                return invalid("empty topic name".into());
            }
        }
        Ok(())
    }
}

/// The peer id at the end of a bootstrap address.
pub(crate) fn bootstrap_peer(addr: &Multiaddr) -> Option<libp2p::PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetConfig {
        NetConfig::loopback(cairn_wire::Keypair::from_seed([7; 32]))
    }

    #[test]
    fn loopback_is_valid() {
        config().check().unwrap();
    }

    #[test]
    fn bootstrap_without_peer_id_is_refused() {
        let mut c = config();
        c.bootstrap = vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()];
        assert!(matches!(c.check(), Err(NetError::Config(_))));
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut c = config();
        c.response_bytes_max = 0;
        assert!(c.check().is_err());
        let mut c = config();
        c.request_timeout = Duration::ZERO;
        assert!(c.check().is_err());
    }
}
