//! Per-peer rate limits: what one peer may ask of this node per second,
//! whatever it sends. A token bucket per peer, refilled with time; the
//! table forgets peers whose bucket is full again, so it holds only the
//! peers active in the last few seconds.

use std::collections::HashMap;
use std::hash::Hash;

use parking_lot::Mutex;

/// Peers tracked at most; past it, a full table is pruned of idle peers
/// and, if still full, newcomers wait for room (they are refused).
const PEERS_MAX: usize = 16_384;

struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Token buckets of `burst` tokens refilled at `per_s` tokens a second.
pub(crate) struct RateLimit<K> {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> RateLimit<K> {
    pub fn new(per_s: u32, burst: u32) -> Self {
        Self {
            per_s: f64::from(per_s),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `peer`'s at `now_ms`; false when it has none.
    pub fn allow(&self, peer: &K, now_ms: u64) -> bool {
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(peer) && buckets.len() >= PEERS_MAX {
            let (per_s, burst) = (self.per_s, self.burst);
            buckets.retain(|_, b| refilled(b, now_ms, per_s, burst) < burst);
            if buckets.len() >= PEERS_MAX {
                return false;
            }
        }
        let bucket = buckets.entry(peer.clone()).or_insert(Bucket {
            tokens: self.burst,
            at_ms: now_ms,
        });
        bucket.tokens = refilled(bucket, now_ms, self.per_s, self.burst);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }
}

fn refilled(bucket: &Bucket, now_ms: u64, per_s: f64, burst: f64) -> f64 {
    let elapsed_s = now_ms.saturating_sub(bucket.at_ms) as f64 / 1_000.0;
    (bucket.tokens + elapsed_s * per_s).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `request_flooder` gets its burst, then its rate, and nothing
    /// more; another peer is unaffected.
    #[test]
    fn request_flooder_gets_its_rate_and_no_more() {
        let limit = RateLimit::new(10, 20);
        let allowed = (0..1_000).filter(|_| limit.allow(&1u32, 0)).count();
        assert_eq!(allowed, 20);
        assert!(limit.allow(&2u32, 0), "another peer has its own bucket");
        let allowed = (0..1_000).filter(|_| limit.allow(&1u32, 1_000)).count();
        assert_eq!(allowed, 10, "one second refills ten");
        // Time going backwards (a clock step) grants nothing.
        assert!(!limit.allow(&1u32, 500));
    }

    #[test]
    fn the_table_forgets_idle_peers() {
        let limit = RateLimit::new(1_000, 1);
        for peer in 0..PEERS_MAX as u32 {
            assert!(limit.allow(&peer, 0));
        }
        assert!(!limit.allow(&u32::MAX, 0), "full, and nobody idle yet");
        assert!(limit.allow(&u32::MAX, 10), "idle peers are pruned");
        assert!(limit.buckets.lock().len() < PEERS_MAX);
    }
}
