//! api: The node's HTTP API as types: every body its routes take and answer, defined once for the server and every client.
//!
//! The node's server (`cairn-node`) answers with these types, and the CLI
//! and a provider's remote ledger link read the same types back, so no
//! field is picked out of untyped JSON by hand and a renamed field breaks
//! the build, not a user. Ids and keys are [`ContentId`] and [`PublicKey`]
//! (their hex in JSON): a malformed one is refused when the answer is read.
//! Clients ignore fields they do not know, so a newer node can add fields;
//! a new value of an enum ([`JobState`], [`TxStatus`]) is a breaking change.
//!
//! The routes, what each needs and every refusal are documented on
//! `cairn_node::api`.

#![deny(missing_docs)]

use cairn_wire::{ContentId, PublicKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use cairn_proto::{
    STREAM_TASKS_AT_ONCE_MAX, Submission, SubmittedFile, SubmittedLimits, SubmittedStream,
    SubmittedTask, SubmittedVerify,
};
pub use token::{ApiToken, TOKEN_FILE};

mod token;

/// The largest `POST /v1/jobs` body. A submission lists every task
/// expanded (a 64-hex-digit seed, its arguments and outputs: 100 to 300
/// bytes each), so this holds 5,000 to 20,000 tasks; `cairn bench net`'s
/// 5,000-task job is 0.5 MB. A bigger job is split into several. It bounds
/// what one request makes the node parse and keep.
pub const SUBMISSION_BYTES_MAX: usize = 2 << 20;

/// The body of every refusal (any 4xx or 5xx): what was wrong, with the
/// bad value where there is one. A 5xx says nothing of its cause.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    /// What was wrong.
    pub error: String,
}

/// `GET /v1/status`: the chain as of its last finalized block.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Status {
    /// The chain's id, which every transaction names.
    pub chain: ContentId,
    /// The last finalized block's height.
    pub height: u64,
    /// The state root after it.
    pub root: ContentId,
    /// Transactions waiting in this node's mempool.
    pub pending: u64,
    /// Tokens in existence, µcairn.
    pub supply: u64,
    /// Fees collected and not yet paid out, µcairn.
    pub fee_pool: u64,
    /// Tokens destroyed, µcairn.
    pub burned: u64,
    /// The validators, who attest dispute verdicts.
    pub validators: Vec<PublicKey>,
    /// How many of them a verdict needs.
    pub verdict_quorum: u64,
}

/// `GET /v1/accounts/{key}`: an account (all zero if it never received
/// anything).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Account {
    /// Its key.
    pub key: PublicKey,
    /// The height it is read at.
    pub height: u64,
    /// Spendable, µcairn.
    pub balance: u64,
    /// The nonce its next transaction takes.
    pub nonce: u64,
    /// Bonded as a provider, µcairn.
    pub stake: u64,
    /// Unbonding, µcairn: returned once its delay passes.
    pub unbonding: u64,
    /// Whether its stake lets it bid.
    pub can_bid: bool,
}

/// `GET /v1/challenges/{provider}`: reveal challenges open against a
/// provider's commits, which it answers with `Reveal` transactions.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Challenges {
    /// The provider.
    pub provider: PublicKey,
    /// The height they are read at.
    pub height: u64,
    /// That block's time, ms since the epoch.
    pub time_ms: u64,
    /// How many are open (more than are listed, perhaps).
    pub open: u64,
    /// The first of them to close, at most
    /// `cairn_node::market::CHALLENGES_LISTED_MAX`.
    pub challenges: Vec<Challenge>,
}

/// One open reveal challenge.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Challenge {
    /// The lease the commit was made under.
    pub lease: ContentId,
    /// The task.
    pub task: u64,
    /// The window closes once the chain is past this height...
    pub deadline: u64,
    /// ...and past this block time (ms since the epoch).
    pub deadline_ms: u64,
}

/// `GET /v1/escrows/{job}`: a job's open escrow.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Escrow {
    /// The job.
    pub job: ContentId,
    /// Who locked it and gets the rest back.
    pub owner: PublicKey,
    /// What is left, µcairn.
    pub balance: u64,
    /// The last height a lease on the job is live.
    pub leases_until: u64,
    /// Its owner asked to close it.
    pub closing: bool,
}

/// `POST /v1/txs` (`202`): the transaction passed admission and waits for
/// a block.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Queued {
    /// Always true.
    pub queued: bool,
}

/// `GET /v1/txs/{signer}/{nonce}`: what became of a signer's transaction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TxStatus {
    /// No block has carried a transaction with this nonce yet.
    Pending,
    /// A block applied it. Long ago, which block and which transaction
    /// are forgotten, and only that the nonce was taken is known.
    Applied {
        /// The block's height.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        height: Option<u64>,
        /// The transaction's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tx: Option<ContentId>,
    },
    /// A block carried it and the ledger refused it (its nonce is taken).
    Refused {
        /// The block's height.
        height: u64,
        /// Why.
        reason: String,
        /// The transaction's id.
        tx: ContentId,
    },
}

/// `GET /v1/blocks/{height}`: a recent finalized block.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Block {
    /// Its height.
    pub height: u64,
    /// Its digest (consensus's, hex).
    pub digest: String,
    /// Its proposer's clock, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Transactions applied.
    pub applied: u64,
    /// Transactions carried and refused.
    pub refused: u64,
    /// The state root after it.
    pub root: ContentId,
}

/// `POST /v1/blobs`: the stored blob's content id.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct BlobStored {
    /// BLAKE3 of its bytes.
    pub id: ContentId,
}

/// `POST /v1/jobs` (`201`): the job, its budget escrowed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobCreated {
    /// The job's id.
    pub job: ContentId,
}

/// `GET /v1/jobs`: every job of this node, oldest first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobList {
    /// Their statuses.
    pub jobs: Vec<JobStatus>,
}

/// Where a job is in its life.
#[derive(
    Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Its auction collects bids, or winners sign leases.
    Bidding,
    /// No provider could take it yet; `reason` says why.
    Queued,
    /// Providers run its tasks.
    Running,
    /// Its pending work needs a provider it does not have (every provider
    /// in it has run those tasks, and a replica must come from another);
    /// `reason` names the tasks.
    Stalled,
    /// Every task has a verified result, and the job asked for approval:
    /// the requester approves or rejects them until its window ends
    /// (`approval_until_ms`); what is not judged by then is approved.
    Approval,
    /// Every task is decided; payments are settling on the ledger.
    Settling,
    /// Over, every task with a verified result.
    Done,
    /// Over, some tasks without one.
    Failed,
    /// Over, cancelled by its requester: its accepted results are kept
    /// and paid, the rest of its tasks given up, its escrow's rest
    /// returned.
    Cancelled,
}

impl JobState {
    /// Every state, in the order a job meets them.
    pub const ALL: [Self; 9] = [
        Self::Bidding,
        Self::Queued,
        Self::Running,
        Self::Stalled,
        Self::Approval,
        Self::Settling,
        Self::Done,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Its name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bidding => "bidding",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Stalled => "stalled",
            Self::Approval => "approval",
            Self::Settling => "settling",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over (done, failed or cancelled).
    pub fn is_over(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so a table's `{:<8}` lines its column up.
        f.pad(self.as_str())
    }
}

/// `GET /v1/jobs/{id}`: a job's status.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobStatus {
    /// Its id.
    pub id: ContentId,
    /// Its name.
    pub name: String,
    /// Where it is.
    pub state: JobState,
    /// Why it is queued or failed, or what it waits for.
    pub reason: Option<String>,
    /// Tasks in all.
    pub total: u32,
    /// Finished, with a verified result.
    pub done: u32,
    /// Running.
    pub running: u32,
    /// Waiting.
    pub pending: u32,
    /// Given up.
    pub failed: u32,
    /// Providers working on it.
    pub providers: u32,
    /// Auctions held.
    pub auctions: u32,
    /// Submitted (ms since the Unix epoch).
    pub submitted_ms: u64,
    /// When its first task was handed out.
    pub first_task_ms: Option<u64>,
    /// When it finished.
    pub finished_ms: Option<u64>,
    /// Results in the requester's settlement claims the ledger applied.
    pub settled: u64,
    /// Executions, replicas included: what verification cost.
    pub executions: u64,
    /// Disputes started.
    pub disputes: u32,
    /// Providers convicted of cheating on it.
    pub convicted: Vec<PublicKey>,
    /// For a job that asks for approval: results approved (by the
    /// requester, or by the window's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<u32>,
    /// For a job that asks for approval: results rejected, each run again
    /// by other providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u32>,
    /// When the results not judged yet are approved (ms since the epoch),
    /// once every task has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_until_ms: Option<u64>,
}

/// `POST /v1/jobs/{id}/approval`: the requester's judgement of some of a
/// job's results, by task. An approved result is paid when the job
/// settles; a rejected one is not paid, and its task is run again by
/// providers that did not return it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Approval {
    /// Tasks whose results are approved.
    #[serde(default)]
    pub approve: Vec<u32>,
    /// Tasks whose results are rejected.
    #[serde(default)]
    pub reject: Vec<u32>,
}

/// `POST /v1/jobs/{id}/tasks`: tasks to add to a live stream after its
/// last (a segment's renditions), each held to the rules of its first;
/// their own inputs must be uploaded first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MoreTasks {
    /// The tasks, in order.
    pub tasks: Vec<SubmittedTask>,
}

/// The answer to [`MoreTasks`]: where the tasks went.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TasksAdded {
    /// The first new task's index (the rest follow it in order).
    pub first: u32,
    /// The job's tasks now.
    pub total: u32,
}

/// The largest `POST /v1/jobs/{id}/tasks` body: a segment's ladder many
/// times over.
pub const MORE_TASKS_BYTES_MAX: usize = 256 << 10;

/// The most tasks one [`Approval`] names.
pub const APPROVAL_TASKS_MAX: usize = 100_000;

/// The most results one page of `GET /v1/jobs/{id}/results` holds: an
/// answer stays small however many tasks a job has.
pub const RESULTS_PAGE_MAX: u32 = 1_000;

/// `GET /v1/jobs/{id}/results`: a page of the job's finished tasks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobResults {
    /// One per finished task, by task, from the page's first.
    pub results: Vec<TaskRecord>,
    /// Where the next page starts (its `from`); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u32>,
}

/// The query of `GET /v1/jobs/{id}/results`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsPage {
    /// The first task to list (finished or not); 0 when absent.
    pub from: Option<u32>,
    /// The most results to list, 1 to [`RESULTS_PAGE_MAX`]; that when
    /// absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A finished task: what the requester accepted, and what it keeps of it
/// across restarts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TaskRecord {
    /// Its index in the job.
    pub task: u32,
    /// Who ran it.
    pub provider: PublicKey,
    /// The result's digest: BLAKE3 of its manifest.
    pub digest: ContentId,
    /// Fuel used.
    pub fuel_used: u64,
    /// Whether the program succeeded.
    pub success: bool,
    /// How it ended.
    pub outcome: String,
    /// Its output files, in the node's blob store.
    pub outputs: Vec<SubmittedFile>,
    /// Its standard output, in the node's blob store; `None` when empty.
    #[serde(default)]
    pub stdout: Option<SubmittedFile>,
    /// Its standard error, in the node's blob store; `None` when empty.
    #[serde(default)]
    pub stderr: Option<SubmittedFile>,
    /// The provider's signed receipt (hex of its canonical bytes), which
    /// settlement pays.
    pub receipt: String,
}

/// `GET /v1/market`: this node's market peer, and what it dropped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MarketStats {
    /// The key it signs orders, leases and transactions with: its account.
    pub key: PublicKey,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Addresses others can dial (multiaddresses ending in its peer id).
    pub listen: Vec<String>,
    /// Connected peers.
    pub peers: u64,
    /// Messages that did not decode.
    pub malformed: u64,
    /// Signatures that did not verify.
    pub bad_signature: u64,
    /// Orders seen before, or past their window.
    pub replayed: u64,
    /// Requests refused for breaking the protocol.
    pub refused: u64,
    /// Requests and orders over a peer's rate or the node's in-flight
    /// bound.
    pub rate_limited: u64,
    /// Frames over the size limit the network dropped.
    pub oversized: u64,
    /// Truncated frames the network dropped.
    pub truncated: u64,
}

/// `GET /v1/providers`: every provider that bid for this node's work,
/// as this node saw it, most recent bid first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Providers {
    /// The providers, at most `cairn_roles::PROVIDERS_SEEN_MAX`.
    pub providers: Vec<ProviderSeen>,
}

/// A provider as the bids it sent this node and its record here show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ProviderSeen {
    /// Its key.
    pub key: PublicKey,
    /// The price of its last bid, µcairn per billion fuel.
    pub price_ucairn_per_gfuel: u64,
    /// Tasks its last bid would run at once.
    pub slots: u32,
    /// CPU cores it lends.
    pub cores: u32,
    /// Memory it lends, MiB.
    pub memory_mib: u32,
    /// GPUs it lends.
    pub gpus: u32,
    /// What it runs: `wasm`, and installed tools at their versions.
    pub runtimes: Vec<String>,
    /// Its benchmark score: millions of fuel per second per core.
    pub score_mfuel_per_s: u32,
    /// Its bonded stake when it last bid, µcairn.
    pub stake: u64,
    /// Time from an order to its bid, the last one, ms.
    pub latency_ms: u64,
    /// When it last bid (ms since the Unix epoch).
    pub last_bid_ms: u64,
    /// Bids it sent that an auction took.
    pub bids: u64,
    /// Bids that won a lease.
    pub won: u64,
    /// Its results another provider confirmed, ever.
    pub confirmed: u64,
    /// Its results accepted on its word alone.
    pub alone: u64,
    /// Proven offences against this node: wrong results, bad or missing
    /// reveals. One is enough to get no more work from it.
    pub convictions: u64,
}

/// `GET /v1/prices`: the prices this node's auctions cleared at, oldest
/// first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Prices {
    /// One per lease won, the most recent `cairn_roles::PRICES_KEPT`.
    pub prices: Vec<PricePoint>,
}

/// A winning bid's price.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PricePoint {
    /// When its auction closed (ms since the Unix epoch).
    pub at_ms: u64,
    /// The job.
    pub job: ContentId,
    /// The winner.
    pub provider: PublicKey,
    /// Its price, µcairn per billion fuel.
    pub price_ucairn_per_gfuel: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_status_reads_as_each_kind_the_server_writes() {
        let tx = ContentId::of(b"tx");
        for status in [
            TxStatus::Pending,
            TxStatus::Applied {
                height: None,
                tx: None,
            },
            TxStatus::Applied {
                height: Some(9),
                tx: Some(tx),
            },
            TxStatus::Refused {
                height: 9,
                reason: "nonce taken".into(),
                tx,
            },
        ] {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(serde_json::from_str::<TxStatus>(&json).unwrap(), status);
        }
        assert_eq!(
            serde_json::to_string(&TxStatus::Pending).unwrap(),
            r#"{"status":"pending"}"#
        );
        assert!(serde_json::from_str::<TxStatus>(r#"{"status":"lost"}"#).is_err());
    }

    #[test]
    fn a_job_state_is_its_lowercase_name_and_nothing_else_reads() {
        for state in JobState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(serde_json::from_str::<JobState>(&json).unwrap(), state);
        }
        assert_eq!(format!("[{:<8}]", JobState::Done), "[done    ]");
        assert!(serde_json::from_str::<JobState>("\"Done\"").is_err());
        assert!(serde_json::from_str::<JobState>("\"paused\"").is_err());
    }

    #[test]
    fn an_answer_with_a_malformed_key_is_refused_and_unknown_fields_are_ignored() {
        let key = cairn_wire::Keypair::from_seed([5; 32]).public();
        let good = format!(
            r#"{{"key":"{key}","height":3,"balance":1,"nonce":0,"stake":0,"unbonding":0,"can_bid":false,"added_later":1}}"#
        );
        assert_eq!(serde_json::from_str::<Account>(&good).unwrap().key, key);
        let bad = good.replace(&key.to_string(), "00ff");
        let error = serde_json::from_str::<Account>(&bad).unwrap_err();
        assert!(error.to_string().contains("public key"), "{error}");
    }
}
