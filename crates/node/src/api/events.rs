//! Server-sent event streams:
//!
//! - `GET /v1/jobs/{id}/events`: a job's progress as it happens: a
//!   `status` event (the job's [`JobStatus`], as `GET /v1/jobs/{id}`
//!   answers it) whenever it changes, the first at once; the stream ends
//!   after the status that says the job is over.
//! - `GET /v1/blocks/events`: each finalized block (a `block` event, as
//!   `GET /v1/blocks/{height}` answers it), oldest first, from the last
//!   [`BLOCKS_BEHIND_MAX`] when the stream opens.
//!
//! A stream ends after an hour (open another to go on). It looks at its
//! source a few times a second rather than being woken by it: a status or
//! a height is cheap to read, and the requester's drivers and the chain
//! stay free of anything a client does. Streams are bounded, so clients
//! cannot make the node hold unbounded timers; each kind on its own, since
//! anyone may open a block stream and hoarding those must not take the
//! places of the job streams only the token's holder opens.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use cairn_api::JobStatus;
use cairn_chain::Ledger;
use cairn_wire::ContentId;
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ApiError, parse};
use crate::market::Market;

/// How often a stream looks at its source.
const PERIOD: Duration = Duration::from_millis(250);
/// How long one stream lasts: a client that went quiet (suspended,
/// stuck) gives its place back, and a live one opens another.
const LIFETIME: Duration = Duration::from_secs(3_600);
/// Event streams of one kind open at once.
pub(super) const STREAMS_MAX: usize = 64;
/// Blocks a block stream sends at once when it opens or falls behind (a
/// client that reads slowly): older ones are skipped, and are still at
/// `GET /v1/blocks/{height}` while the node keeps them.
const BLOCKS_BEHIND_MAX: u64 = 16;

/// The bound on open streams of one kind.
#[derive(Clone)]
pub(super) struct Streams(Arc<Semaphore>);

impl Streams {
    pub fn new() -> Self {
        Self(Arc::new(Semaphore::new(STREAMS_MAX)))
    }

    /// A place for one more stream, or a `503` that says where to poll.
    fn open(&self, instead: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{STREAMS_MAX} event streams are open on this node; close one or poll {instead}"
                ),
            )
        })
    }
}

/// What a look at a stream's source found.
enum Look {
    /// An event to send; `true` if it is the last.
    Send(Event, bool),
    /// Nothing new yet.
    Wait,
    /// The source is gone: the stream ends.
    End,
}

/// A stream of what `look` finds, looking every [`PERIOD`] until it
/// finds something, for at most [`LIFETIME`], holding `permit` while open.
fn stream<S: Send + 'static>(
    source: S,
    permit: OwnedSemaphorePermit,
    look: fn(&mut S) -> Look,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ends = tokio::time::Instant::now() + LIFETIME;
    let state = (source, false, permit);
    let events = futures::stream::unfold(state, move |(mut source, over, permit)| async move {
        if over || tokio::time::Instant::now() >= ends {
            return None;
        }
        loop {
            match look(&mut source) {
                Look::Send(event, last) => return Some((Ok(event), (source, last, permit))),
                Look::Wait => tokio::time::sleep(PERIOD).await,
                Look::End => return None,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// A job stream's state between events.
struct JobWatch {
    market: Market,
    job: ContentId,
    last: Option<JobStatus>,
}

#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", security(("token" = [])),
    params(("id" = ContentId, Path, description = "The job's id")),
    responses((status = 200, description = "Server-sent `status` events, each a JobStatus as JSON, until the job is over", body = String, content_type = "text/event-stream"),
        (status = 400, description = "Not a content id", body = cairn_api::ErrorBody),
        (status = 404, description = "No such job on this node", body = cairn_api::ErrorBody),
        (status = 503, description = "Too many event streams are open", body = cairn_api::ErrorBody)))]
pub(super) async fn job_events(
    State((market, streams)): State<(Market, Streams)>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job: ContentId = parse(&id)?;
    if market.job(&job).is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no job {job} on this node"),
        ));
    }
    let permit = streams.open(&format!("/v1/jobs/{job}"))?;
    let watch = JobWatch {
        market,
        job,
        last: None,
    };
    Ok(stream(watch, permit, |watch| {
        // A job forgotten while watched ends its stream.
        let Some(status) = watch.market.job(&watch.job) else {
            return Look::End;
        };
        if watch.last.as_ref() == Some(&status) {
            return Look::Wait;
        }
        let over = status.state.is_over();
        let data = serde_json::to_string(&status).unwrap_or_default();
        watch.last = Some(status);
        Look::Send(Event::default().event("status").data(data), over)
    }))
}

/// A block stream's state between events.
struct BlockWatch {
    ledger: Ledger,
    /// The height of the next block to send; `None` before the first.
    next: Option<u64>,
}

#[utoipa::path(get, path = "/v1/blocks/events", tag = "ledger",
    responses((status = 200, description = "Server-sent `block` events, each a Block as JSON, from the last 16", body = String, content_type = "text/event-stream"),
        (status = 503, description = "Too many event streams are open", body = cairn_api::ErrorBody)))]
pub(super) async fn block_events(
    State((ledger, streams)): State<(Ledger, Streams)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = streams.open("/v1/status")?;
    let watch = BlockWatch { ledger, next: None };
    Ok(stream(watch, permit, |watch| {
        let height = watch.ledger.height();
        let next = watch
            .next
            .unwrap_or(0)
            .max(height.saturating_sub(BLOCKS_BEHIND_MAX - 1));
        if next > height {
            return Look::Wait;
        }
        watch.next = Some(next + 1);
        match watch.ledger.block(next) {
            Some(block) => {
                let data = serde_json::to_string(&super::block_body(block)).unwrap_or_default();
                Look::Send(Event::default().event("block").data(data), false)
            }
            // Not kept (the genesis, or a block this node only synced
            // the state of): the next one is looked at at once.
            None => Look::Wait,
        }
    }))
}
