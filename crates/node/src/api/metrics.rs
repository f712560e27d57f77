//! `GET /metrics`: what the node does, in the OpenMetrics text format that
//! Prometheus scrapes. Every figure is read when asked, from the state the
//! node keeps anyway (job statuses, counters, the ledger's head), so there
//! is nothing to keep in step and nothing costs anything between scrapes.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use cairn_api::{JobState, JobStatus};
use cairn_chain::Ledger;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

use crate::market::Market;

/// OpenMetrics' media type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the figures are read from: whichever parts the node runs.
#[derive(Clone)]
pub(super) struct Sources {
    pub ledger: Option<Ledger>,
    pub market: Option<Market>,
}

/// One label, as a family of gauges or counters keys its members.
type Label = [(&'static str, &'static str); 1];

#[utoipa::path(get, path = "/metrics", tag = "node", security(("token" = [])),
    responses((status = 200, description = "What the node does, for Prometheus (OpenMetrics text)", body = String, content_type = "application/openmetrics-text")))]
pub(super) async fn metrics(State(sources): State<Sources>) -> impl IntoResponse {
    let mut registry = Registry::with_prefix("cairn");
    if let Some(ledger) = &sources.ledger {
        ledger_metrics(&mut registry, ledger);
    }
    if let Some(market) = &sources.market {
        let stats = market.stats().await;
        market_metrics(&mut registry, market, &stats);
        job_metrics(&mut registry, &market.jobs());
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    ([(CONTENT_TYPE, OPENMETRICS)], text)
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let gauge = Gauge::<i64>::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, gauge);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter = Counter::<u64>::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

fn ledger_metrics(registry: &mut Registry, ledger: &Ledger) {
    let (height, _) = ledger.head();
    gauge(
        registry,
        "ledger_height",
        "Height of the last finalized block",
        height,
    );
    if let Some(block) = ledger.block(height) {
        gauge(
            registry,
            "ledger_finalized_timestamp_seconds",
            "When the last finalized block was proposed, seconds since the epoch",
            block.timestamp_ms / 1_000,
        );
    }
    gauge(
        registry,
        "ledger_mempool_transactions",
        "Transactions waiting in this node's mempool",
        ledger.pending() as u64,
    );
}

fn market_metrics(registry: &mut Registry, market: &Market, stats: &cairn_api::MarketStats) {
    gauge(registry, "peers", "Connected market peers", stats.peers);
    let c = market.counters();
    let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let dropped = Family::<Label, Counter>::default();
    for (reason, value) in [
        ("malformed", read(&c.malformed)),
        ("bad_signature", read(&c.bad_signature)),
        ("replayed", read(&c.replayed)),
        ("refused", read(&c.refused)),
        ("rate_limited", read(&c.rate_limited)),
        ("oversized", stats.oversized),
        ("truncated", stats.truncated),
    ] {
        dropped.get_or_create(&[("reason", reason)]).inc_by(value);
    }
    registry.register(
        "messages_dropped",
        "Market messages and requests dropped or refused, by why",
        dropped,
    );
    for (name, help, value) in [
        ("provider_bids", "Bids this provider sent", read(&c.bids)),
        (
            "provider_declines",
            "Orders this provider declined",
            read(&c.declines),
        ),
        (
            "provider_leases",
            "Leases this provider signed",
            read(&c.leases),
        ),
        (
            "provider_tasks_run",
            "Tasks this provider ran to a result",
            read(&c.tasks_run),
        ),
        (
            "provider_tasks_failed",
            "Tasks this provider could not run",
            read(&c.tasks_failed),
        ),
        (
            "provider_fuel_used",
            "Fuel used by the tasks this provider ran",
            read(&c.fuel_used),
        ),
    ] {
        counter(registry, name, help, value);
    }
}

/// The requester's jobs: how many are in each state, their tasks by state,
/// and what verification did.
fn job_metrics(registry: &mut Registry, jobs: &[JobStatus]) {
    let by_state = Family::<Label, Gauge>::default();
    for state in JobState::ALL {
        let count = jobs.iter().filter(|job| job.state == state).count();
        by_state
            .get_or_create(&[("state", state.as_str())])
            .set(count as i64);
    }
    registry.register("jobs", "This node's jobs, by state", by_state);

    let sum = |field: fn(&JobStatus) -> u64| jobs.iter().map(field).sum::<u64>();
    let tasks = Family::<Label, Gauge>::default();
    for (state, value) in [
        ("done", sum(|j| u64::from(j.done))),
        ("running", sum(|j| u64::from(j.running))),
        ("pending", sum(|j| u64::from(j.pending))),
        ("failed", sum(|j| u64::from(j.failed))),
    ] {
        tasks
            .get_or_create(&[("state", state)])
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }
    registry.register("tasks", "Tasks of this node's jobs, by state", tasks);
    for (name, help, value) in [
        (
            "task_executions",
            "Executions handed out for this node's jobs, replicas included",
            sum(|j| j.executions),
        ),
        (
            "disputes",
            "Disputes started over this node's jobs",
            sum(|j| u64::from(j.disputes)),
        ),
        (
            "convictions",
            "Providers convicted of cheating on this node's jobs",
            sum(|j| j.convicted.len() as u64),
        ),
        (
            "auctions",
            "Auctions held for this node's jobs",
            sum(|j| u64::from(j.auctions)),
        ),
    ] {
        counter(registry, name, help, value);
    }
}
