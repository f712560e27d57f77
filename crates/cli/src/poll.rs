//! The one way the CLI waits for something another process does: ask
//! again (every 50 ms unless a figure needs finer) until it holds or a
//! limit passes.

use std::time::{Duration, Instant};

/// How often a condition is asked again.
const EVERY: Duration = Duration::from_millis(50);

/// Asks `check` until it returns a value, for at most `limit`. An error from
/// `check` counts as "not yet" (the other process may still be starting);
/// the last one is reported if the limit passes.
pub fn until<T>(
    what: &str,
    limit: Duration,
    check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    every(EVERY, what, limit, check)
}

/// The same, asking every `period`: a benchmark that times a job asks
/// often, one that measures throughput rarely, so its asking does not take
/// the node's CPU.
pub fn every<T>(
    period: Duration,
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if started.elapsed() >= limit {
            let seconds = limit.as_secs();
            return Err(match last_error {
                Some(e) => e.context(format!("waited {seconds} s until {what}")),
                None => anyhow::anyhow!("waited {seconds} s until {what}"),
            });
        }
        std::thread::sleep(period);
    }
}
