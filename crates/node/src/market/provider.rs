//! The provider role: answers orders with bids, signs leases, pulls tasks
//! and runs them in the Wasm sandbox, never more at once than it offered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use cairn_exec::{Runtime as _, Task, ToolConfig, ToolRuntime, Trace, WasmRuntime};
use cairn_ledger::{Capabilities, Lease, RECEIPT_NAMESPACE, Receipt, TxKind};
use cairn_market::{
    BID_NAMESPACE, Bid, ISA_BYTES_MAX, ORDER_NAMESPACE, Offer, Order, RUNTIMES_MAX, ScalePricing,
    ToolBuild,
};
use cairn_net::PeerId;
use cairn_store::{Db, Op, Table};
use cairn_wire::codec::{DecodeExt as _, Encode as _};
use cairn_wire::{ContentId, PublicKey, Signed};
use tokio::sync::{Semaphore, mpsc};

use super::proto::{
    self, Assignment, CLAIM_NAMESPACE, DisputeAsk, FileRef, Report, Request, Response, StreamRef,
    Terms, TraceClaim,
};
use super::{Counters, MarketConfig, Shared, fetch_blob, now_ms};

use super::adversary::{Misbehave, RenderCheat, TrainingCheat};
use cairn_roles::bidder::{Answer, Bidder, Ignored, Needs, UNDERPAID_MAX};
use cairn_roles::lease_work::{Awaiting, Finished, LeaseWork, Next, Others, Stored, Write};

/// Requesters whose funding is remembered, and for how long.
const FUNDED_MAX: usize = 4_096;
const FUNDED_TTL_MS: u64 = 30_000;
/// How long a job's escrow, as read from the ledger, is taken as current.
const ESCROW_TTL_MS: u64 = 2_000;
/// Compile speed assumed before this provider has measured its own: a
/// modest single core's (wasmtime's Cranelift at full optimisation).
const COMPILE_BYTES_PER_MS_INITIAL: u64 = 1_000;
/// Download speed assumed for a module when estimating start-up time.
const FETCH_BYTES_PER_MS_ASSUMED: u64 = 10_000;

/// A task run under a lease, handed back to its pull loop.
struct Done {
    /// Its report, sealed on the executor's thread.
    finished: Finished,
    /// How long it took, queueing for a slot included.
    took: Duration,
    /// The CPU time a tool task took, where its group counted it.
    cpu_time: Option<Duration>,
}

/// What a provider offers and how it prices.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Its resources.
    pub offer: Offer,
    /// Its pricing policy.
    pub pricing: ScalePricing,
    /// Stake to bond on the ledger at start if not yet registered.
    pub stake_ucairn: u64,
    /// The most wall-clock time, output and stream bytes it lets one task
    /// use (memory is bounded by the offer): a lease asking for more is
    /// refused, whatever the requester's terms say.
    pub task_caps: TaskCaps,
    /// Offer the installed tools (Blender, ffmpeg) too, run under
    /// bubblewrap (`cairn_exec::tool`).
    pub tools: bool,
    /// With `tools`, lend this machine's NVIDIA GPUs to the tool tasks that
    /// ask for them (`cairn_exec::tool::gpu`).
    pub gpus: bool,
    /// Cheat on purpose (tests of verification only: set by
    /// [`super::adversary::configure`], always `None` in a build without
    /// the adversaries).
    pub misbehave: Option<Misbehave>,
}

/// What a provider lets one task use besides fuel (bounded by the lease)
/// and memory (bounded by its offer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskCaps {
    /// Wall-clock watchdog.
    pub wall_time_ms: u64,
    /// Bytes under `/output`.
    pub output_bytes: u64,
    /// Bytes of stdout and of stderr, each.
    pub stdout_bytes: u64,
}

impl Default for TaskCaps {
    /// The job file's own maxima: a provider that sets nothing runs any
    /// valid job.
    fn default() -> Self {
        Self {
            wall_time_ms: cairn_job::rules::WALL_TIME_S_RANGE.end() * 1_000,
            output_bytes: cairn_job::rules::OUTPUT_MIB_RANGE.end() << 20,
            stdout_bytes: cairn_job::rules::STDOUT_KIB_RANGE.end() << 10,
        }
    }
}

/// Gives `bidder` back the requesters it shunned before a restart, the
/// newest [`UNDERPAID_MAX`] of them, oldest first; forgets the rest, and
/// any record that is not one (they are advice: a provider that cannot
/// read one still starts, and says so).
fn restore_shunned(db: &Db, bidder: &mut Bidder) -> Result<(), String> {
    let mut shunned: Vec<(u64, PublicKey, Vec<u8>)> = Vec::new();
    let mut forget: Vec<Op> = Vec::new();
    for (key, value) in db.scan(Table::Shunned, b"").map_err(|e| e.to_string())? {
        let requester = <[u8; 32]>::try_from(&key[..]).ok().and_then(|bytes| {
            <PublicKey as cairn_wire::codec::DecodeFixed>::decode_fixed(bytes).ok()
        });
        match (requester, <[u8; 8]>::try_from(&value[..])) {
            (Some(requester), Ok(at)) => shunned.push((u64::from_be_bytes(at), requester, key)),
            _ => {
                tracing::warn!("a shunned requester's record is malformed: forgotten");
                forget.push(Op::Delete(Table::Shunned, key));
            }
        }
    }
    shunned.sort_by_key(|(at, ..)| *at);
    let forgotten = shunned.len().saturating_sub(UNDERPAID_MAX);
    forget.extend(
        shunned
            .drain(..forgotten)
            .map(|(.., key)| Op::Delete(Table::Shunned, key)),
    );
    db.write(&forget).map_err(|e| e.to_string())?;
    for (_, requester, _) in &shunned {
        bidder.underpaid(requester);
    }
    if !shunned.is_empty() {
        tracing::info!(
            "{} requester(s) underpaid this provider before: none is bid for",
            shunned.len()
        );
    }
    Ok(())
}

/// Why a lease's terms ask for more than this provider lets a task use,
/// if they do: the provider enforces what it advertised, not what the
/// requester wrote.
fn terms_over_caps(terms: &Terms, lease: &Lease, offer: &Offer, caps: &TaskCaps) -> Option<String> {
    let limits = &terms.limits;
    let memory_max = u64::from(offer.memory_mib) << 20;
    let over = [
        ("fuel", limits.fuel, lease.fuel_per_task_max),
        ("memory bytes", limits.memory_bytes, memory_max),
        ("GPUs", u64::from(limits.gpus), u64::from(offer.gpus)),
        (
            "MiB of each GPU's memory",
            u64::from(limits.gpu_memory_mib),
            if limits.gpus == 0 {
                u64::MAX
            } else {
                u64::from(offer.gpu_memory_mib)
            },
        ),
        ("wall-time ms", limits.wall_time_ms, caps.wall_time_ms),
        ("output bytes", limits.output_bytes, caps.output_bytes),
        ("stdout bytes", limits.stdout_bytes, caps.stdout_bytes),
    ];
    over.into_iter()
        .find(|(_, asked, max)| asked > max)
        .map(|(what, asked, max)| {
            format!("the terms ask for {asked} {what} per task; this provider allows {max}")
        })
}

/// Snapshots for disputes by (lease, task, position): `None` while being
/// built, then the blob or why it could not be built.
type DisputeSnapshots = BTreeMap<(ContentId, u32, u64), Option<Result<FileRef, String>>>;

/// A lease being worked, as persisted.
#[derive(Clone, Debug)]
struct LeaseRecord {
    lease: Lease,
    slots: u32,
    terms: Terms,
}

impl LeaseRecord {
    /// The lease with its length, the slots, the terms.
    fn to_bytes(&self) -> Vec<u8> {
        let lease = self.lease.encode();
        let mut out = Vec::new();
        out.extend_from_slice(&(lease.len() as u32).to_be_bytes());
        out.extend_from_slice(&lease);
        out.extend_from_slice(&self.slots.to_be_bytes());
        out.extend_from_slice(&self.terms.encode());
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let lease = Lease::decode(cairn_wire::codec::Copying(bytes.get(4..4 + len)?)).ok()?;
        let rest = bytes.get(4 + len..)?;
        let slots = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        let terms = Terms::decode(cairn_wire::codec::Copying(rest.get(4..)?)).ok()?;
        Some(Self {
            lease,
            slots,
            terms,
        })
    }
}

/// The tasks a provider's leases hold (handed to the executor and not yet
/// reported to their lease, or asked for by a pull in flight), its live
/// leases, and a wake-up for every lease when a task is done: a lease
/// takes work only for the slots the others leave it (`LeaseWork::next`).
#[derive(Default)]
struct Load {
    held: AtomicU32,
    leases: AtomicU32,
    freed: tokio::sync::Notify,
}

/// Tasks counted in [`Load`] while it lives.
struct Holding(Arc<Load>, u32);

impl Holding {
    fn new(load: &Arc<Load>, tasks: u32) -> Self {
        load.held.fetch_add(tasks, Ordering::Relaxed);
        Self(load.clone(), tasks)
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.held.fetch_sub(self.1, Ordering::Relaxed);
        self.0.freed.notify_waiters();
    }
}

/// A live lease counted in [`Load`].
struct Leased(Arc<Load>);

impl Leased {
    fn new(load: &Arc<Load>) -> Self {
        load.leases.fetch_add(1, Ordering::Relaxed);
        Self(load.clone())
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        self.0.leases.fetch_sub(1, Ordering::Relaxed);
        self.0.freed.notify_waiters();
    }
}

/// The provider role.
pub(crate) struct Provider {
    shared: Arc<Shared>,
    config: ProviderConfig,
    runtime: Arc<WasmRuntime>,
    /// Installed tools, when offered.
    tools: Option<Arc<ToolRuntime>>,
    /// Concurrency across every lease: the cores offered.
    slots: Arc<Semaphore>,
    /// The tasks every lease holds, which share those slots.
    load: Arc<Load>,
    /// Which orders to bid on, the bids made (to check leases against),
    /// and the orders to bid on again when idle.
    bidder: Mutex<Bidder>,
    /// Blobs stored for each live lease (inputs, outputs, streams,
    /// snapshots): deleted when the lease ends unless another still uses
    /// them, so the store holds what live work needs.
    lease_blobs: Mutex<BTreeMap<ContentId, BTreeSet<ContentId>>>,
    /// Whether each recent requester had funds on the ledger, until when.
    funded: Mutex<std::collections::HashMap<PublicKey, (bool, u64)>>,
    /// Each leased job's escrow as the ledger last showed it, until when.
    escrows: Mutex<BTreeMap<ContentId, (Option<cairn_ledger::Escrow>, u64)>>,
    /// Live leases and the slots each was granted.
    leased: Mutex<BTreeMap<ContentId, u32>>,
    /// Terms of live leases, to re-run a task for a dispute.
    terms: Mutex<BTreeMap<ContentId, Terms>>,
    /// Tasks received under live leases, to re-run one for a dispute.
    assignments: Mutex<BTreeMap<(ContentId, u32), Assignment>>,
    /// Traces computed for disputes.
    traces: Mutex<BTreeMap<(ContentId, u32), Arc<Trace>>>,
    /// Disputed tasks being traced now.
    tracing: Mutex<BTreeSet<(ContentId, u32)>>,
    /// Snapshots of disputed tasks by (lease, task, position): being built
    /// (`None`), or built.
    snapshots: Mutex<DisputeSnapshots>,
    /// Measured compile speed, for the start-up estimate in bids.
    compile_bytes_per_ms: AtomicU64,
    work_dir: PathBuf,
    /// Empty output folders ready for the next task.
    scratch: Mutex<Vec<PathBuf>>,
    scratch_made: std::sync::atomic::AtomicU64,
}

impl Provider {
    /// Registers on the ledger if needed, restores leases, and starts.
    pub async fn start(
        shared: Arc<Shared>,
        config: ProviderConfig,
        market: &MarketConfig,
    ) -> Result<Arc<Self>, String> {
        let runtime = shared.wasm_runtime()?;
        let mut config = config;
        let tools = if config.tools {
            let tool_config = ToolConfig {
                gpus: config.gpus,
                ..ToolConfig::default()
            };
            let tools = tokio::task::spawn_blocking(|| ToolRuntime::new(tool_config))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("offering installed tools: {e}"))?;
            let gpus = tools.gpus();
            if let Some(model) = gpus.model() {
                config.offer.gpus = gpus.all().len() as u32;
                config.offer.gpu_model = model.to_owned();
                config.offer.gpu_memory_mib = gpus.memory_mib();
                config.offer.gpu_driver = gpus.driver().to_owned();
                tracing::info!(
                    "lending {} GPU(s): {model}, {} MiB each, driver {}",
                    config.offer.gpus,
                    config.offer.gpu_memory_mib,
                    if gpus.driver().is_empty() {
                        "unknown"
                    } else {
                        gpus.driver()
                    }
                );
            }
            let room = RUNTIMES_MAX.saturating_sub(config.offer.runtimes.len());
            for tool in tools.tools().iter().take(room) {
                let runtime = format!("{}@{}", tool.name, tool.version);
                config.offer.runtimes.push(runtime.clone());
                // Bids say how it runs here, so that a job's replicas run
                // one build and compare bit for bit.
                config.offer.tools.push(ToolBuild {
                    runtime,
                    binary: tool.binary,
                    isa: tool.isa.chars().take(ISA_BYTES_MAX).collect(),
                    threads: tool.threads,
                    gpu: tool.gpu.clone().unwrap_or_default(),
                });
            }
            for tool in tools.tools() {
                tracing::info!(
                    "offering {}@{} ({}, binary {}, {} thread(s), GPUs: {})",
                    tool.name,
                    tool.version,
                    tool.isa,
                    tool.binary.short(),
                    tool.threads,
                    match (&tool.gpu, gpus.all().is_empty()) {
                        (Some(backends), _) => backends.as_str(),
                        (None, true) => "none here",
                        (None, false) => "cannot use them",
                    }
                );
            }
            Some(Arc::new(tools))
        } else {
            None
        };
        let me = shared.key.public();
        let account = shared.ledger.link().account(&me).await?;
        if !account.can_bid && account.stake == 0 {
            let offer = &config.offer;
            shared
                .ledger
                .send(TxKind::RegisterProvider {
                    capabilities: Capabilities {
                        cores: offer.cores,
                        memory_mib: offer.memory_mib,
                        gpus: offer.gpus,
                        score: offer.score_mfuel_per_s,
                    },
                    endpoint: shared.net.local_peer_id().to_string(),
                    stake: config.stake_ucairn,
                })?
                .fate()
                .await
                .map_err(|e| {
                    format!(
                        "registering as a provider with a stake of {stake} µCAIRN: {e}. A \
                         provider cannot bid without it: fund this node's key from a funded \
                         wallet (`cairn wallet transfer {me} {stake}`), then start it again",
                        stake = config.stake_ucairn,
                    )
                })?;
        }
        let mut bidder = Bidder::new(
            me,
            config.offer.clone(),
            Box::new(config.pricing.clone()),
            shared.blobs.blob_bytes_max(),
        );
        restore_shunned(&shared.db, &mut bidder)?;
        let provider = Arc::new(Self {
            slots: Arc::new(Semaphore::new(config.offer.cores as usize)),
            load: Arc::new(Load::default()),
            shared,
            config,
            runtime: Arc::new(runtime),
            tools,
            bidder: Mutex::new(bidder),
            funded: Mutex::new(std::collections::HashMap::new()),
            escrows: Mutex::new(BTreeMap::new()),
            lease_blobs: Mutex::new(BTreeMap::new()),
            leased: Mutex::new(BTreeMap::new()),
            terms: Mutex::new(BTreeMap::new()),
            assignments: Mutex::new(BTreeMap::new()),
            traces: Mutex::new(BTreeMap::new()),
            tracing: Mutex::new(BTreeSet::new()),
            snapshots: Mutex::new(BTreeMap::new()),
            compile_bytes_per_ms: AtomicU64::new(COMPILE_BYTES_PER_MS_INITIAL),
            work_dir: market.data_dir.join("work"),
            scratch: Mutex::new(Vec::new()),
            scratch_made: Default::default(),
        });
        // A staller withholds its reveals on purpose (tests of NoReveal).
        if !provider
            .config
            .misbehave
            .is_some_and(Misbehave::withholds_reveals)
        {
            tokio::spawn(super::answers::watch(provider.shared.clone()));
        }
        for (key, value) in provider
            .shared
            .db
            .scan(Table::LeasesTaken, b"")
            .map_err(|e| e.to_string())?
        {
            let Some(record) = LeaseRecord::from_bytes(&value) else {
                tracing::error!("an unreadable lease record; skipped");
                continue;
            };
            let id = ContentId::from_digest(key.try_into().map_err(|_| "bad lease key")?);
            provider.leased.lock().insert(id, record.slots);
            tokio::spawn(provider.clone().work(id, record));
        }
        // Acceptances kept before a restart are claimed at once: a job may
        // have ended while the node was down, and its escrow be closing.
        for lease in super::claims::leases(&provider.shared) {
            let shared = provider.shared.clone();
            tokio::spawn(async move { super::claims::claim(&shared, lease).await });
        }
        Ok(provider)
    }

    /// An order arrived by gossip. Returns whether it was valid (for the
    /// gossip score of whoever forwarded it).
    pub fn on_order(self: &Arc<Self>, author: Option<PeerId>, data: &[u8]) -> bool {
        let Ok(signed) = Signed::<Order>::from_bytes(data, &()) else {
            Counters::bump(&self.shared.counters.malformed);
            return false;
        };
        let Ok(order) = signed.verify(ORDER_NAMESPACE) else {
            Counters::bump(&self.shared.counters.bad_signature);
            return false;
        };
        let requester = signed.signer();
        if author != Some(cairn_net::peer_id(&requester)) {
            Counters::bump(&self.shared.counters.refused);
            return false;
        }
        // Busy means running tasks now, not holding leases: a lease whose
        // job has nothing left for it (or has just ended, which the provider
        // learns at its next pull) must not turn every new order away. The
        // slots semaphore keeps concurrency at the cores offered whatever
        // the number of leases.
        let offer = &self.config.offer;
        let mut busy = (offer.cores as usize).saturating_sub(self.slots.available_permits()) as u32;
        if let (Some(tools), Ok(slots)) = (&self.tools, offer.slots_for(order))
            && order.gpus > 0
        {
            // A GPU order's slots are its GPUs' as much as the cores': the
            // slots taken are those that neither free cores nor free GPUs
            // leave it (a CPU task holds no GPU, a GPU task one core).
            let free_cores = offer.cores.saturating_sub(busy);
            let free_gpus = offer.gpus.saturating_sub(tools.gpus().busy()) / order.gpus;
            busy = slots.saturating_sub(free_cores.min(free_gpus));
        }
        let answer = self.bidder.lock().order(order, requester, busy, now_ms());
        let request = match answer {
            Answer::Ignore(Ignored::Replayed | Ignored::Late) => {
                Counters::bump(&self.shared.counters.replayed);
                return true;
            }
            Answer::Ignore(Ignored::TooManyBids) => {
                Counters::bump(&self.shared.counters.rate_limited);
                return true;
            }
            // The order asked others: a valid order, with nothing to say.
            Answer::Ignore(Ignored::NotDrawn) => return true,
            Answer::Decline(reason) => Request::Decline {
                order: order.id(),
                reason,
            },
            Answer::Bid(bid) => Request::Bid(self.signed_bid(order, bid)),
        };
        self.send_bid(requester, order.clone(), request);
        true
    }

    /// `bid` on `order`, with how soon this provider could start, signed.
    fn signed_bid(&self, order: &Order, mut bid: Bid) -> Signed<Bid> {
        bid.ready_in_ms = self.ready_in_ms(&order.module, order.module_bytes);
        Signed::sign(&self.shared.key, BID_NAMESPACE, bid)
    }

    /// Sends a bid or a decline on `order` to `requester`; after a bid,
    /// fetches and compiles the module while the auction runs, so a won
    /// lease starts at once.
    fn send_bid(self: &Arc<Self>, requester: PublicKey, order: Order, request: Request) {
        let this = self.clone();
        let peer = cairn_net::peer_id(&requester);
        tokio::spawn(async move {
            // An order from an account with nothing on the ledger costs a
            // lookup: no bid, no download, no compile.
            let bid = matches!(request, Request::Bid(_));
            let request = if bid && !this.funded(&requester).await {
                this.bidder.lock().withdraw(&requester, &order.job);
                Request::Decline {
                    order: order.id(),
                    reason: "the requester has no funds on the ledger".into(),
                }
            } else {
                request
            };
            let bid = matches!(request, Request::Bid(_));
            Counters::bump(if bid {
                &this.shared.counters.bids
            } else {
                &this.shared.counters.declines
            });
            if let Err(e) = this
                .shared
                .net
                .request(peer, proto::to_bytes(&request))
                .await
            {
                tracing::debug!("answering an order: {e}");
            }
            if bid && let Err(e) = this.prepare_module(peer, order.module, None).await {
                tracing::debug!("prefetching module {}: {e}", order.module.short());
            }
        });
    }

    /// Every slot is free: bids again on orders seen while busy (see
    /// [`Bidder::idle`]).
    fn bid_when_idle(self: &Arc<Self>) {
        if self.slots.available_permits() < self.config.offer.cores as usize {
            return;
        }
        let rebids = self.bidder.lock().idle(now_ms());
        for rebid in rebids {
            let request = Request::Bid(self.signed_bid(&rebid.order, rebid.bid));
            self.send_bid(rebid.requester, rebid.order, request);
        }
    }

    /// Notes that `lease` uses `blobs`.
    fn keep_for(&self, lease: ContentId, blobs: impl IntoIterator<Item = ContentId>) {
        self.lease_blobs
            .lock()
            .entry(lease)
            .or_default()
            .extend(blobs);
    }

    /// Deletes the blobs `lease` stored that no live lease still uses.
    async fn forget_blobs(&self, lease: ContentId) {
        let unused: Vec<ContentId> = {
            let mut all = self.lease_blobs.lock();
            let mine = all.remove(&lease).unwrap_or_default();
            let pinned = self.shared.pinned.lock();
            mine.into_iter()
                .filter(|blob| !pinned.contains(blob))
                .filter(|blob| !all.values().any(|other| other.contains(blob)))
                .collect()
        };
        let blobs = self.shared.blobs.clone();
        let removed = tokio::task::spawn_blocking(move || {
            unused.iter().filter(|id| blobs.remove(id).is_ok()).count()
        })
        .await;
        tracing::debug!(lease = %lease.short(), ?removed, "blobs of an ended lease removed");
    }

    /// Whether `requester` has funds on the ledger, remembered a while so
    /// a stream of orders costs one lookup. A ledger that cannot be asked
    /// counts as funded: the lease's escrow check still stands.
    async fn funded(&self, requester: &PublicKey) -> bool {
        let now = now_ms();
        if let Some(&(funded, until)) = self.funded.lock().get(requester)
            && until > now
        {
            return funded;
        }
        let funded = match self.shared.ledger.link().account(requester).await {
            Ok(account) => account.balance > 0,
            Err(e) => {
                tracing::debug!("looking up a requester: {e}");
                return true;
            }
        };
        let mut cache = self.funded.lock();
        if cache.len() >= FUNDED_MAX {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= FUNDED_MAX {
                cache.clear();
            }
        }
        cache.insert(*requester, (funded, now + FUNDED_TTL_MS));
        funded
    }

    /// Why the job's escrow cannot pay for one more task at the lease's
    /// price and per-task fuel, if it cannot: gone, another's, closing, or
    /// short. (Settlement draws it down only when the job ends, so this is
    /// all a provider can check of it.) A ledger that cannot be asked is no
    /// reason to stop.
    async fn escrow_short(&self, lease: &Lease) -> Option<String> {
        let now = now_ms();
        let cached = self.escrows.lock().get(&lease.job).copied();
        let escrow = match cached {
            Some((escrow, until)) if until > now => escrow,
            _ => match self.shared.ledger.link().escrow(&lease.job).await {
                Ok(escrow) => {
                    let mut escrows = self.escrows.lock();
                    escrows.retain(|_, (_, until)| *until > now);
                    escrows.insert(lease.job, (escrow, now + ESCROW_TTL_MS));
                    escrow
                }
                Err(e) => {
                    tracing::debug!("reading an escrow: {e}");
                    return None;
                }
            },
        };
        let need = (u128::from(lease.fuel_per_task_max) * u128::from(lease.price_ucairn_per_gfuel))
            .div_ceil(1_000_000_000);
        match escrow {
            None => Some("the job has no escrow on the ledger".into()),
            Some(e) if e.owner != lease.requester => {
                Some("the job's escrow belongs to someone else".into())
            }
            Some(e) if e.closing => Some("the job's escrow is closing".into()),
            Some(e) if u128::from(e.balance) < need => Some(format!(
                "the job's escrow holds {} µCAIRN; a task may cost {need}",
                e.balance
            )),
            Some(_) => None,
        }
    }

    async fn prepare_module(
        &self,
        peer: PeerId,
        module: ContentId,
        size: Option<u64>,
    ) -> Result<(), String> {
        if self.runtime.is_loaded(&module)
            || self.tools.as_ref().is_some_and(|t| t.is_loaded(&module))
        {
            return Ok(());
        }
        // Compiled here before (this machine's cache): no download needed.
        let runtime = self.runtime.clone();
        if tokio::task::spawn_blocking(move || runtime.load_compiled(&module))
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(false)
        {
            return Ok(());
        }
        let size = match size {
            Some(size) => size,
            None => self.blob_size(peer, module).await?,
        };
        fetch_blob(&self.shared, peer, module, size).await?;
        let bytes = self.shared.blobs.read(&module).map_err(|e| e.to_string())?;
        if !bytes.starts_with(b"\0asm") {
            // Not WebAssembly: a tool request (the order named the tool).
            let Some(tools) = &self.tools else {
                return Err("this provider offers no installed tools".into());
            };
            let loaded = tools.load(&bytes).map_err(|e| e.to_string())?;
            return if loaded == module {
                Ok(())
            } else {
                Err("a tool request loaded under another id".into())
            };
        }
        let runtime = self.runtime.clone();
        let compiling = !runtime.is_compiled(&module);
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if compiling {
            let ms = started.elapsed().as_millis().max(1) as u64;
            self.compile_bytes_per_ms
                .store((size / ms).max(1), Ordering::Relaxed);
        }
        if loaded != module {
            return Err(format!(
                "module {} loaded as {}",
                module.short(),
                loaded.short()
            ));
        }
        Ok(())
    }

    /// How long after a lease this provider expects to start `module`'s
    /// first task: nothing when it is compiled already, else the time to
    /// fetch and compile `bytes` of it at the speeds measured here.
    fn ready_in_ms(&self, module: &ContentId, bytes: u64) -> u32 {
        if self.runtime.is_compiled(module) {
            return 0;
        }
        let compile = bytes / self.compile_bytes_per_ms.load(Ordering::Relaxed).max(1);
        let fetch = bytes / FETCH_BYTES_PER_MS_ASSUMED;
        u32::try_from(compile.saturating_add(fetch)).unwrap_or(u32::MAX)
    }

    /// Learns a blob's size from the first range a peer serves.
    async fn blob_size(&self, peer: PeerId, id: ContentId) -> Result<u64, String> {
        let request = Request::Blob {
            id,
            offset: 0,
            len: 0,
        };
        let bytes = self
            .shared
            .net
            .request(peer, proto::to_bytes(&request))
            .await
            .map_err(|e| e.to_string())?;
        match proto::response(bytes) {
            Ok(Response::Blob { size, .. }) => Ok(size),
            Ok(Response::Refused(reason)) => Err(reason),
            _ => Err("malformed blob answer".into()),
        }
    }

    /// A requester offers a lease.
    pub fn on_lease(
        self: &Arc<Self>,
        _peer: PeerId,
        sender: PublicKey,
        lease: Lease,
        slots: u32,
        terms: Terms,
    ) -> Response {
        let me = self.shared.key.public();
        if lease.provider != me || lease.requester != sender {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("the lease names other parties".into());
        }
        let needs = Needs {
            memory_mib: u32::try_from(terms.limits.memory_bytes.div_ceil(1 << 20))
                .unwrap_or(u32::MAX),
            gpus: terms.limits.gpus,
            gpu_memory_mib: terms.limits.gpu_memory_mib,
        };
        let matches_bid = {
            let bidder = self.bidder.lock();
            bidder
                .check_lease(&lease, slots)
                .and_then(|()| bidder.check_terms(&lease, needs))
        };
        if let Err(reason) = matches_bid {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused(reason.into());
        }
        if let Some(reason) =
            terms_over_caps(&terms, &lease, &self.config.offer, &self.config.task_caps)
        {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused(reason);
        }
        let id = lease.id();
        let signature = lease.sign(&self.shared.key);
        let record = LeaseRecord {
            lease,
            slots,
            terms,
        };
        {
            let mut leased = self.leased.lock();
            if leased.contains_key(&id) {
                return Response::LeaseSigned(signature); // a retransmission
            }
            if let Err(e) = self.shared.db.write(&[Op::Put(
                Table::LeasesTaken,
                id.as_bytes().to_vec(),
                record.to_bytes(),
            )]) {
                tracing::error!("persisting a lease: {e}");
                return Response::Refused("the provider cannot store the lease now".into());
            }
            leased.insert(id, slots);
        }
        self.bidder.lock().leased(&record.lease);
        Counters::bump(&self.shared.counters.leases);
        tokio::spawn(self.clone().work(id, record));
        Response::LeaseSigned(signature)
    }

    /// Works one lease: prepares the module and inputs, then pulls and runs
    /// tasks until the requester says the job needs nothing more.
    /// Drives one lease's [`LeaseWork`]: prepares its program and inputs,
    /// then carries out each step the core returns until the lease is over.
    async fn work(self: Arc<Self>, id: ContentId, record: LeaseRecord) {
        let peer = cairn_net::peer_id(&record.lease.requester);
        let input_dir = self.work_dir.join(id.to_string()).join("input");
        self.keep_for(id, record.terms.inputs.iter().map(|f| f.id));
        let failure = self
            .prepare(peer, &record.terms, &input_dir)
            .await
            .inspect_err(|e| tracing::warn!("lease {}: {e}", id.short()))
            .err();
        self.terms.lock().insert(id, record.terms.clone());
        // Reports persisted before a restart: sealed results are committed
        // to again, the rest sent again; delivered results await their
        // acceptance again.
        let reports = self
            .shared
            .db
            .scan(Table::Reports, id.as_bytes())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, value)| {
                proto::from_bytes::<Report>(&value)
                    .inspect_err(|e| tracing::error!("an unreadable report: {e}; skipped"))
                    .ok()
            })
            .collect();
        let awaiting = self
            .shared
            .db
            .scan(Table::Awaiting, id.as_bytes())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(key, value)| decode_awaiting(&key, &value))
            .collect();
        let stored = Stored { reports, awaiting };
        let mut core = LeaseWork::new(
            &record.lease,
            record.slots,
            self.shared.key.clone(),
            failure,
            stored,
            now_ms(),
        )
        .with_fuel_min(record.terms.limits.fuel_min)
        .with_rate_floor(self.config.offer.score_mfuel_per_s);
        #[cfg(feature = "adversary")]
        if self
            .config
            .misbehave
            .is_some_and(Misbehave::withholds_reveals)
        {
            core = core.withholding_reveals();
        }
        let (done_tx, mut done_rx) = mpsc::channel::<Done>(LeaseWork::tasks_max(record.slots));
        let _leased = Leased::new(&self.load);
        let finished = |core: &mut LeaseWork, done: Done| {
            // A tool task is paid what its requester declared: weighed
            // against what it took, a sliver of it stops the lease's work
            // and this provider's bids to that requester.
            if let (Some(cpu), Report::Revealed { receipt, .. }) =
                (done.cpu_time, done.finished.report())
            {
                let fuel = receipt.payload_unchecked().fuel_used;
                if let Some(reason) = core.worked(fuel, cpu.as_secs_f64() * 1e3) {
                    tracing::warn!("lease {}: {reason}", id.short());
                    let requester = record.lease.requester;
                    self.bidder.lock().underpaid(&requester);
                    // Kept across restarts: a requester must not get its
                    // next leases by waiting for one.
                    let shunned = Op::Put(
                        Table::Shunned,
                        requester.as_bytes().to_vec(),
                        now_ms().to_be_bytes().to_vec(),
                    );
                    if let Err(e) = self.shared.db.write(&[shunned]) {
                        tracing::warn!("remembering an underpaying requester: {e}");
                    }
                }
            }
            core.finished(done.finished, done.took.as_secs_f64() * 1e3);
        };
        loop {
            while let Ok(done) = done_rx.try_recv() {
                finished(&mut core, done);
            }
            // Listening before looking, so a task of another lease that
            // finishes in between still wakes this one.
            let freed = self.load.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let others = Others {
                leases: self.load.leases.load(Ordering::Relaxed).saturating_sub(1),
                held: self
                    .load
                    .held
                    .load(Ordering::Relaxed)
                    .saturating_sub(core.held()),
            };
            let pull = match core.next(now_ms(), others) {
                Next::Done => break,
                Next::Wait(until) => {
                    let wait = until.map_or(Duration::MAX, |at| {
                        Duration::from_millis(at.saturating_sub(now_ms()))
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        Some(done) = done_rx.recv() => finished(&mut core, done),
                        () = &mut freed => {}
                    }
                    continue;
                }
                Next::Pull(pull) => pull,
            };
            // Held from the ask until the tasks it brings are spawned (each
            // then counts itself): leases pulling at once do not take the
            // same free slots.
            let asked = Holding::new(&self.load, pull.want);
            // Work is taken only while the job's escrow can pay for it.
            let want = match self.escrow_short(&record.lease).await {
                Some(reason) if pull.want > 0 => {
                    tracing::warn!("lease {}: taking no tasks: {reason}", id.short());
                    0
                }
                _ => pull.want,
            };
            let ops: Vec<Op> = pull
                .writes
                .into_iter()
                .flat_map(|w| write_ops(&id, w))
                .collect();
            let db = self.shared.db.clone();
            match tokio::task::spawn_blocking(move || db.write(&ops)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("persisting reports: {e}"),
                Err(e) => tracing::warn!("persisting reports: {e}"),
            }
            self.keep_for(id, pull.grants.iter().copied());
            self.shared
                .grants
                .grant(id, pull.grants, record.lease.requester);
            let mut reports = pull.reports;
            if let Some(how) = self.config.misbehave {
                reports.extend(how.extra_reports(&self.shared.key, id));
            }
            let request = Request::Pull {
                lease: id,
                want,
                reports,
                held: pull.held,
                awaiting: pull.awaiting,
            };
            let answer = self
                .shared
                .net
                .request(peer, proto::to_bytes(&request))
                .await
                .map_err(|e| e.to_string())
                .and_then(|bytes| proto::response(bytes).map_err(|e| e.to_string()));
            // A task handed out again must be the same task: what this
            // provider signs about it (its trace claims name what it ran)
            // stays about one run. A changed one is not taken; its deadline
            // hands it to others.
            let admit = |task: &Assignment| {
                let mut assignments = self.assignments.lock();
                match assignments.get(&(id, task.task)) {
                    Some(first) if first != task => {
                        Counters::bump(&self.shared.counters.refused);
                        tracing::warn!(
                            "lease {}: task {} handed out again changed",
                            id.short(),
                            task.task
                        );
                        false
                    }
                    _ => {
                        assignments.insert((id, task.task), task.clone());
                        true
                    }
                }
            };
            let tasks = core.answered(now_ms(), want, answer, admit);
            if tasks.is_empty() {
                self.bid_when_idle();
            }
            for task in tasks {
                self.clone()
                    .spawn_task(id, &record, &input_dir, task, done_tx.clone());
            }
            drop(asked);
        }
        self.leased.lock().remove(&id);
        self.terms.lock().remove(&id);
        self.shared.grants.revoke(&id);
        self.forget_blobs(id).await;
        self.assignments.lock().retain(|(lease, _), _| *lease != id);
        self.traces.lock().retain(|(lease, _), _| *lease != id);
        self.snapshots
            .lock()
            .retain(|(lease, _, _), _| *lease != id);
        // Everything kept under the lease goes, whatever the core had yet
        // to write, except the acceptances: they are claimed below.
        let mut ops: Vec<Op> = core
            .take_writes()
            .into_iter()
            .filter_map(|w| match w {
                Write::Accepted(acceptance) => Some(super::claims::keep(&id, &acceptance)),
                _ => None,
            })
            .collect();
        ops.push(Op::Delete(Table::LeasesTaken, id.as_bytes().to_vec()));
        for table in [Table::Traces, Table::Reports, Table::Awaiting] {
            if let Ok(kept) = self.shared.db.scan(table, id.as_bytes()) {
                ops.extend(kept.into_iter().map(|(key, _)| Op::Delete(table, key)));
            }
        }
        if let Err(e) = self.shared.db.write(&ops) {
            tracing::warn!("closing lease {}: {e}", id.short());
        }
        let _ = std::fs::remove_dir_all(self.work_dir.join(id.to_string()));
        // Paid for what the requester accepted, whether or not it settles.
        super::claims::claim(&self.shared, id).await;
    }

    async fn prepare(
        &self,
        peer: PeerId,
        terms: &Terms,
        input_dir: &PathBuf,
    ) -> Result<(), String> {
        self.prepare_module(peer, terms.module.id, Some(terms.module.size))
            .await?;
        std::fs::create_dir_all(input_dir).map_err(|e| e.to_string())?;
        for input in &terms.inputs {
            fetch_blob(&self.shared, peer, input.id, input.size).await?;
            let target = cairn_job::input_name_path(input_dir, &input.name)?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let source = self
                .shared
                .blobs
                .path(&input.id)
                .ok_or("input blob vanished")?;
            if !target.exists() {
                std::fs::copy(&source, &target).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    fn spawn_task(
        self: Arc<Self>,
        lease: ContentId,
        record: &LeaseRecord,
        input_dir: &std::path::Path,
        task: Assignment,
        done: mpsc::Sender<Done>,
    ) {
        let terms = record.terms.clone();
        let input_dir = input_dir.to_path_buf();
        let holding = Holding::new(&self.load, 1);
        let peer = cairn_net::peer_id(&record.lease.requester);
        tokio::spawn(async move {
            // Counted until its report is handed over (or it never runs).
            let _holding = holding;
            let index = task.task;
            // Its own inputs (a video's segment) come with it: fetched
            // before it takes a slot, so a slow fetch holds up no other.
            self.keep_for(lease, task.inputs.iter().map(|f| f.id));
            for input in &task.inputs {
                if let Err(e) = fetch_blob(&self.shared, peer, input.id, input.size).await {
                    let e = String::from(e);
                    let report = Report::Failed {
                        task: index,
                        reason: format!("fetching input '{}': {e}", input.name),
                    };
                    let _ = done
                        .send(Done {
                            finished: Finished::seal(&self.shared.key, report),
                            took: Duration::ZERO,
                            cpu_time: None,
                        })
                        .await;
                    return;
                }
            }
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let this = self.clone();
            let started = std::time::Instant::now();
            let (finished, cpu_time) = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let (report, cpu_time) = this.run_task(lease, &terms, &input_dir, &task);
                // The commitment is signed here too, beside the receipt.
                (Finished::seal(&this.shared.key, report), cpu_time)
            })
            .await
            .unwrap_or_else(|e| {
                let report = Report::Failed {
                    task: index,
                    reason: format!("worker panicked: {e}"),
                };
                (Finished::seal(&self.shared.key, report), None)
            });
            let took = started.elapsed();
            let _ = done
                .send(Done {
                    finished,
                    took,
                    cpu_time,
                })
                .await;
        });
    }

    /// Runs `task`: its report, and the CPU time a tool task took.
    fn run_task(
        &self,
        lease: ContentId,
        terms: &Terms,
        input_dir: &std::path::Path,
        task: &Assignment,
    ) -> (Report, Option<Duration>) {
        let output_dir = match self.scratch_dir() {
            Ok(dir) => dir,
            Err(e) => {
                let report = Report::Failed {
                    task: task.task,
                    reason: format!("creating an output folder: {e}"),
                };
                return (report, None);
            }
        };
        let (report, cpu_time) = self.run_in(lease, terms, input_dir, task, &output_dir);
        self.return_scratch_dir(output_dir);
        let counters = &self.shared.counters;
        match &report {
            Report::Revealed { receipt, .. } => {
                Counters::bump(&counters.tasks_run);
                let fuel = receipt.payload_unchecked().fuel_used;
                counters.fuel_used.fetch_add(fuel, Ordering::Relaxed);
            }
            Report::Failed { .. } => Counters::bump(&counters.tasks_failed),
            _ => {}
        }
        (report, cpu_time)
    }

    /// An empty folder for a task's `/output`: reused from an earlier task
    /// when possible, since creating and removing one per task costs more
    /// than running a tiny task.
    fn scratch_dir(&self) -> std::io::Result<PathBuf> {
        if let Some(dir) = self.scratch.lock().pop() {
            return Ok(dir);
        }
        let n = self
            .scratch_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.work_dir.join("scratch").join(n.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Empties a used output folder and keeps it for the next task.
    fn return_scratch_dir(&self, dir: PathBuf) {
        let empty = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_none());
        if empty || (std::fs::remove_dir_all(&dir).is_ok() && std::fs::create_dir(&dir).is_ok()) {
            self.scratch.lock().push(dir);
        }
    }

    fn run_in(
        &self,
        lease: ContentId,
        terms: &Terms,
        input_dir: &std::path::Path,
        task: &Assignment,
        output_dir: &std::path::Path,
    ) -> (Report, Option<Duration>) {
        // A task that failed is not paid, so its CPU time weighs nothing.
        let failed = |reason: String| {
            let report = Report::Failed {
                task: task.task,
                reason,
            };
            (report, None)
        };
        let limits = task.limits(&terms.limits).to_exec();
        // A run's own folder, removed after it (links only): a stream's
        // lease would otherwise keep one per segment, and another run of
        // the same task (handed out again) has its own.
        let own = match self.task_inputs(terms, input_dir, task, true) {
            Ok(inputs) => inputs,
            Err(e) => return failed(format!("placing the task's inputs: {e}")),
        };
        let _removed = own
            .as_ref()
            .filter(|dir| dir.as_path() != input_dir)
            .map(|dir| RemovedDir(dir.clone()));
        let inputs = own.as_deref();
        let runtime: &dyn cairn_exec::Runtime = match &self.tools {
            Some(tools) if tools.is_loaded(&terms.module.id) => &**tools,
            _ => &*self.runtime,
        };
        // A render cheat runs other arguments, or its own copy of the
        // inputs, or paints over what it made (below).
        let tool = self
            .tools
            .as_ref()
            .and_then(|tools| tools.name_of(&terms.module.id));
        let tool_task = tool.is_some();
        let render_cheat = tool.and_then(|tool| RenderCheat::new(self.config.misbehave, &tool));
        let args = match render_cheat {
            Some(cheat) => cheat.args(&task.args),
            None => task.args.clone(),
        };
        let copy = match render_cheat.map(|cheat| cheat.inputs(inputs, &self.work_dir)) {
            Some(Ok(copy)) => copy,
            Some(Err(e)) => return failed(format!("copying the inputs: {e}")),
            None => None,
        };
        let spec = Task {
            module: terms.module.id,
            args: &args,
            seed: task.seed,
            input_dir: copy.as_ref().map(|c| c.path()).or(inputs),
            output_dir,
            expected_outputs: &task.outputs,
            limits,
        };
        let result = match self.training_cheat(&terms.module.id, &task.args) {
            Some(cheat) => cheat.play(&spec, &self.work_dir, |t, c| {
                self.runtime.run_tampered(t, Some(c))
            }),
            None => runtime.run(&spec),
        };
        let result = match result {
            Ok(result) => result,
            Err(e) => return failed(e.to_string()),
        };
        let mut result = result;
        if let Some(how) = self.config.misbehave
            && let Err(e) = how.tamper(
                render_cheat,
                output_dir,
                &mut result,
                tool_task,
                terms.limits.fuel,
            )
        {
            return failed(e);
        }
        let mut outputs = Vec::with_capacity(result.outputs.len());
        for file in &result.outputs {
            match self.shared.blobs.put_file(&output_dir.join(&file.path)) {
                Ok(id) if id == file.id => outputs.push(FileRef {
                    name: file.path.clone(),
                    id,
                    size: file.size_bytes,
                }),
                Ok(_) => return failed(format!("output {} changed while stored", file.path)),
                Err(e) => return failed(format!("storing output {}: {e}", file.path)),
            }
        }
        // Streams are served as blobs like outputs; an empty one needs none.
        for (bytes, name) in [(&result.stdout, "stdout"), (&result.stderr, "stderr")] {
            if let Err(e) = (!bytes.is_empty())
                .then(|| self.shared.blobs.put(bytes))
                .transpose()
            {
                return failed(format!("storing {name}: {e}"));
            }
        }
        // The salt is derived, not drawn: running this task again (re-issued,
        // or after a restart) signs the very same commit and receipt.
        let receipt = Signed::sign(
            &self.shared.key,
            RECEIPT_NAMESPACE,
            Receipt {
                lease,
                task: u64::from(task.task),
                digest: result.digest,
                fuel_used: result.fuel_used,
                salt: cairn_verify::salt(&self.shared.key, &lease, u64::from(task.task)),
                run: proto::run_digest(terms, task),
            },
        );
        let report = Report::Revealed {
            receipt,
            code: result.outcome.code(),
            exit: result.outcome.exit_status(),
            outcome: result.outcome.to_string(),
            outputs,
            stdout: StreamRef::of(&result.stdout),
            stderr: StreamRef::of(&result.stderr),
        };
        (report, result.cpu_time)
    }

    /// A requester refereeing a dispute over one of this provider's tasks
    /// asks about its execution: the provider re-runs the task with
    /// checkpoints (once) and answers from that trace.
    pub async fn on_dispute(
        self: &Arc<Self>,
        sender: PublicKey,
        lease: ContentId,
        task: u32,
        ask: DisputeAsk,
    ) -> Response {
        let (terms, assignment) = {
            let terms = self.terms.lock().get(&lease).cloned();
            let assignment = self.assignments.lock().get(&(lease, task)).cloned();
            match (terms, assignment) {
                (Some(terms), Some(assignment)) => (terms, assignment),
                _ => return Response::Refused("no such task under a live lease".into()),
            }
        };
        let requester = self
            .shared
            .db
            .get(Table::LeasesTaken, lease.as_bytes())
            .ok()
            .flatten()
            .and_then(|bytes| LeaseRecord::from_bytes(&bytes))
            .map(|record| record.lease.requester);
        if requester != Some(sender) {
            Counters::bump(&self.shared.counters.refused);
            return Response::Refused("only the lease's requester referees".into());
        }
        if self.config.misbehave.is_some_and(Misbehave::stonewalls) {
            return Response::Preparing;
        }
        let input_dir = self.work_dir.join(lease.to_string()).join("input");
        let position = match ask {
            DisputeAsk::Snapshot(position) => position,
            ask => {
                let Some(trace) = self.trace(lease, task) else {
                    // Tracing takes as long as the task and more: it runs
                    // once, in the background, and the referee asks again
                    // (the first round's deadline allows for it).
                    self.start_tracing(lease, terms, input_dir, assignment);
                    return Response::Preparing;
                };
                let points = match ask {
                    DisputeAsk::Hashes(positions) => {
                        let points = positions
                            .iter()
                            .map(|&p| Some((p, trace.hash_at(p)?)))
                            .collect::<Option<Vec<_>>>();
                        match points {
                            Some(points) => points,
                            None => {
                                return Response::Refused("a position outside the trace".into());
                            }
                        }
                    }
                    _ => Vec::new(),
                };
                // Signed, so validators can hold this provider to it; its
                // result is the one it committed to (which, for an honest
                // provider, the trace re-derives).
                let committed = super::answers::committed(&self.shared, &lease, u64::from(task));
                let digest = match committed {
                    // A liar stands by its lie.
                    Some(d)
                        if self
                            .config
                            .misbehave
                            .is_some_and(Misbehave::stands_by_its_lie) =>
                    {
                        d
                    }
                    Some(d) if d != trace.digest => {
                        // The re-run does not reproduce the result: signing
                        // both would be an impossible execution.
                        return Response::Refused(
                            "the trace does not reproduce the committed result".into(),
                        );
                    }
                    _ => trace.digest,
                };
                let claim = TraceClaim {
                    lease,
                    task: u64::from(task),
                    run: proto::run_digest(&terms, &assignment),
                    positions: trace.positions(),
                    digest,
                    points,
                };
                return Response::Claim(Signed::sign(&self.shared.key, CLAIM_NAMESPACE, claim));
            }
        };
        // A snapshot re-runs the task up to `position`: built once, in the
        // background, like a trace.
        let key = (lease, task, position);
        let built = {
            let mut snapshots = self.snapshots.lock();
            let built = snapshots.get(&key).cloned();
            match built {
                None => {
                    snapshots.insert(key, None);
                    None
                }
                Some(Some(Err(e))) => {
                    // Told once; a later question builds it again.
                    snapshots.remove(&key);
                    return Response::Refused(e);
                }
                Some(built) => Some(built),
            }
        };
        match built {
            Some(Some(Ok(file))) => {
                // The referee fetches the snapshot next: it alone may.
                self.keep_for(lease, [file.id]);
                self.shared.grants.grant(lease, [file.id], sender);
                Response::Snapshot(file)
            }
            Some(_) => Response::Preparing,
            None => {
                let this = self.clone();
                tokio::task::spawn_blocking(move || {
                    let built = this.snapshot(&terms, &input_dir, &assignment, position);
                    if let Some(slot) = this.snapshots.lock().get_mut(&key) {
                        *slot = Some(built);
                    }
                });
                Response::Preparing
            }
        }
    }

    /// Runs `f` on the task `assignment` of a lease with `terms`, as a
    /// dispute re-runs it.
    fn with_task<T>(
        &self,
        terms: &Terms,
        input_dir: &std::path::Path,
        assignment: &Assignment,
        f: impl FnOnce(&Task<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        let inputs = self.task_inputs(terms, input_dir, assignment, false)?;
        let output_dir = self.scratch_dir().map_err(|e| e.to_string())?;
        let done = f(&Task {
            module: terms.module.id,
            args: &assignment.args,
            seed: assignment.seed,
            input_dir: inputs.as_deref(),
            output_dir: &output_dir,
            expected_outputs: &assignment.outputs,
            limits: assignment.limits(&terms.limits).for_dispute(),
        });
        self.return_scratch_dir(output_dir);
        done
    }

    /// The folder `task` sees as `/input`, if it sees any: the lease's
    /// (the terms' inputs), or, for a task with inputs of its own, a folder
    /// of its own beside it holding links to the terms' and its own, so it
    /// sees no other task's (what a program finds under `/input` is part
    /// of its result). Its own must be in the blob store already.
    /// `private`: a folder for one run, which the caller removes; else the
    /// one a dispute's runs of the task share, kept until the lease ends.
    fn task_inputs(
        &self,
        terms: &Terms,
        input_dir: &std::path::Path,
        task: &Assignment,
        private: bool,
    ) -> Result<Option<PathBuf>, String> {
        let Some(dir) = own_inputs_dir(input_dir, task) else {
            return Ok((!terms.inputs.is_empty()).then(|| input_dir.to_path_buf()));
        };
        let tasks_dir = input_dir.with_file_name("tasks");
        // Built once, whole, under another name and then renamed: a trace
        // and a snapshot of one disputed task may want it at once.
        if dir.is_dir() {
            return Ok(Some(dir));
        }
        let n = self.scratch_made.fetch_add(1, Ordering::Relaxed);
        let building = tasks_dir.join(format!("building-{n}"));
        // A crash may have left one of this name half built.
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building).map_err(|e| e.to_string())?;
        let shared = terms.inputs.iter().map(|f| {
            let from = cairn_job::input_name_path(input_dir, &f.name)?;
            Ok((f, from))
        });
        let own = task.inputs.iter().map(|f| {
            let from = self
                .shared
                .blobs
                .path(&f.id)
                .ok_or("an input blob vanished")?;
            Ok((f, from))
        });
        for placed in shared.chain(own) {
            let placed = placed.and_then(|(file, from): (&FileRef, PathBuf)| {
                let target = cairn_job::input_name_path(&building, &file.name)?;
                if target.exists() {
                    return Err(format!("input '{}' is named twice", file.name));
                }
                // A link costs nothing; across file systems, a copy.
                if std::fs::hard_link(&from, &target).is_err() {
                    std::fs::copy(&from, &target).map_err(|e| e.to_string())?;
                }
                Ok(())
            });
            if let Err(e) = placed {
                let _ = std::fs::remove_dir_all(&building);
                return Err(e);
            }
        }
        if private {
            return Ok(Some(building));
        }
        if std::fs::rename(&building, &dir).is_err() {
            // Built meanwhile by another.
            let _ = std::fs::remove_dir_all(&building);
        }
        Ok(Some(dir))
    }

    /// The training cheat this provider plays on a task of `module` with
    /// `args`, if it is built to cheat that way and the task is one it can.
    fn training_cheat(&self, module: &ContentId, args: &[String]) -> Option<TrainingCheat> {
        let tool = self.tools.as_ref().is_some_and(|t| t.is_loaded(module));
        TrainingCheat::new(self.config.misbehave, args).filter(|_| !tool)
    }

    /// The trace of a disputed task, if it is built: from memory, or from
    /// the store after a restart.
    fn trace(&self, lease: ContentId, task: u32) -> Option<Arc<Trace>> {
        if let Some(trace) = self.traces.lock().get(&(lease, task)) {
            return Some(trace.clone());
        }
        let bytes = self
            .shared
            .db
            .get(Table::Traces, &report_key(&lease, u64::from(task)))
            .ok()
            .flatten()?;
        let trace = Arc::new(Trace::from_bytes(&bytes)?);
        self.traces.lock().insert((lease, task), trace.clone());
        Some(trace)
    }

    /// Builds a disputed task's trace once, off the async workers, and
    /// keeps it (in the store too, so a restart does not trace again).
    fn start_tracing(
        self: &Arc<Self>,
        lease: ContentId,
        terms: Terms,
        input_dir: std::path::PathBuf,
        assignment: Assignment,
    ) {
        let key = (lease, assignment.task);
        if !self.tracing.lock().insert(key) {
            return;
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let traced = this.with_task(&terms, &input_dir, &assignment, |task| {
                match this.training_cheat(&terms.module.id, &assignment.args) {
                    Some(cheat) => cheat.play(task, &this.work_dir, |t, c| {
                        this.runtime.trace_tampered(t, Some(c))
                    }),
                    None => this.runtime.trace(task),
                }
                .map_err(|e| e.to_string())
            });
            match traced {
                Ok(trace) => {
                    let stored = this.shared.db.write(&[Op::Put(
                        Table::Traces,
                        report_key(&lease, u64::from(key.1)),
                        trace.to_bytes(),
                    )]);
                    if let Err(e) = stored {
                        tracing::warn!("keeping a dispute's trace: {e}");
                    }
                    this.traces.lock().insert(key, Arc::new(trace));
                }
                Err(e) => tracing::warn!(
                    "tracing task {} of lease {} for a dispute: {e}",
                    key.1,
                    lease.short()
                ),
            }
            this.tracing.lock().remove(&key);
        });
    }

    /// The task's state at `position`, stored as a blob for the referee.
    fn snapshot(
        &self,
        terms: &Terms,
        input_dir: &std::path::Path,
        assignment: &Assignment,
        position: u64,
    ) -> Result<FileRef, String> {
        let snapshot = self.with_task(terms, input_dir, assignment, |task| {
            self.runtime
                .snapshot_at(task, position)
                .map_err(|e| e.to_string())
        })?;
        let bytes = snapshot.to_bytes();
        let id = self.shared.blobs.put(&bytes).map_err(|e| e.to_string())?;
        Ok(FileRef {
            name: "snapshot".into(),
            id,
            size: bytes.len() as u64,
        })
    }
}

/// A folder removed, with what is in it, when this is dropped.
struct RemovedDir(PathBuf);

impl Drop for RemovedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The folder a task with inputs of its own sees as `/input`, beside the
/// lease's `input_dir`; `None` for a task without. Named for what it
/// holds, not only the task's number: a task handed out again with other
/// inputs (after a restart, which forgets what was handed out) never runs
/// on the old ones.
fn own_inputs_dir(input_dir: &std::path::Path, task: &Assignment) -> Option<PathBuf> {
    if task.inputs.is_empty() {
        return None;
    }
    let mut named = Vec::new();
    for f in &task.inputs {
        named.extend_from_slice(f.id.as_bytes());
        named.extend_from_slice(f.name.as_bytes());
        named.push(0);
    }
    let holds = ContentId::of(&named).short();
    let tasks = input_dir.with_file_name("tasks");
    Some(tasks.join(format!("{}-{holds}", task.task)))
}

/// The key a task's report (or trace) is persisted under.
fn report_key(lease: &ContentId, task: u64) -> Vec<u8> {
    let mut key = lease.as_bytes().to_vec();
    key.extend_from_slice(&task.to_be_bytes());
    key
}

/// The store operations that make `write`, by the core of `lease`, durable.
fn write_ops(lease: &ContentId, write: Write) -> Vec<Op> {
    match write {
        Write::Report(report) => vec![Op::Put(
            Table::Reports,
            report_key(lease, report.task()),
            proto::to_bytes(&*report),
        )],
        Write::Answer {
            receipt,
            expires_height,
        } => vec![super::answers::keep(&receipt, expires_height)],
        Write::Forget(task) => vec![Op::Delete(Table::Reports, report_key(lease, task))],
        Write::Awaiting(awaiting) => {
            let mut value = awaiting.digest.as_bytes().to_vec();
            value.extend_from_slice(&awaiting.fuel_used.to_be_bytes());
            vec![Op::Put(
                Table::Awaiting,
                report_key(lease, awaiting.task),
                value,
            )]
        }
        Write::Accepted(acceptance) => {
            let mut ops = vec![super::claims::keep(lease, &acceptance)];
            ops.extend(
                acceptance
                    .payload_unchecked()
                    .results
                    .iter()
                    .map(|r| Op::Delete(Table::Awaiting, report_key(lease, r.task))),
            );
            ops
        }
    }
}

/// A result awaiting acceptance, as [`write_ops`] stored it.
fn decode_awaiting(key: &[u8], value: &[u8]) -> Option<Awaiting> {
    let task: [u8; 8] = key.get(32..40)?.try_into().ok()?;
    let digest: [u8; 32] = value.get(..32)?.try_into().ok()?;
    let fuel: [u8; 8] = value.get(32..40)?.try_into().ok()?;
    Some(Awaiting {
        task: u64::from_be_bytes(task),
        digest: ContentId::from_digest(digest),
        fuel_used: u64::from_be_bytes(fuel),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::proto::{FileRef, TaskLimits};

    fn offer() -> Offer {
        Offer {
            runtimes: vec!["wasm".into()],
            cores: 1,
            memory_mib: 64,
            gpus: 1,
            gpu_model: "NVIDIA H200".into(),
            gpu_memory_mib: 1024,
            score_mfuel_per_s: 1,
            tools: Vec::new(),
            gpu_driver: String::new(),
        }
    }

    /// A provider restarted after shunning requesters still shuns them,
    /// the newest it can hold; older ones are forgotten on disk too.
    #[test]
    fn shunned_requesters_are_remembered_across_a_restart() {
        use cairn_roles::bidder::UNDERPAID_REASON;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("market.redb")).unwrap();
        let key = |i: usize| {
            let mut seed = [9; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            cairn_wire::Keypair::from_seed(seed).public()
        };
        let shunned = UNDERPAID_MAX + 2;
        let ops: Vec<Op> = (0..shunned)
            .map(|i| {
                let at = 1_000 + i as u64;
                Op::Put(
                    Table::Shunned,
                    key(i).as_bytes().to_vec(),
                    at.to_be_bytes().to_vec(),
                )
            })
            .collect();
        db.write(&ops).unwrap();
        let me = cairn_wire::Keypair::from_seed([9; 32]).public();
        let mut bidder = Bidder::new(me, offer(), Box::new(ScalePricing::default()), 1 << 20);
        restore_shunned(&db, &mut bidder).unwrap();
        assert_eq!(db.scan(Table::Shunned, b"").unwrap().len(), UNDERPAID_MAX);
        let order = |job: &[u8]| Order {
            job: ContentId::of(job),
            runtime: "wasm".into(),
            module: ContentId::of(b"module"),
            module_bytes: 1,
            tasks: 1,
            fuel_per_task_max: 1_000,
            memory_mib: 1,
            gpus: 0,
            gpu_memory_mib: 0,
            price_max_ucairn_per_gfuel: 1_000,
            created_ms: 0,
            bid_window_ms: 1_000,
            draw_ppm: cairn_market::DRAW_ALL,
        };
        assert_eq!(
            bidder.order(&order(b"newest"), key(shunned - 1), 0, 1),
            Answer::Decline(UNDERPAID_REASON.into())
        );
        assert!(
            matches!(
                bidder.order(&order(b"oldest"), key(0), 0, 1),
                Answer::Bid(_)
            ),
            "the oldest is forgotten"
        );
        // A record that is not one is forgotten, and the rest still read.
        db.write(&[Op::Put(Table::Shunned, vec![1; 5], vec![0; 8])])
            .unwrap();
        let mut restarted = Bidder::new(me, offer(), Box::new(ScalePricing::default()), 1 << 20);
        restore_shunned(&db, &mut restarted).unwrap();
        assert_eq!(db.scan(Table::Shunned, b"").unwrap().len(), UNDERPAID_MAX);
        assert_eq!(
            restarted.order(&order(b"newest again"), key(shunned - 1), 0, 1),
            Answer::Decline(UNDERPAID_REASON.into())
        );
    }

    fn lease() -> Lease {
        let key = cairn_wire::Keypair::from_seed([1; 32]).public();
        Lease {
            job: ContentId::of(b"job"),
            requester: key,
            provider: key,
            price_ucairn_per_gfuel: 1,
            fuel_per_task_max: 1_000,
            expires_height: 10,
        }
    }

    fn terms(limits: TaskLimits) -> Terms {
        Terms {
            module: FileRef {
                name: "module.wasm".into(),
                id: ContentId::of(b"m"),
                size: 1,
            },
            inputs: Vec::new(),
            limits,
        }
    }

    /// A `limit_inflater` requester writes terms over what the provider
    /// advertised, one limit at a time: each is refused and named; terms
    /// within every cap are taken.
    #[test]
    fn limit_inflater_terms_are_refused() {
        let caps = TaskCaps {
            wall_time_ms: 10_000,
            output_bytes: 1 << 20,
            stdout_bytes: 1 << 10,
        };
        let fair = TaskLimits {
            fuel: 1_000,
            fuel_min: 1,
            memory_bytes: 64 << 20,
            wall_time_ms: 10_000,
            output_bytes: 1 << 20,
            stdout_bytes: 1 << 10,
            gpus: 1,
            gpu_memory_mib: 1024,
        };
        assert_eq!(
            terms_over_caps(&terms(fair.clone()), &lease(), &offer(), &caps),
            None
        );
        let inflated = [
            (
                "fuel",
                TaskLimits {
                    fuel: 1_001,
                    ..fair.clone()
                },
            ),
            (
                "memory",
                TaskLimits {
                    memory_bytes: (64 << 20) + 1,
                    ..fair.clone()
                },
            ),
            (
                "wall-time",
                TaskLimits {
                    wall_time_ms: u64::MAX,
                    ..fair.clone()
                },
            ),
            (
                "output",
                TaskLimits {
                    output_bytes: (1 << 20) + 1,
                    ..fair.clone()
                },
            ),
            (
                "stdout",
                TaskLimits {
                    stdout_bytes: u64::MAX,
                    ..fair.clone()
                },
            ),
            (
                "GPUs",
                TaskLimits {
                    gpus: 2,
                    ..fair.clone()
                },
            ),
            (
                "GPU's memory",
                TaskLimits {
                    gpu_memory_mib: 1025,
                    ..fair.clone()
                },
            ),
        ];
        for (what, limits) in inflated {
            let reason = terms_over_caps(&terms(limits), &lease(), &offer(), &caps)
                .unwrap_or_else(|| panic!("inflated {what} was accepted"));
            assert!(reason.contains(what), "{what}: {reason}");
        }
    }
}
