//! `GET /v1/jobs/{id}/events`: a job's progress as it happens, as
//! server-sent events: a `status` event (the job's [`JobStatus`], as
//! `GET /v1/jobs/{id}` answers it) whenever it changes, the first at once;
//! the stream ends after the status that says the job is over, or after
//! an hour (open another to go on).
//!
//! The stream looks at the status a few times a second rather than being
//! woken by the requester: a status is cheap to read, and the requester's
//! drivers stay free of anything a client does. Streams are bounded, all
//! jobs together, so clients cannot make the node hold unbounded timers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use cairn_api::JobStatus;
use cairn_wire::ContentId;
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ApiError, parse};
use crate::market::Market;

/// How often a stream looks at its job's status.
const PERIOD: Duration = Duration::from_millis(250);
/// How long one stream lasts: a client that went quiet (suspended,
/// stuck) gives its place back, and a live one opens another.
const LIFETIME: Duration = Duration::from_secs(3_600);
/// Event streams open at once, all jobs together.
pub(super) const STREAMS_MAX: usize = 64;

/// What the route needs: the market, and the streams' bound.
#[derive(Clone)]
pub(super) struct Streams {
    pub market: Market,
    pub open: Arc<Semaphore>,
}

/// One stream's state between events.
struct Watch {
    market: Market,
    job: ContentId,
    last: Option<JobStatus>,
    over: bool,
    ends: tokio::time::Instant,
    /// Held while the stream is open.
    _permit: OwnedSemaphorePermit,
}

pub(super) async fn job_events(
    State(streams): State<Streams>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let job: ContentId = parse(&id)?;
    if streams.market.job(&job).is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no job {job} on this node"),
        ));
    }
    let permit = streams.open.try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{STREAMS_MAX} event streams are open on this node; close one or poll /v1/jobs/{job}"),
        )
    })?;
    let watch = Watch {
        market: streams.market,
        job,
        last: None,
        over: false,
        ends: tokio::time::Instant::now() + LIFETIME,
        _permit: permit,
    };
    let events = futures::stream::unfold(watch, |mut watch| async move {
        if watch.over || tokio::time::Instant::now() >= watch.ends {
            return None;
        }
        loop {
            // A job forgotten while watched ends its stream.
            let status = watch.market.job(&watch.job)?;
            if watch.last.as_ref() != Some(&status) {
                watch.over = status.state.is_over();
                let data = serde_json::to_string(&status).unwrap_or_default();
                watch.last = Some(status);
                return Some((Ok(Event::default().event("status").data(data)), watch));
            }
            tokio::time::sleep(PERIOD).await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
