//! The node's HTTP API (JSON): status, accounts, escrows, and submitting
//! signed transactions.
//!
//! - `GET  /v1/status` — chain id, height, state root, transactions pending.
//! - `GET  /v1/accounts/{key}` — balance, nonce, stake, unbonding.
//! - `GET  /v1/escrows/{job}` — a job's escrow.
//! - `GET  /v1/blocks/{height}` — a recent finalized block.
//! - `POST /v1/txs` — a transaction's canonical bytes; `202` when queued.
//! - `GET  /v1/txs/{signer}/{nonce}` — whether it was applied or refused,
//!   and why.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_chain::{Ledger, SubmitError, TxOutcome};
use cairn_wire::{ContentId, PublicKey};
use serde_json::{Value, json};

/// The API's routes over `ledger`.
pub fn router(ledger: Ledger) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/accounts/{key}", get(account))
        .route("/v1/escrows/{job}", get(escrow))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/txs", post(submit))
        .route("/v1/txs/{signer}/{nonce}", get(outcome))
        .with_state(ledger)
}

/// An error answer: a status and a message that says what was wrong.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

async fn status(State(ledger): State<Ledger>) -> axum::Json<Value> {
    let state = ledger.state();
    axum::Json(json!({
        "chain": state.chain().to_string(),
        "height": state.height(),
        "root": state.root().to_string(),
        "pending": ledger.pending(),
        "supply": state.supply(),
    }))
}

async fn account(
    State(ledger): State<Ledger>,
    Path(key): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let key: PublicKey = key
        .parse()
        .map_err(|e: cairn_wire::WireError| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let state = ledger.state();
    let account = state.account(&key);
    let provider = state.provider(&key);
    Ok(axum::Json(json!({
        "key": key.to_string(),
        "height": state.height(),
        "balance": account.balance,
        "nonce": account.nonce,
        "stake": provider.map_or(0, |p| p.stake),
        "unbonding": state.unbonding_of(&key),
        "can_bid": state.can_bid(&key),
    })))
}

async fn escrow(
    State(ledger): State<Ledger>,
    Path(job): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let job: ContentId = job
        .parse()
        .map_err(|e: cairn_wire::WireError| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let state = ledger.state();
    let escrow = state.escrow(&job).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no open escrow for job {job}"),
        )
    })?;
    Ok(axum::Json(json!({
        "job": job.to_string(),
        "owner": escrow.owner.to_string(),
        "balance": escrow.balance,
        "leases_until": escrow.leases_until,
    })))
}

async fn submit(
    State(ledger): State<Ledger>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    match ledger.submit(body.to_vec()) {
        Ok(()) => Ok((StatusCode::ACCEPTED, axum::Json(json!({ "queued": true })))),
        Err(SubmitError::Full) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            SubmitError::Full.to_string(),
        )),
        Err(e) => Err(ApiError(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

async fn outcome(
    State(ledger): State<Ledger>,
    Path((signer, nonce)): Path<(String, u64)>,
) -> Result<axum::Json<Value>, ApiError> {
    let signer: PublicKey = signer
        .parse()
        .map_err(|e: cairn_wire::WireError| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(axum::Json(match ledger.outcome(&signer, nonce) {
        Some(TxOutcome::Applied(height)) => json!({ "status": "applied", "height": height }),
        Some(TxOutcome::Refused(height, reason)) => {
            json!({ "status": "refused", "height": height, "reason": reason })
        }
        None if ledger.state().account(&signer).nonce > nonce => json!({ "status": "applied" }),
        None => json!({ "status": "pending" }),
    }))
}

async fn block(
    State(ledger): State<Ledger>,
    Path(height): Path<u64>,
) -> Result<axum::Json<Value>, ApiError> {
    let block = ledger.block(height).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no recent block at height {height} on this node"),
        )
    })?;
    Ok(axum::Json(json!({
        "height": block.height,
        "digest": block.digest.to_string(),
        "timestamp_ms": block.timestamp_ms,
        "applied": block.applied,
        "refused": block.refused,
        "root": block.root.to_string(),
    })))
}

/// The market's routes:
///
/// - `POST /v1/blobs` — raw bytes; answers the content id.
/// - `GET  /v1/blobs/{id}` — a stored blob.
/// - `POST /v1/jobs` — a [`Submission`](crate::market::Submission); answers the job id.
/// - `GET  /v1/jobs` — every job's status.
/// - `GET  /v1/jobs/{id}` — one job's status, with the reason it is queued.
/// - `GET  /v1/jobs/{id}/results` — finished tasks and their output blobs.
/// - `GET  /v1/market` — peer id, addresses, and what was dropped.
pub fn market_router(market: crate::market::Market) -> Router {
    Router::new()
        .route("/v1/blobs", post(put_blob))
        .route("/v1/blobs/{id}", get(get_blob))
        .route("/v1/jobs", post(submit_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/results", get(job_results))
        .route("/v1/market", get(market_stats))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::market::BLOB_BYTES_MAX as usize,
        ))
        .with_state(market)
}

type MarketState = State<crate::market::Market>;

fn job_id(id: &str) -> Result<ContentId, ApiError> {
    id.parse()
        .map_err(|e: cairn_wire::WireError| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn put_blob(State(market): MarketState, body: Bytes) -> Result<axum::Json<Value>, ApiError> {
    let blobs = market.blobs().clone();
    let id = tokio::task::spawn_blocking(move || blobs.put(&body))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(axum::Json(json!({ "id": id.to_string() })))
}

async fn get_blob(State(market): MarketState, Path(id): Path<String>) -> Result<Vec<u8>, ApiError> {
    let id = job_id(&id)?;
    market
        .blobs()
        .read(&id)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))
}

async fn submit_job(
    State(market): MarketState,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let submission: crate::market::Submission = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid submission: {e}")))?;
    let id = market
        .submit(submission)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "job": id.to_string() })),
    ))
}

async fn list_jobs(State(market): MarketState) -> axum::Json<Value> {
    axum::Json(json!({ "jobs": market.jobs() }))
}

async fn job_status(
    State(market): MarketState,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let status = market
        .job(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id} on this node")))?;
    Ok(axum::Json(json!(status)))
}

async fn job_results(
    State(market): MarketState,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let results = market
        .results(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id} on this node")))?;
    Ok(axum::Json(json!({ "results": results })))
}

async fn market_stats(State(market): MarketState) -> axum::Json<Value> {
    axum::Json(json!(market.stats().await))
}
