//! Choosing providers among valid bids.
//!
//! After Livepeer's selector: drop candidates that performed badly, then
//! draw providers one at a time, without replacement, with probability
//!
//! ```text
//! p(i) = w_price · softmax(−(price_i / price_min − 1) / temperature)
//!      + w_stake · stake_i / Σ stake
//!      + w_random · 1 / n
//! ```
//!
//! Cheap bids win most often, staked providers (more to lose) are favoured,
//! and the random share keeps newcomers in the market so they can earn a
//! reputation. Latency and success rate act as a filter, not a weight: a
//! slow or failing provider is not worth any price.

use cairn_wire::{ContentId, PublicKey};

use crate::Rng;

/// Weights and filters of the selector.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectionParams {
    /// Weight of the price term.
    pub price_weight: f64,
    /// Weight of the stake term.
    pub stake_weight: f64,
    /// Weight of the uniform term.
    pub random_weight: f64,
    /// Softmax temperature over relative price: 0.25 means a bid 25% above
    /// the cheapest is e times less likely from the price term.
    pub temperature: f64,
    /// Candidates slower than this to bid are dropped.
    pub latency_ms_max: u64,
    /// Candidates with a known success rate below this are dropped.
    pub success_rate_min: f64,
    /// Only a record with at least this many tasks counts as known.
    pub record_tasks_min: u64,
    /// The most providers leased per auction. A wide job spreads wide: at 64
    /// (the old bound) a 1,000-task job on a network of 2,000 idle providers
    /// waited on 64 of them and took 9× its ideal in the whole-network
    /// simulation (`cairn bench sim`); a pull costs the requester little, so
    /// the bound only stops one job from holding a whole large network.
    pub providers_max: usize,
}

impl Default for SelectionParams {
    fn default() -> Self {
        Self {
            price_weight: 0.6,
            stake_weight: 0.2,
            random_weight: 0.2,
            temperature: 0.25,
            latency_ms_max: 2_000,
            success_rate_min: 0.9,
            record_tasks_min: 10,
            providers_max: 1_024,
        }
    }
}

/// A provider that bid, with what the requester knows of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Who.
    pub provider: PublicKey,
    /// Its price.
    pub price_ucairn_per_gfuel: u64,
    /// Concurrent tasks it offers.
    pub slots: u32,
    /// Its bonded stake on the ledger.
    pub stake: u128,
    /// Tasks it completed and failed, from the ledger's reputation.
    pub record: (u64, u64),
    /// Time from the order to its bid.
    pub latency_ms: u64,
    /// Its estimate of the time from a lease to its first task.
    pub ready_in_ms: u32,
    /// The build of the installed tool it would run the order with
    /// ([`crate::Offer::build_for`]); `None` for Wasm.
    pub build: Option<ContentId>,
}

impl Candidate {
    fn performs(&self, params: &SelectionParams) -> bool {
        let (ok, failed) = self.record;
        let total = ok + failed;
        let reliable =
            total < params.record_tasks_min || ok as f64 / total as f64 >= params.success_rate_min;
        reliable && self.latency_ms <= params.latency_ms_max
    }
}

/// Picks providers until `slots_wanted` slots are covered or
/// `providers_max` are chosen. Returns indices into `candidates`, in the
/// order drawn. Deterministic for a given `rng` state.
pub fn select(
    candidates: &[Candidate],
    slots_wanted: u64,
    params: &SelectionParams,
    rng: &mut Rng,
) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].performs(params))
        .collect();
    if pool.is_empty() {
        // Livepeer falls back to everyone rather than placing nothing.
        pool = (0..candidates.len()).collect();
    }
    let mut chosen = Vec::new();
    let mut covered = 0u64;
    while !pool.is_empty() && covered < slots_wanted && chosen.len() < params.providers_max {
        let weights = weights(candidates, &pool, params);
        let total: f64 = weights.iter().sum();
        let mut draw = rng.next_f64() * total;
        let mut pick = pool.len() - 1;
        for (slot, weight) in weights.iter().enumerate() {
            if draw < *weight {
                pick = slot;
                break;
            }
            draw -= weight;
        }
        let index = pool.remove(pick);
        covered += u64::from(candidates[index].slots);
        chosen.push(index);
    }
    chosen
}

fn weights(candidates: &[Candidate], pool: &[usize], params: &SelectionParams) -> Vec<f64> {
    let n = pool.len() as f64;
    let price_min = pool
        .iter()
        .map(|&i| candidates[i].price_ucairn_per_gfuel)
        .min()
        .unwrap_or(0)
        .max(1) as f64;
    let temperature = params.temperature.max(1e-6);
    let exp: Vec<f64> = pool
        .iter()
        .map(|&i| {
            let relative = candidates[i].price_ucairn_per_gfuel.max(1) as f64 / price_min - 1.0;
            (-relative / temperature).exp()
        })
        .collect();
    let exp_total: f64 = exp.iter().sum();
    let stake_total: f64 = pool.iter().map(|&i| candidates[i].stake as f64).sum();
    pool.iter()
        .zip(&exp)
        .map(|(&i, e)| {
            let stake_share = if stake_total > 0.0 {
                candidates[i].stake as f64 / stake_total
            } else {
                1.0 / n
            };
            params.price_weight * e / exp_total
                + params.stake_weight * stake_share
                + params.random_weight / n
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use cairn_wire::Keypair;

    use super::*;

    fn candidate(seed: u8, price: u64, stake: u128) -> Candidate {
        Candidate {
            provider: Keypair::from_seed([seed; 32]).public(),
            price_ucairn_per_gfuel: price,
            slots: 1,
            stake,
            record: (0, 0),
            latency_ms: 5,
            ready_in_ms: 0,
            build: None,
        }
    }

    #[test]
    fn cheaper_bids_win_more_often_but_not_always() {
        let candidates = vec![candidate(1, 100, 10), candidate(2, 200, 10)];
        let mut rng = Rng::new(9);
        let mut cheap_first = 0;
        for _ in 0..10_000 {
            if select(&candidates, 1, &SelectionParams::default(), &mut rng)[0] == 0 {
                cheap_first += 1;
            }
        }
        // Price term: e^-4 ≈ 0.018 for the dearer bid; the stake and random
        // terms give it 0.2 more. Expected share of the cheap one ≈ 0.79.
        assert!((7_500..8_300).contains(&cheap_first), "{cheap_first}");
    }

    #[test]
    fn slow_or_failing_providers_are_filtered_unless_nobody_is_left() {
        let mut slow = candidate(1, 1, 10);
        slow.latency_ms = 60_000;
        let mut failing = candidate(2, 1, 10);
        failing.record = (5, 95);
        let fine = candidate(3, 1_000, 10);
        let candidates = vec![slow.clone(), failing, fine];
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            assert_eq!(
                select(&candidates, 1, &SelectionParams::default(), &mut rng),
                vec![2]
            );
        }
        assert_eq!(
            select(&[slow], 1, &SelectionParams::default(), &mut rng),
            vec![0]
        );
    }

    #[test]
    fn selection_covers_the_slots_wanted_and_respects_the_cap() {
        let candidates: Vec<_> = (1..=10).map(|s| candidate(s, 50, 1)).collect();
        let mut rng = Rng::new(3);
        assert_eq!(
            select(&candidates, 4, &SelectionParams::default(), &mut rng).len(),
            4
        );
        let params = SelectionParams {
            providers_max: 2,
            ..SelectionParams::default()
        };
        assert_eq!(select(&candidates, 100, &params, &mut rng).len(), 2);
        let picked = select(&candidates, 100, &SelectionParams::default(), &mut rng);
        let mut unique = picked.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), picked.len(), "a provider was drawn twice");
    }

    #[test]
    fn same_seed_same_choice() {
        let candidates: Vec<_> = (1..=20)
            .map(|s| candidate(s, 40 + u64::from(s), 7))
            .collect();
        let a = select(
            &candidates,
            5,
            &SelectionParams::default(),
            &mut Rng::new(77),
        );
        let b = select(
            &candidates,
            5,
            &SelectionParams::default(),
            &mut Rng::new(77),
        );
        assert_eq!(a, b);
    }
}
