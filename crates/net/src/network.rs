//! The handle the application holds and the task that owns the swarm.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, identify, identity, kad, mdns, noise, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{
    Behaviour, BehaviourEvent, KAD_PROTOCOL, Parts, STREAMS_PER_CONNECTION_MAX,
};
use crate::config::bootstrap_peer;
use crate::stats::{Counters, bump};
use crate::{Event, NetConfig, NetError, RequestError, Responder, Stats};

/// Events waiting for the application. Beyond this, requests are refused and
/// gossip is ignored rather than buffered.
const EVENT_QUEUE_MAX: usize = 4096;

/// Commands waiting for the network task. `request` waits for room; the
/// synchronous calls (publish, report, dial, reply) drop and count.
const COMMAND_QUEUE_MAX: usize = 16_384;

/// How long an idle connection stays open. Long, so that peers that trade
/// requests now and then do not pay a handshake each time.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a node dials the bootstrap peers it is not connected to: a
/// peer that restarts (the requester a provider bootstrapped from, say) is
/// found again, and its orders reach this node again.
const BOOTSTRAP_REDIAL: Duration = Duration::from_secs(2);

/// How long `start` waits for its listeners to bind.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

type Reply = oneshot::Sender<Result<Vec<u8>, RequestError>>;

pub(crate) enum Command {
    Dial(Multiaddr),
    AddAddress(PeerId, Multiaddr),
    Publish {
        topic: String,
        data: Vec<u8>,
    },
    Report {
        id: MessageId,
        from: PeerId,
        valid: bool,
    },
    Request {
        peer: PeerId,
        data: Vec<u8>,
        reply: Reply,
    },
    Respond {
        channel: ResponseChannel<Vec<u8>>,
        data: Vec<u8>,
    },
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    GossipScore(PeerId, oneshot::Sender<Option<f64>>),
}

/// A handle to a running node. Cheap to clone; the node stops when every
/// handle and every outstanding [`Responder`] has been dropped.
#[derive(Clone)]
pub struct Network {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    listen_addrs: Arc<Mutex<Vec<Multiaddr>>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("local_peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Starts a node on the current tokio runtime (it panics outside one,
    /// like `tokio::spawn`). Returns once every listen
    /// address is bound and the bootstrap peers are being dialled, with the
    /// queue of events for the application.
    pub async fn start(config: NetConfig) -> Result<(Network, mpsc::Receiver<Event>), NetError> {
        config.check()?;
        let counters = Arc::new(Counters::default());
        let key = identity::Keypair::ed25519_from_bytes(config.key.secret_seed())
            .map_err(|e| NetError::Key(e.to_string()))?;
        let local_peer_id = key.public().to_peer_id();
        let parts = Parts::new(&key, &config, counters.clone())?;
        let transport = |e: noise::Error| NetError::Transport(e.to_string());
        let nat = config.nat;
        let swarm = SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux_config,
            )
            .map_err(transport)?
            .with_quic_config(|mut quic| {
                quic.max_concurrent_stream_limit = STREAMS_PER_CONNECTION_MAX as u32;
                quic
            })
            // The relay transport is always present; only its behaviour is
            // switched by `nat`, which keeps the swarm's type independent of
            // the configuration.
            .with_relay_client(noise::Config::new, yamux_config)
            .map_err(transport)?
            .with_behaviour(|key, relay| parts.finish(key, relay, nat))
            .unwrap_or_else(|never| match never {})
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            .build();

        let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE_MAX);
        let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE_MAX);
        let listen_addrs = Arc::new(Mutex::new(Vec::new()));
        let mut task = Task {
            swarm,
            events: event_tx,
            commands: command_tx.downgrade(),
            counters: counters.clone(),
            listen_addrs: listen_addrs.clone(),
            pending: HashMap::new(),
            bootstrap: config.bootstrap.clone(),
        };
        task.listen(&config.listen).await?;
        task.bootstrap(&config.bootstrap);
        tokio::spawn(task.run(command_rx));

        let network = Network {
            commands: command_tx,
            local_peer_id,
            listen_addrs,
            counters,
        };
        Ok((network, event_rx))
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses this node listens on, with their real ports. Other
    /// nodes can bootstrap from them with `/p2p/<local peer id>` appended.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Connects to an address; one ending in `/p2p/<peer id>` is only
    /// accepted if the remote proves that identity.
    pub fn dial(&self, addr: Multiaddr) {
        self.command(Command::Dial(addr));
    }

    /// Tells the node where `peer` can be reached, for later requests.
    pub fn add_address(&self, peer: PeerId, addr: Multiaddr) {
        self.command(Command::AddAddress(peer, addr));
    }

    /// Publishes `data` on `topic`, signed by this node. Failures (no peers
    /// subscribed, a duplicate, too large) are logged and counted in
    /// [`Stats::publish_failures`], not returned.
    pub fn publish(&self, topic: &str, data: Vec<u8>) {
        self.command(Command::Publish {
            topic: topic.to_string(),
            data,
        });
    }

    /// Reports the application's verdict on a gossip message received as
    /// [`Event::Gossip`]: valid messages are forwarded, invalid ones are
    /// dropped and lower the score of the peer that sent them.
    pub fn report(&self, id: MessageId, from: PeerId, valid: bool) {
        self.command(Command::Report { id, from, valid });
    }

    /// Sends `data` to `peer` and waits for its response, dialling the peer
    /// if needed. Fails after the configured request timeout at the latest.
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, RequestError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(Command::Request { peer, data, reply })
            .await
            .map_err(|_| RequestError::Stopped)?;
        response.await.unwrap_or(Err(RequestError::Stopped))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// The peers this node has at least one connection to.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        let (reply, peers) = oneshot::channel();
        if self
            .commands
            .send(Command::ConnectedPeers(reply))
            .await
            .is_err()
        {
            return Vec::new();
        }
        peers.await.unwrap_or_default()
    }

    /// The gossipsub score this node gives `peer`, or `None` if the peer is
    /// unknown to gossipsub. Invalid messages push it below zero; below -80
    /// the peer is ignored altogether.
    pub async fn gossip_score(&self, peer: PeerId) -> Option<f64> {
        let (reply, score) = oneshot::channel();
        self.commands
            .send(Command::GossipScore(peer, reply))
            .await
            .ok()?;
        score.await.ok().flatten()
    }

    fn command(&self, command: Command) {
        if self.commands.try_send(command).is_err() {
            bump(&self.counters.dropped_commands);
            tracing::warn!("network command dropped: queue full or network stopped");
        }
    }
}

fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(STREAMS_PER_CONNECTION_MAX);
    config
}

/// Dial options for an address, pinned to the peer id it names, if any.
fn dial_opts(addr: Multiaddr) -> DialOpts {
    match bootstrap_peer(&addr) {
        Some(peer) => DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(vec![addr])
            .build(),
        None => DialOpts::unknown_peer_id().address(addr).build(),
    }
}

/// The task that owns the swarm.
struct Task {
    swarm: Swarm<Behaviour>,
    events: mpsc::Sender<Event>,
    /// Weak, so that the task does not keep its own command queue open: the
    /// queue closes, and the task ends, when the application lets go.
    commands: mpsc::WeakSender<Command>,
    counters: Arc<Counters>,
    listen_addrs: Arc<Mutex<Vec<Multiaddr>>>,
    /// Outbound requests awaiting their response; each entry is removed by
    /// its response or failure, which the request timeout guarantees.
    pending: HashMap<OutboundRequestId, Reply>,
    /// The bootstrap peers' addresses, dialled again while disconnected.
    bootstrap: Vec<Multiaddr>,
}

impl Task {
    /// Starts every listener and drives the swarm until each has an address.
    async fn listen(&mut self, addrs: &[Multiaddr]) -> Result<(), NetError> {
        let mut waiting: HashMap<ListenerId, &Multiaddr> = HashMap::new();
        for addr in addrs {
            let id = self
                .swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
            waiting.insert(id, addr);
        }
        let deadline = tokio::time::sleep(LISTEN_TIMEOUT);
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            let event = tokio::select! {
                event = self.swarm.select_next_some() => event,
                () = &mut deadline => {
                    let addr = waiting.values().next().map(|a| a.to_string()).unwrap_or_default();
                    return Err(NetError::Listen { addr, reason: "no address bound in time".into() });
                }
            };
            let failed = |id: &ListenerId, reason: String| {
                waiting.get(id).map(|addr| NetError::Listen {
                    addr: addr.to_string(),
                    reason,
                })
            };
            match &event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    waiting.remove(listener_id);
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    if let Some(e) = failed(listener_id, error.to_string()) {
                        return Err(e);
                    }
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } => {
                    if let Some(e) = failed(listener_id, format!("listener closed: {reason:?}")) {
                        return Err(e);
                    }
                }
                _ => {}
            }
            self.on_swarm_event(event).await;
        }
        Ok(())
    }

    fn bootstrap(&mut self, addrs: &[Multiaddr]) {
        for addr in addrs {
            let Some(peer) = bootstrap_peer(addr) else {
                continue; // `NetConfig::check` refused these already.
            };
            let mut transport_addr = addr.clone();
            transport_addr.pop();
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, transport_addr);
            if let Err(e) = self.swarm.dial(dial_opts(addr.clone())) {
                tracing::warn!(%addr, "cannot dial bootstrap peer: {e}");
            }
        }
        if !addrs.is_empty()
            && let Err(e) = self.swarm.behaviour_mut().kad.bootstrap()
        {
            tracing::debug!("kademlia bootstrap not started: {e}");
        }
    }

    /// Dials each bootstrap peer this node is not connected to (nor
    /// dialling already).
    fn redial_bootstrap(&mut self) {
        for addr in &self.bootstrap {
            let Some(peer) = bootstrap_peer(addr) else {
                continue;
            };
            if !self.swarm.is_connected(&peer)
                && let Err(e) = self.swarm.dial(dial_opts(addr.clone()))
            {
                tracing::debug!(%addr, "redialling a bootstrap peer: {e}");
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut redial = tokio::time::interval(BOOTSTRAP_REDIAL);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                _ = redial.tick() => self.redial_bootstrap(),
            }
        }
        tracing::debug!("network task stopped: every handle was dropped");
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Dial(addr) => {
                if let Err(e) = self.swarm.dial(dial_opts(addr.clone())) {
                    tracing::debug!(%addr, "dial failed: {e}");
                }
            }
            Command::AddAddress(peer, addr) => {
                behaviour.kad.add_address(&peer, addr.clone());
                self.swarm.add_peer_address(peer, addr);
            }
            Command::Publish { topic, data } => {
                match behaviour
                    .gossip
                    .publish(IdentTopic::new(topic.clone()), data)
                {
                    Ok(_) => bump(&self.counters.published),
                    Err(e) => {
                        bump(&self.counters.publish_failures);
                        tracing::debug!(%topic, "publish failed: {e}");
                    }
                }
            }
            Command::Report { id, from, valid } => {
                let acceptance = if valid {
                    MessageAcceptance::Accept
                } else {
                    bump(&self.counters.gossip_invalid);
                    MessageAcceptance::Reject
                };
                behaviour
                    .gossip
                    .report_message_validation_result(&id, &from, acceptance);
            }
            Command::Request { peer, data, reply } => {
                let id = behaviour.rpc.send_request(&peer, data);
                bump(&self.counters.requests_out);
                self.pending.insert(id, reply);
            }
            Command::Respond { channel, data } => {
                if behaviour.rpc.send_response(channel, data).is_err() {
                    // The request timed out or its connection closed; the
                    // inbound failure is counted when libp2p reports it.
                    tracing::debug!("response dropped: request no longer pending");
                }
            }
            Command::GossipScore(peer, reply) => {
                let _ = reply.send(behaviour.gossip.peer_score(&peer));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(event)) => self.on_gossip(event),
            // Only peers that serve our DHT belong in its routing table.
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.contains(&KAD_PROTOCOL) => {
                let kad = &mut self.swarm.behaviour_mut().kad;
                for addr in info.listen_addrs {
                    kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let mut peers = HashSet::new();
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    self.swarm.add_peer_address(peer, addr);
                    peers.insert(peer);
                }
                for peer in peers {
                    let opts = DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, "cannot dial mdns peer: {e}");
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::InboundRequest { request })) => {
                tracing::trace!(?request, "kademlia request");
            }
            SwarmEvent::Behaviour(event) => tracing::trace!(?event, "behaviour event"),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.addrs().push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.addrs().retain(|a| *a != address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1 => {
                // Connection events are rare and the application must not
                // miss them, so they wait for room in the queue.
                let _ = self.events.send(Event::Connected(peer_id)).await;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                let _ = self.events.send(Event::Disconnected(peer_id)).await;
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, "outgoing connection failed: {error}");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection failed: {error}");
            }
            _ => {}
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event as Rpc, Message};
        match event {
            Rpc::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                bump(&self.counters.requests_in);
                let Some(commands) = self.commands.upgrade() else {
                    return; // Shutting down; dropping the channel refuses it.
                };
                let event = Event::Request {
                    from: peer,
                    data: request,
                    reply: Responder {
                        channel,
                        commands,
                        counters: self.counters.clone(),
                    },
                };
                // A full queue means the application is behind: refuse the
                // request now (the requester sees the stream close) rather
                // than stall every other connection.
                if self.events.try_send(event).is_err() {
                    bump(&self.counters.dropped_backpressure);
                    tracing::debug!(%peer, "request refused: event queue full");
                }
            }
            Rpc::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Rpc::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                bump(&self.counters.outbound_failures);
                tracing::debug!(%peer, "request failed: {error}");
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(request_error(error)));
                }
            }
            Rpc::InboundFailure { peer, error, .. } => {
                bump(&self.counters.inbound_failures);
                tracing::debug!(%peer, "inbound request failed: {error}");
            }
            Rpc::ResponseSent { .. } => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            tracing::trace!(?event, "gossipsub event");
            return;
        };
        let event = Event::Gossip {
            id: message_id.clone(),
            from: propagation_source,
            author: message.source,
            topic: message.topic.into_string(),
            data: message.data,
        };
        if self.events.try_send(event).is_err() {
            // Ignoring (rather than rejecting) drops the message without
            // blaming the peer for our own backlog.
            bump(&self.counters.dropped_backpressure);
            self.swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    MessageAcceptance::Ignore,
                );
        }
    }

    fn addrs(&self) -> std::sync::MutexGuard<'_, Vec<Multiaddr>> {
        self.listen_addrs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn request_error(error: OutboundFailure) -> RequestError {
    match error {
        OutboundFailure::DialFailure => RequestError::Unreachable,
        OutboundFailure::Timeout => RequestError::Timeout,
        OutboundFailure::ConnectionClosed => RequestError::ConnectionClosed,
        OutboundFailure::UnsupportedProtocols => RequestError::Unsupported,
        OutboundFailure::Io(e) => RequestError::Stream(e.to_string()),
    }
}
