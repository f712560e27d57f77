//! The libp2p behaviours a Cairn node runs, and how each is configured.

use std::sync::Arc;
use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, dcutr, identify, identity, kad, mdns, relay, request_response,
};

use crate::codec::{RPC_PROTOCOL, RpcCodec};
use crate::stats::Counters;
use crate::{NetConfig, NetError};

/// The DHT protocol name; a private name keeps Cairn's DHT apart from IPFS's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/kad/1");

/// The version string identify announces.
pub const IDENTIFY_PROTOCOL: &str = "/cairn/id/1";

/// Streams one connection may carry at once, for both request-response and
/// the muxers. Requests are small and many, so this is generous.
pub(crate) const STREAMS_PER_CONNECTION_MAX: usize = 1024;

/// How often gossipsub maintains its mesh. Short, so a fresh node joins the
/// mesh (and can publish) within a fraction of a second.
const GOSSIP_HEARTBEAT: Duration = Duration::from_millis(500);

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub rpc: request_response::Behaviour<RpcCodec>,
    pub gossip: gossipsub::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub identify: identify::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub autonat: Toggle<autonat::Behaviour>,
    pub relay: Toggle<relay::client::Behaviour>,
    pub dcutr: Toggle<dcutr::Behaviour>,
}

/// The parts of [`Behaviour`] that can fail to build; built before the swarm
/// so that the swarm builder's closure cannot fail.
pub(crate) struct Parts {
    rpc: request_response::Behaviour<RpcCodec>,
    gossip: gossipsub::Behaviour,
    mdns: Option<mdns::tokio::Behaviour>,
}

impl Parts {
    pub fn new(
        key: &identity::Keypair,
        config: &NetConfig,
        counters: Arc<Counters>,
    ) -> Result<Self, NetError> {
        let peer = key.public().to_peer_id();
        let codec = RpcCodec {
            request_bytes_max: config.request_bytes_max,
            response_bytes_max: config.response_bytes_max,
            counters,
        };
        let rpc = request_response::Behaviour::with_codec(
            codec,
            [(RPC_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(STREAMS_PER_CONNECTION_MAX),
        );
        let gossip = gossip(key, config)?;
        let mdns = if config.mdns {
            let mdns = mdns::tokio::Behaviour::new(mdns::Config::default(), peer)
                .map_err(|e| NetError::Mdns(e.to_string()))?;
            Some(mdns)
        } else {
            None
        };
        Ok(Self { rpc, gossip, mdns })
    }

    /// Completes the behaviour with the infallible parts.
    pub fn finish(
        self,
        key: &identity::Keypair,
        relay: relay::client::Behaviour,
        nat: bool,
    ) -> Behaviour {
        let peer = key.public().to_peer_id();
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        // Cairn does not use DHT records; filtering inserts means records
        // that peers push are surfaced as events (and ignored) instead of
        // being stored.
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        let mut kad =
            kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), kad_config);
        kad.set_mode(Some(kad::Mode::Server));
        let identify = identify::Behaviour::new(identify::Config::new(
            IDENTIFY_PROTOCOL.to_string(),
            key.public(),
        ));
        let (autonat, relay, dcutr) = if nat {
            (
                Some(autonat::Behaviour::new(peer, autonat::Config::default())),
                Some(relay),
                Some(dcutr::Behaviour::new(peer)),
            )
        } else {
            (None, None, None)
        };
        Behaviour {
            rpc: self.rpc,
            gossip: self.gossip,
            kad,
            identify,
            mdns: self.mdns.into(),
            autonat: autonat.into(),
            relay: relay.into(),
            dcutr: dcutr.into(),
        }
    }
}

/// The id gossipsub deduplicates by: a hash of author and content, so the
/// same bytes from the same author are one message however often they are
/// published or forwarded, and a peer cannot suppress a message by
/// pre-publishing a colliding id (the hash is cryptographic).
fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let mut hasher = blake3::Hasher::new();
    match &message.source {
        Some(author) => {
            let author = author.to_bytes();
            hasher.update(&(author.len() as u64).to_le_bytes());
            hasher.update(&author);
        }
        None => {
            hasher.update(&u64::MAX.to_le_bytes());
        }
    }
    hasher.update(&message.data);
    gossipsub::MessageId::from(hasher.finalize().as_bytes().to_vec())
}

fn gossip(key: &identity::Keypair, config: &NetConfig) -> Result<gossipsub::Behaviour, NetError> {
    let gossip_error = |e: String| NetError::Gossip(e);
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        .validation_mode(ValidationMode::Strict)
        // The application validates every message and reports the verdict;
        // until then gossipsub neither forwards it nor credits its sender.
        .validate_messages()
        // Market messages must reach every subscribed peer quickly, not only
        // the mesh: publish to all of them.
        .flood_publish(true)
        .max_transmit_size(config.request_bytes_max)
        .message_id_fn(message_id)
        .build()
        .map_err(|e| gossip_error(e.to_string()))?;
    let mut gossip =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|e| gossip_error(e.to_string()))?;

    let mut score = gossipsub::PeerScoreParams::default();
    // Local clusters run many nodes on one address; colocation there is not
    // a Sybil signal.
    score
        .ip_colocation_factor_whitelist
        .insert(std::net::Ipv4Addr::LOCALHOST.into());
    let topics: Vec<IdentTopic> = config.topics.iter().map(IdentTopic::new).collect();
    for topic in &topics {
        score.topics.insert(topic.hash(), topic_score());
    }
    gossip
        .with_peer_score(score, gossipsub::PeerScoreThresholds::default())
        .map_err(gossip_error)?;
    for topic in &topics {
        gossip
            .subscribe(topic)
            .map_err(|e| gossip_error(format!("subscribing to '{topic}': {e}")))?;
    }
    Ok(gossip)
}

/// Scores for one topic. Market topics are quiet and bursty, so the
/// delivery-rate penalties (P3, P3b), which punish mesh peers for silence,
/// are off; invalid messages (P4) are what this scoring is for.
fn topic_score() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        // P1: a little credit for staying in the mesh, capped at 10.
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 1000.0,
        // P2: credit for being first to deliver valid messages, capped at 10.
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 100.0,
        // P3, P3b: off, see above.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: the count of invalid messages is squared, so with the default
        // thresholds (gossip -10, publish -50, graylist -80) one invalid
        // message costs 10, two stop gossip to the peer (-40), and three
        // graylist it (-90) until the count decays (by 10% a second).
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::PeerId;

    #[test]
    fn topic_score_is_accepted_by_gossipsub() {
        topic_score().validate().unwrap();
    }

    #[test]
    fn message_id_depends_on_author_and_data() {
        let message = |source: Option<PeerId>, data: &[u8]| gossipsub::Message {
            source,
            data: data.to_vec(),
            sequence_number: Some(1),
            topic: IdentTopic::new("t").hash(),
        };
        let a = Some(PeerId::random());
        let b = Some(PeerId::random());
        assert_eq!(message_id(&message(a, b"x")), message_id(&message(a, b"x")));
        assert_ne!(message_id(&message(a, b"x")), message_id(&message(b, b"x")));
        assert_ne!(message_id(&message(a, b"x")), message_id(&message(a, b"y")));
        assert_ne!(
            message_id(&message(None, b"x")),
            message_id(&message(a, b"x"))
        );
    }
}
