//! The market as one requester sees it: each provider that bid for its
//! work (what it offered, at what price, how fast it answered, how often it
//! won) and the prices its auctions cleared at. Kept for the people who
//! watch the node (the API, the console), bounded so that bidders cannot
//! grow it, and never consulted by a decision: the auction and the verifier
//! keep their own records.

use std::collections::{BTreeMap, VecDeque};

use cairn_api::{PricePoint, ProviderSeen};
use cairn_market::{Bid, Candidate};
use cairn_verify::Record;
use cairn_wire::{ContentId, PublicKey};

/// Providers kept: past this, the one that bid longest ago is forgotten.
pub const PROVIDERS_SEEN_MAX: usize = 4_096;
/// Cleared prices kept, the most recent.
pub const PRICES_KEPT: usize = 2_048;

/// What the requester saw of the market.
#[derive(Default)]
pub struct Directory {
    providers: BTreeMap<PublicKey, Seen>,
    prices: VecDeque<PricePoint>,
}

/// One provider's last bid, and its counts.
struct Seen {
    bid: Bid,
    stake: u64,
    latency_ms: u64,
    last_bid_ms: u64,
    bids: u64,
    won: u64,
}

impl Directory {
    /// `provider`'s bid, which an auction took, `latency_ms` after its order.
    pub fn bid(&mut self, provider: PublicKey, bid: &Bid, stake: u128, latency_ms: u64, now: u64) {
        if !self.providers.contains_key(&provider) && self.providers.len() >= PROVIDERS_SEEN_MAX {
            // A full table gives up its stalest entry, so a new provider
            // is always shown; a walk of a few thousand, once per newcomer.
            if let Some(stalest) = self
                .providers
                .iter()
                .min_by_key(|(_, seen)| seen.last_bid_ms)
                .map(|(key, _)| *key)
            {
                self.providers.remove(&stalest);
            }
        }
        let seen = self.providers.entry(provider).or_insert_with(|| Seen {
            bid: bid.clone(),
            stake: 0,
            latency_ms: 0,
            last_bid_ms: 0,
            bids: 0,
            won: 0,
        });
        seen.bid = bid.clone();
        seen.stake = u64::try_from(stake).unwrap_or(u64::MAX);
        seen.latency_ms = latency_ms;
        seen.last_bid_ms = now;
        seen.bids += 1;
    }

    /// An auction for `job` closed at `now` with these winners.
    pub fn won(&mut self, job: ContentId, winners: &[Candidate], now: u64) {
        for winner in winners {
            if let Some(seen) = self.providers.get_mut(&winner.provider) {
                seen.won += 1;
            }
            if self.prices.len() == PRICES_KEPT {
                self.prices.pop_front();
            }
            self.prices.push_back(PricePoint {
                at_ms: now,
                job,
                provider: winner.provider,
                price_ucairn_per_gfuel: winner.price_ucairn_per_gfuel,
            });
        }
    }

    /// Every provider seen, most recent bid first, with its record here.
    pub fn providers(&self, record: impl Fn(&PublicKey) -> Record) -> Vec<ProviderSeen> {
        let mut providers: Vec<ProviderSeen> = self
            .providers
            .iter()
            .map(|(key, seen)| {
                let record = record(key);
                let offer = &seen.bid.offer;
                ProviderSeen {
                    key: *key,
                    price_ucairn_per_gfuel: seen.bid.price_ucairn_per_gfuel,
                    slots: seen.bid.slots,
                    cores: offer.cores,
                    memory_mib: offer.memory_mib,
                    gpus: offer.gpus,
                    runtimes: offer.runtimes.clone(),
                    score_mfuel_per_s: offer.score_mfuel_per_s,
                    stake: seen.stake,
                    latency_ms: seen.latency_ms,
                    last_bid_ms: seen.last_bid_ms,
                    bids: seen.bids,
                    won: seen.won,
                    confirmed: record.confirmed,
                    alone: record.alone,
                    convictions: record.convictions,
                }
            })
            .collect();
        providers.sort_by(|a, b| b.last_bid_ms.cmp(&a.last_bid_ms).then(a.key.cmp(&b.key)));
        providers
    }

    /// The cleared prices kept, oldest first.
    pub fn prices(&self) -> Vec<PricePoint> {
        self.prices.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use cairn_market::Offer;
    use cairn_wire::Keypair;

    use super::*;

    fn bid(price: u64) -> Bid {
        Bid {
            order: ContentId::of(b"order"),
            price_ucairn_per_gfuel: price,
            slots: 2,
            ready_in_ms: 0,
            offer: Offer {
                runtimes: vec!["wasm".into()],
                cores: 4,
                memory_mib: 1024,
                gpus: 0,
                score_mfuel_per_s: 300,
                tools: Vec::new(),
                gpu_model: String::new(),
                gpu_memory_mib: 0,
                gpu_driver: String::new(),
            },
        }
    }

    fn key(i: u32) -> PublicKey {
        let mut seed = [0; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        Keypair::from_seed(seed).public()
    }

    fn winner(provider: PublicKey, price: u64) -> Candidate {
        Candidate {
            provider,
            price_ucairn_per_gfuel: price,
            slots: 2,
            stake: 1,
            record: (0, 0),
            latency_ms: 0,
            ready_in_ms: 0,
            build: None,
        }
    }

    #[test]
    fn a_provider_shows_its_last_bid_its_counts_and_its_record() {
        let mut directory = Directory::default();
        let (a, b) = (key(1), key(2));
        directory.bid(a, &bid(10), 500, 7, 1_000);
        directory.bid(b, &bid(20), 900, 3, 2_000);
        directory.bid(a, &bid(12), 600, 5, 3_000);
        directory.won(ContentId::of(b"job"), &[winner(a, 12)], 3_100);
        let convicted = |k: &PublicKey| Record {
            convictions: u64::from(*k == b),
            ..Record::default()
        };
        let shown = directory.providers(convicted);
        assert_eq!(shown.len(), 2);
        // Most recent bid first.
        assert_eq!(shown[0].key, a);
        assert_eq!(
            (
                shown[0].price_ucairn_per_gfuel,
                shown[0].stake,
                shown[0].latency_ms
            ),
            (12, 600, 5)
        );
        assert_eq!(
            (shown[0].bids, shown[0].won, shown[0].convictions),
            (2, 1, 0)
        );
        assert_eq!(
            (shown[1].bids, shown[1].won, shown[1].convictions),
            (1, 0, 1)
        );
        assert_eq!(shown[0].cores, 4);
        assert_eq!(shown[0].runtimes, ["wasm"]);
    }

    #[test]
    fn flooding_bidders_and_auctions_keep_the_directory_bounded_and_the_newest_shown() {
        let mut directory = Directory::default();
        let n = PROVIDERS_SEEN_MAX as u32 + 10;
        for i in 0..n {
            directory.bid(key(i), &bid(1), 1, 0, u64::from(i));
        }
        let shown = directory.providers(|_| Record::default());
        assert_eq!(shown.len(), PROVIDERS_SEEN_MAX);
        assert_eq!(shown[0].key, key(n - 1), "the newest bidder is kept");
        assert!(
            shown.iter().all(|p| p.key != key(0)),
            "the stalest was forgotten"
        );
        let job = ContentId::of(b"job");
        for i in 0..PRICES_KEPT as u64 + 5 {
            directory.won(job, &[winner(key(1), i)], i);
        }
        let prices = directory.prices();
        assert_eq!(prices.len(), PRICES_KEPT);
        assert_eq!(prices[0].price_ucairn_per_gfuel, 5, "the oldest went first");
        assert_eq!(
            prices.last().unwrap().price_ucairn_per_gfuel,
            PRICES_KEPT as u64 + 4
        );
    }
}
