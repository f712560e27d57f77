//! The market roles of a node, wired to the network: a requester that
//! auctions jobs and hands out tasks, and a provider that bids, signs
//! leases and runs tasks.
//!
//! The decisions live in pure state machines (`cairn-market`'s auction and
//! pricing, `cairn-sched`'s queue); this module is the shell that feeds
//! them network messages and clock readings and carries out what they say.
//! Everything a peer sends is decoded with limits, checked, and dropped
//! and counted when bad ([`Counters`]).

mod adjudicator;
pub mod adversary;
mod answers;
mod claims;
mod grants;
mod ledger_link;
mod outbox;
mod provider;
mod rate;
mod requester;
mod verification;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_exec::{ModuleCache, WasmConfig, WasmRuntime};
use cairn_net::{Event, Multiaddr, Network, PeerId};
// The protocol's messages live in their own crate so their decoder can be
// fuzzed without building the node; `super::proto::…` keeps naming them.
use cairn_proto as proto;
use cairn_sched::SchedParams;
use cairn_store::{BlobStore, Db};
use cairn_wire::{ContentId, Keypair};

pub use adversary::{Misbehave, RequesterMisbehave};
pub use cairn_api::{JobStatus, MarketStats, TaskRecord};
pub use ledger_link::{AccountView, CHALLENGES_LISTED_MAX, LedgerLink, challenges_against};
pub use outbox::{Fate, Outbox, Ticket};
pub use proto::{
    ORDERS_TOPIC, Request, Response, Submission, SubmittedFile, SubmittedLimits, SubmittedTask,
    SubmittedVerify,
};
pub use provider::{ProviderConfig, TaskCaps};
pub use requester::{CancelError, FRAMED_COMMITS_MAX};

use crate::NodeError;

/// The largest blob a node stores or fetches.
pub const BLOB_BYTES_MAX: u64 = 1 << 30;
/// Bytes of a blob asked for in one request.
const BLOB_RANGE_BYTES: u64 = 4 << 20;
/// How long a fetch waits for another fetch of the same blob to finish.
const BLOB_BUSY_WAIT_MAX: Duration = Duration::from_secs(60);
/// Requests for ranges of one blob outstanding at once, so the link and the
/// verification overlap instead of taking turns.
const BLOB_RANGES_IN_FLIGHT: usize = 4;

/// Settings of the market roles.
#[derive(Clone, Debug)]
pub struct MarketConfig {
    /// Where jobs, leases and blobs are kept.
    pub data_dir: PathBuf,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers to contact first (`…/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS discovery on the LAN.
    pub mdns: bool,
    /// AutoNAT, relay client and hole punching.
    pub nat: bool,
    /// Run the provider role with these resources, if any.
    pub provider: Option<ProviderConfig>,
    /// How long a requester collects bids.
    pub bid_window_ms: u32,
    /// The requester's queue bounds.
    pub sched: SchedParams,
    /// How the requester verifies results: replication, spot checks, and
    /// how long it waits for reveals and dispute answers.
    pub verify: cairn_verify::Params,
    /// Where compiled modules are kept (nodes on one machine may share it).
    pub module_cache_dir: PathBuf,
    /// The most bytes of compiled modules kept there.
    pub module_cache_bytes_max: u64,
    /// Make the requester role cheat on purpose (tests only: set by
    /// [`adversary::configure`], always `None` in a build without the
    /// adversaries).
    pub requester_misbehave: Option<RequesterMisbehave>,
}

impl MarketConfig {
    /// Defaults for a node on loopback with data under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            module_cache_dir: data_dir.join("modules"),
            module_cache_bytes_max: 2 << 30,
            data_dir,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
            bootstrap: Vec::new(),
            mdns: false,
            nat: false,
            provider: None,
            bid_window_ms: 50,
            requester_misbehave: None,
            sched: SchedParams {
                task_deadline_ms: 60_000,
                silence_ms_max: 10_000,
                ..SchedParams::default()
            },
            verify: cairn_verify::Params::default(),
        }
    }
}

/// What a node dropped or refused from its peers, by kind.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages that did not decode.
    pub malformed: AtomicU64,
    /// Signatures that did not verify.
    pub bad_signature: AtomicU64,
    /// Orders seen before, or past their window.
    pub replayed: AtomicU64,
    /// Requests refused for breaking the protocol (wrong lease, wrong
    /// sender, not assigned).
    pub refused: AtomicU64,
    /// Requests and orders over a peer's rate, or over the node's
    /// in-flight bound: answered "busy" without being read.
    pub rate_limited: AtomicU64,
    /// Bids this provider sent.
    pub bids: AtomicU64,
    /// Orders this provider declined, with a reason sent.
    pub declines: AtomicU64,
    /// Leases this provider signed.
    pub leases: AtomicU64,
    /// Tasks this provider ran to a result (exit, trap or limit).
    pub tasks_run: AtomicU64,
    /// Tasks this provider could not run (module, inputs, storage).
    pub tasks_failed: AtomicU64,
    /// Fuel the tasks it ran used.
    pub fuel_used: AtomicU64,
}

/// What one peer may ask per second (pulls, blob ranges, bids, dispute
/// questions), and in a burst. Far above what an honest peer sends: a
/// provider of tiny tasks pulls about a hundred times a second, and a blob
/// transfer keeps a few ranges in flight.
const PEER_REQUESTS_PER_S: u32 = 2_000;
const PEER_REQUESTS_BURST: u32 = 4_000;
/// Orders one requester may announce per second, and in a burst.
const PEER_ORDERS_PER_S: u32 = 50;
const PEER_ORDERS_BURST: u32 = 200;
/// Requests served at once, all peers together: each holds a task and
/// perhaps a blob range in memory.
const REQUESTS_IN_FLIGHT_MAX: usize = 1_024;

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What both roles share.
pub(crate) struct Shared {
    pub key: Keypair,
    pub net: Network,
    pub blobs: BlobStore,
    pub db: Db,
    pub ledger: Arc<Outbox>,
    pub counters: Counters,
    /// Who may fetch which blob from this node.
    pub grants: grants::Grants,
    /// Blobs the requester role keeps for its jobs (modules, inputs,
    /// results): never deleted by the provider role's clean-up, which
    /// shares the store.
    pub pinned: Mutex<HashSet<ContentId>>,
    /// Compiled modules, shared by every node on the machine that uses
    /// the same folder.
    pub modules: ModuleCache,
}

impl Shared {
    /// Keeps `blobs` for the requester role's jobs.
    pub fn pin(&self, blobs: impl IntoIterator<Item = ContentId>) {
        self.pinned.lock().extend(blobs);
    }

    /// A Wasm runtime that keeps what it compiles in the module cache.
    pub fn wasm_runtime(&self) -> Result<WasmRuntime, String> {
        WasmRuntime::new(WasmConfig::default())
            .map(|runtime| runtime.with_cache(self.modules.clone()))
            .map_err(|e| e.to_string())
    }
}

/// A running market node: the handle the HTTP API uses.
#[derive(Clone)]
pub struct Market {
    shared: Arc<Shared>,
    requester: Arc<requester::Requester>,
    provider: Option<Arc<provider::Provider>>,
    adjudicator: Arc<adjudicator::Adjudicator>,
    limits: Arc<Limits>,
}

/// The bounds on what peers may ask of this node.
struct Limits {
    requests: rate::RateLimit<PeerId>,
    orders: rate::RateLimit<PeerId>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Milliseconds since the Unix epoch: the only clock reading the market
/// shell makes; the state machines get it as an argument.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Market {
    /// Starts the network and the roles; restores jobs and leases that were
    /// in progress. Must run inside a tokio runtime.
    pub async fn start(
        key: Keypair,
        config: MarketConfig,
        ledger: LedgerLink,
    ) -> Result<Self, NodeError> {
        let blobs = BlobStore::open(&config.data_dir.join("blobs"), BLOB_BYTES_MAX)
            .map_err(|e| NodeError::Io(format!("blob store: {e}")))?;
        let db = Db::open(&config.data_dir.join("market.redb"))
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let modules = ModuleCache::open(&config.module_cache_dir, config.module_cache_bytes_max)
            .map_err(|e| NodeError::Io(format!("module cache: {e}")))?;
        let mut net_config = cairn_net::NetConfig::loopback(key.clone());
        net_config.listen = config.listen.clone();
        net_config.bootstrap = config.bootstrap.clone();
        net_config.mdns = config.mdns;
        net_config.nat = config.nat;
        net_config.topics = vec![ORDERS_TOPIC.to_string()];
        net_config.request_bytes_max = 4 << 20;
        net_config.response_bytes_max = 16 << 20;
        net_config.request_timeout = Duration::from_secs(30);
        let (net, events) = Network::start(net_config)
            .await
            .map_err(|e| NodeError::Io(format!("network: {e}")))?;
        let outbox = Outbox::start(ledger, key.clone(), db.clone())
            .await
            .map_err(|e| NodeError::Config(format!("cannot reach the ledger: {e}")))?;
        let shared = Arc::new(Shared {
            key,
            net,
            blobs,
            db,
            ledger: outbox,
            counters: Counters::default(),
            grants: grants::Grants::default(),
            pinned: Mutex::new(HashSet::new()),
            modules,
        });
        let adjudicator =
            adjudicator::Adjudicator::new(shared.clone(), config.data_dir.join("adjudicator"));
        let requester = requester::Requester::start(shared.clone(), &config, adjudicator.clone())
            .map_err(|e| NodeError::Config(format!("restoring jobs: {e}")))?;
        let provider = match &config.provider {
            Some(provider_config) => Some(
                provider::Provider::start(shared.clone(), provider_config.clone(), &config)
                    .await
                    .map_err(|e| NodeError::Config(format!("provider: {e}")))?,
            ),
            None => None,
        };
        let market = Self {
            shared,
            requester,
            provider,
            adjudicator,
            limits: Arc::new(Limits {
                requests: rate::RateLimit::new(PEER_REQUESTS_PER_S, PEER_REQUESTS_BURST),
                orders: rate::RateLimit::new(PEER_ORDERS_PER_S, PEER_ORDERS_BURST),
                in_flight: Arc::new(tokio::sync::Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
            }),
        };
        tokio::spawn(market.clone().dispatch(events));
        Ok(market)
    }

    /// Hands network events to the roles. Each request is served on its own
    /// task, so a slow one (fetching a blob, say) never blocks the others.
    async fn dispatch(self, mut events: tokio::sync::mpsc::Receiver<Event>) {
        while let Some(event) = events.recv().await {
            match event {
                Event::Gossip {
                    id,
                    from,
                    author,
                    data,
                    ..
                } => {
                    let valid = match (&self.provider, author) {
                        // An author over its rate is not read (nor
                        // penalised: the order may be fine, just too many).
                        (Some(_), Some(peer)) if !self.limits.orders.allow(&peer, now_ms()) => {
                            Counters::bump(&self.shared.counters.rate_limited);
                            true
                        }
                        (Some(provider), author) => provider.on_order(author, &data),
                        (None, _) => true,
                    };
                    self.shared.net.report(id, from, valid);
                }
                Event::Request { from, data, reply } => {
                    let permit = self.limits.in_flight.clone().try_acquire_owned().ok();
                    let Some(permit) =
                        permit.filter(|_| self.limits.requests.allow(&from, now_ms()))
                    else {
                        Counters::bump(&self.shared.counters.rate_limited);
                        reply.send(proto::to_bytes(&Response::Refused(
                            "busy: too many requests, ask again later".into(),
                        )));
                        continue;
                    };
                    let market = self.clone();
                    tokio::spawn(async move {
                        let response = market.serve(from, &data).await;
                        reply.send(proto::to_bytes(&response));
                        drop(permit);
                    });
                }
                Event::Connected(_) => {}
                Event::Disconnected(peer) => self.requester.peer_lost(&peer),
            }
        }
    }

    async fn serve(&self, from: PeerId, data: &[u8]) -> Response {
        let request = match proto::from_bytes::<Request>(data) {
            Ok(request) => request,
            Err(e) => {
                Counters::bump(&self.shared.counters.malformed);
                return Response::Refused(format!("malformed request: {e}"));
            }
        };
        let Some(sender) = cairn_net::public_key(&from) else {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("peer id is not an ed25519 key".into());
        };
        match request {
            Request::Bid(bid) => self.requester.on_bid(sender, bid),
            Request::Decline { order, reason } => self.requester.on_decline(sender, order, &reason),
            Request::Pull {
                lease,
                want,
                reports,
                held,
                awaiting,
            } => {
                let asked = cairn_roles::requester::Asked {
                    want,
                    held,
                    received_ms: now_ms(),
                    awaiting,
                };
                self.requester
                    .on_pull(from, sender, lease, reports, asked)
                    .await
            }
            Request::Lease {
                lease,
                slots,
                terms,
            } => match &self.provider {
                Some(provider) => provider.on_lease(from, sender, lease, slots, terms),
                None => Response::Refused("this node is not a provider".into()),
            },
            Request::Blob { id, offset, len } => self.serve_blob(sender, id, offset, len).await,
            Request::Dispute { lease, task, ask } => match &self.provider {
                Some(provider) => provider.on_dispute(sender, lease, task, ask).await,
                None => Response::Refused("this node is not a provider".into()),
            },
            Request::Adjudicate(case) => self.adjudicator.on_case(from, sender, *case).await,
        }
    }

    /// A range of a blob, to a party of the work it belongs to. Reading
    /// and hashing the range (up to the range limit) is disk and CPU work:
    /// it runs on a blocking thread, not on an async worker.
    async fn serve_blob(
        &self,
        sender: cairn_wire::PublicKey,
        id: ContentId,
        offset: u64,
        len: u32,
    ) -> Response {
        if !self.shared.grants.allows(&id, &sender) {
            Counters::bump(&self.shared.counters.refused);
            // The same answer whether or not the blob is here: a stranger
            // learns nothing of what this node holds.
            return Response::Refused(format!("blob {} is not yours to fetch", id.short()));
        }
        let shared = self.shared.clone();
        let served = tokio::task::spawn_blocking(move || {
            shared.blobs.encode_range(&id, offset, u64::from(len))
        })
        .await;
        match served {
            Ok(Ok((size, encoded))) => Response::Blob {
                size,
                encoded: encoded.into(),
            },
            Ok(Err(e)) => Response::Refused(e.to_string()),
            Err(_) => Response::Refused("the blob could not be read".into()),
        }
    }

    /// Submits a job; returns its id once its escrow is queued.
    pub async fn submit(&self, submission: Submission) -> Result<ContentId, String> {
        self.requester.submit(submission).await
    }

    /// A job's status.
    pub fn job(&self, id: &ContentId) -> Option<JobStatus> {
        self.requester.status(id)
    }

    /// Cancels a job (see `RequesterCore::cancel`): what was accepted is
    /// paid, the rest given up, and the rest of its escrow returns.
    pub async fn cancel(&self, id: &ContentId) -> Result<JobStatus, CancelError> {
        self.requester.cancel(id).await
    }

    /// Judges a job's results for its requester (see
    /// `RequesterCore::judge`): approved ones are paid when it settles,
    /// rejected ones run again elsewhere.
    pub async fn judge(
        &self,
        id: &ContentId,
        approval: &cairn_api::Approval,
    ) -> Result<JobStatus, cairn_roles::requester::ApprovalRefused> {
        self.requester.judge(id, approval).await
    }

    /// Adds tasks to a live stream (see `RequesterCore::extend`).
    pub async fn extend(
        &self,
        id: &ContentId,
        tasks: Vec<cairn_api::SubmittedTask>,
    ) -> Result<cairn_api::TasksAdded, cairn_roles::requester::StreamRefused> {
        self.requester.extend(id, tasks).await
    }

    /// Ends a live stream (see `RequesterCore::end_stream`).
    pub async fn end_stream(
        &self,
        id: &ContentId,
    ) -> Result<JobStatus, cairn_roles::requester::StreamRefused> {
        self.requester.end_stream(id).await
    }

    /// Every job this node requested.
    pub fn jobs(&self) -> Vec<JobStatus> {
        self.requester.statuses()
    }

    /// Every provider that bid for this node's work, most recent first.
    pub fn providers(&self) -> Vec<cairn_api::ProviderSeen> {
        self.requester.providers()
    }

    /// The prices this node's auctions cleared at, oldest first.
    pub fn prices(&self) -> Vec<cairn_api::PricePoint> {
        self.requester.prices()
    }

    /// A page of a job's results (see `Requester::results`).
    pub fn results(
        &self,
        id: &ContentId,
        from: u32,
        limit: u32,
    ) -> Result<Option<cairn_api::JobResults>, String> {
        self.requester.results(id, from, limit)
    }

    /// Stores results as if the requester had accepted them, for tests of
    /// what reads them.
    #[cfg(test)]
    pub(crate) fn store_results(&self, job: &ContentId, records: &[TaskRecord]) {
        let writes: Vec<_> = records
            .iter()
            .map(|record| {
                requester::write_op(&cairn_roles::requester::Write::Result {
                    job: *job,
                    record: Box::new(record.clone()),
                })
            })
            .collect();
        self.shared.db.write(&writes).unwrap();
    }

    /// The blob store (uploads and downloads through the API).
    pub fn blobs(&self) -> &BlobStore {
        &self.shared.blobs
    }

    /// Lets `party` fetch `blob` from this node, under its own scope (the
    /// blob's id): for an operator sharing a file on purpose, and for the
    /// transfer benchmark. False when the grant table is full.
    pub fn share(&self, blob: ContentId, party: cairn_wire::PublicKey) -> bool {
        self.shared.grants.grant(blob, [blob], party)
    }

    /// This node's network identity and addresses.
    pub fn peer_id(&self) -> PeerId {
        self.shared.net.local_peer_id()
    }

    /// Dialable addresses, each ending in `/p2p/<peer id>`.
    pub fn addresses(&self) -> Vec<Multiaddr> {
        let me = self.peer_id();
        self.shared
            .net
            .listen_addrs()
            .into_iter()
            .map(|a| a.with(cairn_net::Protocol::P2p(me)))
            .collect()
    }

    /// What was dropped and refused, and what this node did as a provider.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Counters of what was dropped and refused.
    pub async fn stats(&self) -> MarketStats {
        let c = &self.shared.counters;
        let net = self.shared.net.stats();
        MarketStats {
            key: self.shared.key.public(),
            peer_id: self.peer_id().to_string(),
            listen: self.addresses().iter().map(ToString::to_string).collect(),
            peers: self.shared.net.connected_peers().await.len() as u64,
            malformed: c.malformed.load(Ordering::Relaxed),
            bad_signature: c.bad_signature.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            oversized: net.dropped_oversized,
            truncated: net.dropped_malformed,
        }
    }

    /// Fetches a blob from `peer` into this node's store, verified.
    pub async fn fetch(&self, peer: PeerId, id: ContentId, size: u64) -> Result<(), String> {
        Ok(fetch_blob(&self.shared, peer, id, size).await?)
    }

    /// Checks that `peer` serves blob `id` of `size` bytes intact: every
    /// range is fetched and verified against the id, and nothing is stored
    /// (an audit of a provider's copy).
    pub async fn audit(&self, peer: PeerId, id: ContentId, size: u64) -> Result<(), String> {
        fetch_ranges(&self.shared, peer, id, size, 0, |offset, len, encoded| {
            cairn_store::verify_range(&id, size, offset, len, encoded)
                .map(drop)
                .map_err(|e| format!("blob {} from {peer}: {e}", id.short()))
        })
        .await
    }

    /// The network handle (for tests that speak the protocol directly).
    pub fn network(&self) -> &Network {
        &self.shared.net
    }
}

/// Why a blob could not be fetched.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// Another fetch of the same blob (from another peer) held it for
    /// [`BLOB_BUSY_WAIT_MAX`]: nothing `peer` did, so nothing to hold
    /// against it; try again later.
    Busy(String),
    /// The transfer from `peer` failed, or what it sent was wrong.
    Failed(String),
}

impl From<FetchError> for String {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Busy(e) | FetchError::Failed(e) => e,
        }
    }
}

/// Fetches blob `id` of `size` bytes from `peer` into the store, verifying
/// each range; resumes a partial download.
pub(crate) async fn fetch_blob(
    shared: &Shared,
    peer: PeerId,
    id: ContentId,
    size: u64,
) -> Result<(), FetchError> {
    // Another task may be fetching the same blob (replicas of one task
    // return identical outputs): wait for it rather than fail.
    let started = std::time::Instant::now();
    let mut download = loop {
        if shared.blobs.has(&id) {
            return Ok(());
        }
        match shared.blobs.download(id, size) {
            Ok(download) => break download,
            Err(cairn_store::BlobError::Busy(_)) if started.elapsed() < BLOB_BUSY_WAIT_MAX => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e @ cairn_store::BlobError::Busy(_)) => {
                return Err(FetchError::Busy(e.to_string()));
            }
            Err(e) => return Err(FetchError::Failed(e.to_string())),
        }
    };
    let from = download.verified_bytes();
    fetch_ranges(shared, peer, id, size, from, |offset, len, encoded| {
        download
            .accept(offset, len, encoded)
            .map_err(|e| format!("blob {} from {peer}: {e}", id.short()))
    })
    .await
    .map_err(FetchError::Failed)?;
    download
        .finish()
        .map_err(|e| FetchError::Failed(e.to_string()))?;
    Ok(())
}

/// Asks `peer` for blob `id` from byte `from` to its end in ranges, a few in
/// flight so the link and verification overlap, and hands each answer to
/// `take` in order.
async fn fetch_ranges(
    shared: &Shared,
    peer: PeerId,
    id: ContentId,
    size: u64,
    from: u64,
    mut take: impl FnMut(u64, u64, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut next = from;
    let mut in_flight = futures::stream::FuturesOrdered::new();
    loop {
        while in_flight.len() < BLOB_RANGES_IN_FLIGHT && next < size {
            let len = BLOB_RANGE_BYTES.min(size - next);
            let request = proto::to_bytes(&Request::Blob {
                id,
                offset: next,
                len: len as u32,
            });
            let net = shared.net.clone();
            let offset = next;
            in_flight.push_back(async move { (offset, len, net.request(peer, request).await) });
            next += len;
        }
        let Some((offset, len, answer)) = futures::StreamExt::next(&mut in_flight).await else {
            return Ok(());
        };
        let bytes = answer.map_err(|e| format!("fetching blob {}: {e}", id.short()))?;
        match proto::response(bytes) {
            Ok(Response::Blob { encoded, .. }) => take(offset, len, &encoded)?,
            Ok(Response::Refused(reason)) => {
                return Err(format!("blob {}: peer refused: {reason}", id.short()));
            }
            Ok(_) | Err(_) => {
                Counters::bump(&shared.counters.malformed);
                return Err(format!("blob {}: malformed answer", id.short()));
            }
        }
    }
}
