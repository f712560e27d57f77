//! The node's HTTP API (JSON): the ledger's state, signed transactions,
//! and the market's blobs and jobs.
//!
//! Open to any caller that names this API in `Host` (see [`access`] for why
//! each check is there):
//!
//! - `GET  /v1/openapi.json` — this API as an OpenAPI 3.1 document (see
//!   [`openapi`]).
//! - `GET  /` — the web console (see [`console`]): a page that asks for the
//!   token and shows the node's jobs, providers, prices and blocks live.
//! - `GET  /v1/status` — chain id, height, state root, transactions pending.
//! - `GET  /v1/accounts/{key}` — balance, nonce, stake, unbonding.
//! - `GET  /v1/escrows/{job}` — a job's escrow.
//! - `GET  /v1/blocks/{height}` — a recent finalized block.
//! - `GET  /v1/blocks/events` — each finalized block as a server-sent
//!   event, from the last one (see [`events`]).
//! - `POST /v1/txs` — a transaction's canonical bytes
//!   (`application/octet-stream`, at most [`TX_BYTES_MAX`]); `202` when queued.
//! - `GET  /v1/txs/{signer}/{nonce}` — whether it was applied or refused,
//!   and why.
//! - `GET  /v1/market` — the node's key, peer id, addresses, and what was
//!   dropped.
//!
//! These need no token: the chain's state is the same on every validator
//! and public by design, a transaction is authorised by its own signature
//! (and providers that follow this node's ledger post theirs here), and the
//! market's peer id and addresses are what the node tells every peer.
//!
//! With `Authorization: Bearer <token>` (the node's `api.token`), because
//! they spend the node's money, store data on it or read its jobs:
//!
//! - `POST /v1/blobs` — raw bytes (`application/octet-stream`, at most
//!   [`BLOB_BYTES_MAX`](crate::market::BLOB_BYTES_MAX)); answers the content id.
//! - `GET  /v1/blobs/{id}` — a stored blob.
//! - `POST /v1/jobs` — a [`Submission`](crate::market::Submission)
//!   (`application/json`, at most [`SUBMISSION_BYTES_MAX`]), checked
//!   against the job file's rules; escrows its budget and answers the job id.
//! - `GET  /v1/jobs` — every job's status.
//! - `GET  /v1/jobs/{id}` — one job's status, with the reason it is queued.
//! - `GET  /v1/jobs/{id}/events` — the job's status as server-sent events,
//!   one each time it changes, until it is over (see [`events`]).
//! - `GET  /v1/jobs/{id}/results?from=&limit=` — finished tasks and their
//!   output blobs, a page of at most 1,000 by task; `next` names the next
//!   page's `from`.
//! - `POST /v1/jobs/{id}/cancel` — cancels the job (no body): its accepted
//!   results are paid, its other tasks given up, its providers released,
//!   and the rest of its escrow returns; answers its status; `409` when
//!   it is cancelled or over already or its escrow is not on the ledger
//!   yet, `503` when the ledger cannot be read.
//! - `POST /v1/jobs/{id}/tasks` — adds tasks to a live stream after its
//!   last (`{"tasks": [...]}`, each held to the rules of its first; their
//!   own inputs uploaded first); answers where they went; `409` when the
//!   job is no stream or the stream is ended, cancelled or over.
//! - `POST /v1/jobs/{id}/end` — ends a live stream (no body): it settles
//!   once its tasks are decided; answers its status.
//! - `POST /v1/jobs/{id}/approval` — judges results of a job that asks
//!   for approval (`{"approve": [tasks], "reject": [tasks]}`): approved
//!   ones are paid when it settles, rejected ones are not paid and run
//!   again by other providers; answers its status; `409` when the job did
//!   not ask, is over or cancelled, or a task named has no result to
//!   judge (nothing is changed then).
//! - `GET  /v1/providers` — every provider that bid for this node's work:
//!   its last bid's price and resources, stake, latency, bids won, and its
//!   record here (results confirmed, convictions).
//! - `GET  /v1/prices` — the prices this node's auctions cleared at.
//! - `GET  /metrics` — what the node does, for Prometheus (OpenMetrics
//!   text): ledger height and mempool, peers, messages dropped by why, the
//!   provider's bids, leases, tasks and fuel, the requester's jobs and tasks
//!   by state, executions, disputes and convictions.
//!
//! Refusals: `400` bad input, `401` no or wrong token, `403` another
//! origin, `404` no such job, blob or block, `409` a job over already,
//! `413` body too large, `415` wrong content type, `421` a `Host` that is
//! not this API; each with `{"error": "<what was wrong>"}`. A `500`
//! says nothing of the cause, which goes to the node's log.
//!
//! Every body is a type of `cairn_api`, which the clients read back.

pub mod access;
mod console;
mod events;
mod metrics;
mod openapi;
#[cfg(test)]
mod tests;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_api as api;
use cairn_chain::{Ledger, SubmitError, TxOutcome, TxRecord};
use cairn_wire::{ContentId, PublicKey};
use openapi::Octets;

pub use access::{Access, ApiToken, TOKEN_FILE};
pub use cairn_chain::TX_BYTES_MAX;

pub use cairn_api::SUBMISSION_BYTES_MAX;
/// The largest body of any route that does not set its own: none of the
/// others reads one.
const BODY_BYTES_DEFAULT_MAX: usize = 64 << 10;

const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

/// The API of a node: the ledger's routes when it keeps the ledger, the
/// market's when it takes part in the market, behind `access`.
pub fn app(
    ledger: Option<Ledger>,
    market: Option<crate::market::Market>,
    access: Access,
) -> Router {
    let sources = metrics::Sources {
        ledger: ledger.clone(),
        market: market.clone(),
    };
    let mut app = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route_layer(from_fn_with_state(access.clone(), access::require_token))
        .with_state(sources)
        .route("/v1/openapi.json", get(openapi::document))
        .merge(console::routes());
    if let Some(ledger) = ledger {
        app = app.merge(ledger_routes(ledger));
    }
    if let Some(market) = market {
        app = app.merge(market_routes(market, &access));
    }
    app.layer(DefaultBodyLimit::max(BODY_BYTES_DEFAULT_MAX))
        .layer(from_fn_with_state(access, access::guard))
}

/// The ledger's routes, open to any caller.
fn ledger_routes(ledger: Ledger) -> Router {
    Router::new()
        .route(
            "/v1/blocks/events",
            get(events::block_events).with_state((ledger.clone(), events::Streams::new())),
        )
        .route("/v1/status", get(status))
        .route("/v1/accounts/{key}", get(account))
        .route("/v1/escrows/{job}", get(escrow))
        .route("/v1/challenges/{provider}", get(challenges))
        .route("/v1/blocks/{height}", get(block))
        .route(
            "/v1/txs",
            post(submit)
                .route_layer(DefaultBodyLimit::max(TX_BYTES_MAX))
                .route_layer(from_fn_with_state(OCTETS, access::require_content_type)),
        )
        .route("/v1/txs/{signer}/{nonce}", get(outcome))
        .with_state(ledger)
}

/// An error answer: a status and a message that says what was wrong.
struct ApiError(StatusCode, String);

impl ApiError {
    /// A failure of the node itself: logged here, answered with a `500`
    /// that says nothing of it (paths, store errors) to the caller.
    fn internal(what: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!("api: {what}: {error}");
        Self(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the node's log says more".into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(api::ErrorBody { error: self.1 })).into_response()
    }
}

#[utoipa::path(get, path = "/v1/status", tag = "ledger",
    responses((status = 200, description = "The chain as of its last finalized block", body = api::Status)))]
async fn status(State(ledger): State<Ledger>) -> Json<api::Status> {
    let pending = ledger.pending() as u64;
    // The height and its root together (the state may move on meanwhile).
    let (height, root) = ledger.head();
    Json(ledger.view(|state| api::Status {
        chain: state.chain(),
        height,
        root,
        pending,
        supply: state.supply(),
        fee_pool: state.fee_pool(),
        burned: state.burned(),
        validators: state.validators().iter().copied().collect(),
        verdict_quorum: state.verdict_quorum() as u64,
    }))
}

/// A path segment that is a number (a height, a nonce): `400` with why if
/// it is not one, or is over 2^63 − 1 (what a JSON client can rely on;
/// no height or nonce comes near).
fn number(text: &str, what: &str) -> Result<u64, ApiError> {
    text.parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "'{text}' is not a {what}: a whole number from 0 to {}",
                    i64::MAX
                ),
            )
        })
}

/// A path segment that names an id or a key: `400` with why if it does not.
fn parse<T: std::str::FromStr<Err = cairn_wire::WireError>>(text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|e: cairn_wire::WireError| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

#[utoipa::path(get, path = "/v1/accounts/{key}", tag = "ledger",
    params(("key" = PublicKey, Path, description = "The account's public key")),
    responses((status = 200, description = "The account; all zero if it never received anything", body = api::Account),
        (status = 400, description = "Not a public key", body = api::ErrorBody)))]
async fn account(
    State(ledger): State<Ledger>,
    Path(key): Path<String>,
) -> Result<Json<api::Account>, ApiError> {
    let key: PublicKey = parse(&key)?;
    Ok(Json(ledger.view(|state| {
        let account = state.account(&key);
        api::Account {
            key,
            height: state.height(),
            balance: account.balance,
            nonce: account.nonce,
            stake: state.provider(&key).map_or(0, |p| p.stake),
            unbonding: state.unbonding_of(&key),
            can_bid: state.can_bid(&key),
        }
    })))
}

/// The open reveal challenges against a provider's commits, which it
/// answers with `Reveal` transactions.
#[utoipa::path(get, path = "/v1/challenges/{provider}", tag = "ledger",
    params(("provider" = PublicKey, Path, description = "The provider's public key")),
    responses((status = 200, description = "Reveal challenges open against its commits", body = api::Challenges),
        (status = 400, description = "Not a public key", body = api::ErrorBody)))]
async fn challenges(
    State(ledger): State<Ledger>,
    Path(provider): Path<String>,
) -> Result<Json<api::Challenges>, ApiError> {
    let provider: PublicKey = parse(&provider)?;
    Ok(Json(ledger.view(|state| {
        crate::market::challenges_against(state, provider)
    })))
}

#[utoipa::path(get, path = "/v1/escrows/{job}", tag = "ledger",
    params(("job" = ContentId, Path, description = "The job's id")),
    responses((status = 200, description = "The job's open escrow", body = api::Escrow),
        (status = 400, description = "Not a content id", body = api::ErrorBody),
        (status = 404, description = "No open escrow for the job", body = api::ErrorBody)))]
async fn escrow(
    State(ledger): State<Ledger>,
    Path(job): Path<String>,
) -> Result<Json<api::Escrow>, ApiError> {
    let job: ContentId = parse(&job)?;
    let escrow = ledger
        .view(|state| state.escrow(&job).copied())
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no open escrow for job {job}"),
            )
        })?;
    Ok(Json(api::Escrow {
        job,
        owner: escrow.owner,
        balance: escrow.balance,
        leases_until: escrow.leases_until,
        closing: escrow.closing,
    }))
}

/// The body, or why it was not read: over `bytes_max` (413) or cut off.
fn body(body: Result<Bytes, BytesRejection>, bytes_max: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {bytes_max} bytes, the most this route takes"),
        ),
        status => ApiError(status, e.body_text()),
    })
}

#[utoipa::path(post, path = "/v1/txs", tag = "ledger",
    request_body(content = Octets, content_type = "application/octet-stream", description = "A signed transaction's canonical bytes"),
    responses((status = 202, description = "Admitted; it waits for a block", body = api::Queued),
        (status = 400, description = "Refused at admission (signature, nonce, chain, fee), with why", body = api::ErrorBody),
        (status = 413, description = "Over the largest transaction", body = api::ErrorBody),
        (status = 415, description = "Not application/octet-stream", body = api::ErrorBody),
        (status = 429, description = "The signer has too many transactions waiting", body = api::ErrorBody),
        (status = 503, description = "The mempool is full", body = api::ErrorBody)))]
async fn submit(
    State(ledger): State<Ledger>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<api::Queued>), ApiError> {
    let bytes = body(bytes, TX_BYTES_MAX)?;
    match ledger.submit(bytes.to_vec()) {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(api::Queued { queued: true }))),
        Err(SubmitError::Full) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            SubmitError::Full.to_string(),
        )),
        // The sender's window is full: the same transaction passes once
        // blocks take its earlier ones.
        Err(e @ SubmitError::NonceTooFar { .. }) => {
            Err(ApiError(StatusCode::TOO_MANY_REQUESTS, e.to_string()))
        }
        Err(e) => Err(ApiError(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

#[utoipa::path(get, path = "/v1/txs/{signer}/{nonce}", tag = "ledger",
    params(("signer" = PublicKey, Path, description = "The signer's public key"),
        ("nonce" = u64, Path, description = "The transaction's nonce")),
    responses((status = 200, description = "What became of it", body = api::TxStatus),
        (status = 400, description = "Not a public key, or not a nonce", body = api::ErrorBody)))]
async fn outcome(
    State(ledger): State<Ledger>,
    Path((signer, nonce)): Path<(String, String)>,
) -> Result<Json<api::TxStatus>, ApiError> {
    let signer: PublicKey = parse(&signer)?;
    let nonce = number(&nonce, "nonce")?;
    Ok(Json(match ledger.outcome(&signer, nonce) {
        Some(TxRecord { tx, outcome }) => match outcome {
            TxOutcome::Applied(height) => api::TxStatus::Applied {
                height: Some(height),
                tx: Some(tx),
            },
            TxOutcome::Refused(height, reason) => api::TxStatus::Refused { height, reason, tx },
        },
        // Long ago: the block is forgotten, so which transaction took the
        // nonce is too.
        None if ledger.view(|state| state.account(&signer).nonce) > nonce => {
            api::TxStatus::Applied {
                height: None,
                tx: None,
            }
        }
        None => api::TxStatus::Pending,
    }))
}

#[utoipa::path(get, path = "/v1/blocks/{height}", tag = "ledger",
    params(("height" = u64, Path, description = "The block's height")),
    responses((status = 200, description = "A recent finalized block", body = api::Block),
        (status = 400, description = "Not a height", body = api::ErrorBody),
        (status = 404, description = "No recent block at that height on this node", body = api::ErrorBody)))]
async fn block(
    State(ledger): State<Ledger>,
    Path(height): Path<String>,
) -> Result<Json<api::Block>, ApiError> {
    let height = number(&height, "height")?;
    let block = ledger.block(height).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no recent block at height {height} on this node"),
        )
    })?;
    Ok(Json(block_body(block)))
}

/// A block as the API shows it.
fn block_body(block: cairn_chain::BlockSummary) -> api::Block {
    api::Block {
        height: block.height,
        digest: block.digest.to_string(),
        timestamp_ms: block.timestamp_ms,
        applied: block.applied as u64,
        refused: block.refused as u64,
        root: block.root,
    }
}

/// The market's routes: the stats open, the rest behind the token.
fn market_routes(market: crate::market::Market, access: &Access) -> Router {
    let private = Router::new()
        .route(
            "/v1/blobs",
            post(put_blob)
                .route_layer(DefaultBodyLimit::max(
                    crate::market::BLOB_BYTES_MAX as usize,
                ))
                .route_layer(from_fn_with_state(OCTETS, access::require_content_type)),
        )
        .route("/v1/blobs/{id}", get(get_blob))
        .route(
            "/v1/jobs",
            post(submit_job)
                .route_layer(DefaultBodyLimit::max(SUBMISSION_BYTES_MAX))
                .route_layer(from_fn_with_state(JSON, access::require_content_type))
                .get(list_jobs),
        )
        .route("/v1/jobs/{id}", get(job_status))
        .route(
            "/v1/jobs/{id}/events",
            get(events::job_events).with_state((market.clone(), events::Streams::new())),
        )
        .route("/v1/jobs/{id}/results", get(job_results))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route(
            "/v1/jobs/{id}/tasks",
            post(add_tasks)
                .route_layer(DefaultBodyLimit::max(api::MORE_TASKS_BYTES_MAX))
                .route_layer(from_fn_with_state(JSON, access::require_content_type)),
        )
        .route("/v1/jobs/{id}/end", post(end_stream))
        .route(
            "/v1/jobs/{id}/approval",
            post(judge_job)
                .route_layer(DefaultBodyLimit::max(APPROVAL_BYTES_MAX))
                .route_layer(from_fn_with_state(JSON, access::require_content_type)),
        )
        .route("/v1/providers", get(providers))
        .route("/v1/prices", get(prices))
        .route_layer(from_fn_with_state(access.clone(), access::require_token));
    Router::new()
        .route("/v1/market", get(market_stats))
        .merge(private)
        .with_state(market)
}

type MarketState = State<crate::market::Market>;

#[utoipa::path(post, path = "/v1/blobs", tag = "market", security(("token" = [])),
    request_body(content = Octets, content_type = "application/octet-stream", description = "The blob's bytes"),
    responses((status = 200, description = "Stored; its content id", body = api::BlobStored),
        (status = 413, description = "Over the largest blob", body = api::ErrorBody),
        (status = 415, description = "Not application/octet-stream", body = api::ErrorBody)))]
async fn put_blob(
    State(market): MarketState,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<api::BlobStored>, ApiError> {
    let body = body(bytes, crate::market::BLOB_BYTES_MAX as usize)?;
    let blobs = market.blobs().clone();
    let id = tokio::task::spawn_blocking(move || blobs.put(&body))
        .await
        .map_err(|e| ApiError::internal("storing a blob", e))?
        .map_err(|e| match e {
            cairn_store::BlobError::TooLarge { .. } => {
                ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            e => ApiError::internal("storing a blob", e),
        })?;
    Ok(Json(api::BlobStored { id }))
}

#[utoipa::path(get, path = "/v1/blobs/{id}", tag = "market", security(("token" = [])),
    params(("id" = ContentId, Path, description = "The blob's content id")),
    responses((status = 200, description = "The blob's bytes", body = Octets, content_type = "application/octet-stream"),
        (status = 400, description = "Not a content id", body = api::ErrorBody),
        (status = 404, description = "No such blob on this node", body = api::ErrorBody)))]
async fn get_blob(State(market): MarketState, Path(id): Path<String>) -> Result<Vec<u8>, ApiError> {
    let id: ContentId = parse(&id)?;
    // Up to the blob limit read and hashed: a blocking thread's work.
    let blobs = market.blobs().clone();
    let read = tokio::task::spawn_blocking(move || blobs.read(&id))
        .await
        .map_err(|e| ApiError::internal("reading a blob", e))?;
    read.map_err(|e| match e {
        cairn_store::BlobError::NotFound(_) => {
            ApiError(StatusCode::NOT_FOUND, format!("no blob {id} on this node"))
        }
        e => ApiError::internal("reading a blob", e),
    })
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("token" = [])),
    request_body(content = api::Submission, content_type = "application/json", description = "The job, expanded into tasks, its files uploaded as blobs"),
    responses((status = 201, description = "Accepted: its budget is escrowed and it is put up for auction", body = api::JobCreated),
        (status = 400, description = "Not a submission, or one that breaks the job file's rules, or its escrow was refused; says which", body = api::ErrorBody),
        (status = 413, description = "Over the largest submission", body = api::ErrorBody),
        (status = 415, description = "Not application/json", body = api::ErrorBody)))]
async fn submit_job(
    State(market): MarketState,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<api::JobCreated>), ApiError> {
    let bytes = body(bytes, SUBMISSION_BYTES_MAX)?;
    let submission: api::Submission = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid submission: {e}")))?;
    let id = market
        .submit(submission)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    Ok((StatusCode::CREATED, Json(api::JobCreated { job: id })))
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("token" = [])),
    responses((status = 200, description = "Every job of this node, oldest first", body = api::JobList)))]
async fn list_jobs(State(market): MarketState) -> Json<api::JobList> {
    Json(api::JobList {
        jobs: market.jobs(),
    })
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("token" = [])),
    params(("id" = ContentId, Path, description = "The job's id")),
    responses((status = 200, description = "The job's status, with why it waits", body = api::JobStatus),
        (status = 400, description = "Not a content id", body = api::ErrorBody),
        (status = 404, description = "No such job on this node", body = api::ErrorBody)))]
async fn job_status(
    State(market): MarketState,
    Path(id): Path<String>,
) -> Result<Json<api::JobStatus>, ApiError> {
    let id: ContentId = parse(&id)?;
    let status = market
        .job(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id} on this node")))?;
    Ok(Json(status))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", security(("token" = [])),
    params(("id" = ContentId, Path, description = "The job's id")),
    responses((status = 200, description = "Cancelled: its status", body = api::JobStatus),
        (status = 400, description = "Not a content id", body = api::ErrorBody),
        (status = 404, description = "No such job on this node", body = api::ErrorBody),
        (status = 409, description = "The job is cancelled, settling or over already, or its escrow is not on the ledger yet", body = api::ErrorBody),
        (status = 503, description = "The ledger cannot be read now", body = api::ErrorBody)))]
async fn cancel_job(
    State(market): MarketState,
    Path(id): Path<String>,
) -> Result<Json<api::JobStatus>, ApiError> {
    use crate::market::CancelError;
    use cairn_roles::requester::CancelRefused;
    let id: ContentId = parse(&id)?;
    market.cancel(&id).await.map(Json).map_err(|e| match e {
        CancelError::Refused(CancelRefused::NotFound) => {
            ApiError(StatusCode::NOT_FOUND, format!("no job {id} on this node"))
        }
        CancelError::Refused(CancelRefused::Over | CancelRefused::Cancelled)
        | CancelError::EscrowPending => ApiError(StatusCode::CONFLICT, format!("job {id}: {e}")),
        CancelError::Ledger(e) => {
            tracing::warn!("cancelling job {id}: reading its escrow: {e}");
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("job {id}: the ledger cannot be read now; try again"),
            )
        }
    })
}

/// The largest judgement of results: every task named twice over, in
/// JSON.
const APPROVAL_BYTES_MAX: usize = 24 * api::APPROVAL_TASKS_MAX;

#[utoipa::path(post, path = "/v1/jobs/{id}/approval", tag = "jobs", security(("token" = [])),
    params(("id" = ContentId, Path, description = "The job's id")),
    request_body(content = api::Approval, content_type = "application/json", description = "Tasks whose results are approved, and tasks whose results are rejected"),
    responses((status = 200, description = "Judged and stored: the job's status", body = api::JobStatus),
        (status = 400, description = "Not a content id, or not a judgement", body = api::ErrorBody),
        (status = 404, description = "No such job on this node", body = api::ErrorBody),
        (status = 409, description = "The job did not ask for approval, is over or cancelled, or a task named has no result to judge or is approved already; nothing was changed", body = api::ErrorBody),
        (status = 413, description = "Over the largest judgement", body = api::ErrorBody),
        (status = 415, description = "Not application/json", body = api::ErrorBody)))]
async fn judge_job(
    State(market): MarketState,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<api::JobStatus>, ApiError> {
    use cairn_roles::requester::ApprovalRefused;
    let id: ContentId = parse(&id)?;
    let bytes = body(bytes, APPROVAL_BYTES_MAX)?;
    let approval: api::Approval = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid judgement: {e}")))?;
    market
        .judge(&id, &approval)
        .await
        .map(Json)
        .map_err(|e| match e {
            ApprovalRefused::NotFound => {
                ApiError(StatusCode::NOT_FOUND, format!("no job {id} on this node"))
            }
            _ => ApiError(StatusCode::CONFLICT, format!("job {id}: {e}")),
        })
}

#[utoipa::path(post, path = "/v1/jobs/{id}/tasks", tag = "jobs", security(("token" = [])),
    params(("id" = ContentId, Path, description = "The job's id")),
    request_body(content = api::MoreTasks, content_type = "application/json", description = "Tasks to add after the stream's last"),
    responses((status = 200, description = "Added and stored: where they went", body = api::TasksAdded),
        (status = 400, description = "Not a content id, not a list of tasks, or a task that breaks the job's rules or names an input not uploaded; nothing was added", body = api::ErrorBody),
        (status = 404, description = "No such job on this node", body = api::ErrorBody),
        (status = 409, description = "The job is not a stream, or the stream is ended, cancelled or over", body = api::ErrorBody),
        (status = 413, description = "Over the largest list of tasks", body = api::ErrorBody),
        (status = 415, description = "Not application/json", body = api::ErrorBody)))]
async fn add_tasks(
    State(market): MarketState,
    Path(id): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<api::TasksAdded>, ApiError> {
    let id: ContentId = parse(&id)?;
    let bytes = body(bytes, api::MORE_TASKS_BYTES_MAX)?;
    let more: api::MoreTasks = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid tasks: {e}")))?;
    market
        .extend(&id, more.tasks)
        .await
        .map(Json)
        .map_err(|e| stream_refusal(&id, e))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/end", tag = "jobs", security(("token" = [])),
    params(("id" = ContentId, Path, description = "The job's id")),
    responses((status = 200, description = "Ended and stored: the job's status; it settles once its tasks are decided", body = api::JobStatus),
        (status = 400, description = "Not a content id", body = api::ErrorBody),
        (status = 404, description = "No such job on this node", body = api::ErrorBody),
        (status = 409, description = "The job is not a stream, or the stream is ended, cancelled or over already", body = api::ErrorBody)))]
async fn end_stream(
    State(market): MarketState,
    Path(id): Path<String>,
) -> Result<Json<api::JobStatus>, ApiError> {
    let id: ContentId = parse(&id)?;
    market
        .end_stream(&id)
        .await
        .map(Json)
        .map_err(|e| stream_refusal(&id, e))
}

fn stream_refusal(id: &ContentId, e: cairn_roles::requester::StreamRefused) -> ApiError {
    use cairn_roles::requester::StreamRefused;
    let status = match e {
        StreamRefused::NotFound => {
            return ApiError(StatusCode::NOT_FOUND, format!("no job {id} on this node"));
        }
        StreamRefused::Invalid(_) => StatusCode::BAD_REQUEST,
        StreamRefused::Unstored(e) => {
            tracing::error!("job {id}: {e}");
            return ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into());
        }
        StreamRefused::NotAStream | StreamRefused::Ended => StatusCode::CONFLICT,
    };
    ApiError(status, format!("job {id}: {e}"))
}

#[utoipa::path(get, path = "/v1/jobs/{id}/results", tag = "jobs", security(("token" = [])),
    params(("id" = ContentId, Path, description = "The job's id"), api::ResultsPage),
    responses((status = 200, description = "A page of its finished tasks and their output blobs, by task; `next` says where the next page starts", body = api::JobResults),
        (status = 400, description = "Not a content id, or a page out of bounds", body = api::ErrorBody),
        (status = 404, description = "No such job on this node", body = api::ErrorBody)))]
async fn job_results(
    State(market): MarketState,
    Path(id): Path<String>,
    page: Result<Query<api::ResultsPage>, QueryRejection>,
) -> Result<Json<api::JobResults>, ApiError> {
    let id: ContentId = parse(&id)?;
    let Query(page) = page.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = page.limit.unwrap_or(api::RESULTS_PAGE_MAX);
    if !(1..=api::RESULTS_PAGE_MAX).contains(&limit) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "limit {limit}: a page holds 1 to {} results",
                api::RESULTS_PAGE_MAX
            ),
        ));
    }
    let from = page.from.unwrap_or(0);
    // A page is read from disk: off the threads that answer requests.
    let read = tokio::task::spawn_blocking(move || market.results(&id, from, limit)).await;
    let page = read
        .map_err(|e| e.to_string())
        .and_then(|read| read)
        .map_err(|e| {
            tracing::error!("reading job {id}'s results: {e}");
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        })?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id} on this node")))?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/v1/providers", tag = "market", security(("token" = [])),
    responses((status = 200, description = "Every provider that bid for this node's work, most recent first", body = api::Providers)))]
async fn providers(State(market): MarketState) -> Json<api::Providers> {
    Json(api::Providers {
        providers: market.providers(),
    })
}

#[utoipa::path(get, path = "/v1/prices", tag = "market", security(("token" = [])),
    responses((status = 200, description = "The prices this node's auctions cleared at, oldest first", body = api::Prices)))]
async fn prices(State(market): MarketState) -> Json<api::Prices> {
    Json(api::Prices {
        prices: market.prices(),
    })
}

#[utoipa::path(get, path = "/v1/market", tag = "market",
    responses((status = 200, description = "This node's market peer, and what it dropped", body = api::MarketStats)))]
async fn market_stats(State(market): MarketState) -> Json<api::MarketStats> {
    Json(market.stats().await)
}
