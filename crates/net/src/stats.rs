//! Counters of what the network moved and what it dropped.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the network's counters, all monotonic since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inbound requests or responses refused because their announced length
    /// exceeded the configured maximum.
    pub dropped_oversized: u64,
    /// Inbound requests or responses that ended before their announced
    /// length (truncated frames).
    pub dropped_malformed: u64,
    /// Inbound requests refused and gossip ignored because the application's
    /// event queue was full.
    pub dropped_backpressure: u64,
    /// Commands (publish, report, dial, reply) lost because the network
    /// task's command queue was full or the task had stopped.
    pub dropped_commands: u64,
    /// Inbound requests that failed: timeout, closed connection, codec error
    /// or no reply from the application.
    pub inbound_failures: u64,
    /// Outbound requests that failed: timeout, dial failure, closed
    /// connection, codec error.
    pub outbound_failures: u64,
    /// Gossip messages the application reported as invalid.
    pub gossip_invalid: u64,
    /// Gossip messages published by this node.
    pub published: u64,
    /// Publish attempts gossipsub refused (no peers, duplicate, too large).
    pub publish_failures: u64,
    /// Inbound requests handed to the application.
    pub requests_in: u64,
    /// Outbound requests sent.
    pub requests_out: u64,
}

/// The live counters, shared between the handle, the swarm task and the codec.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub dropped_oversized: AtomicU64,
    pub dropped_malformed: AtomicU64,
    pub dropped_backpressure: AtomicU64,
    pub dropped_commands: AtomicU64,
    pub inbound_failures: AtomicU64,
    pub outbound_failures: AtomicU64,
    pub gossip_invalid: AtomicU64,
    pub published: AtomicU64,
    pub publish_failures: AtomicU64,
    pub requests_in: AtomicU64,
    pub requests_out: AtomicU64,
}

/// Adds one to a counter. Counters are statistics, not synchronisation, so
/// relaxed ordering is enough.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            dropped_oversized: get(&self.dropped_oversized),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_backpressure: get(&self.dropped_backpressure),
            dropped_commands: get(&self.dropped_commands),
            inbound_failures: get(&self.inbound_failures),
            outbound_failures: get(&self.outbound_failures),
            gossip_invalid: get(&self.gossip_invalid),
            published: get(&self.published),
            publish_failures: get(&self.publish_failures),
            requests_in: get(&self.requests_in),
            requests_out: get(&self.requests_out),
        }
    }
}
