//! The requester's side of one reverse auction: collect bids for a bounded
//! window, refuse invalid ones, then select.

use std::collections::{BTreeMap, BTreeSet};

use cairn_wire::{ContentId, PublicKey, Signed};

use crate::order::{BID_NAMESPACE, Bid, Order};
use crate::select::{Candidate, SelectionParams, select};
use crate::{Rng, Unfit};

/// Why a bid was refused. Counted per reason so a job that cannot be placed
/// can say why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BidRejection {
    /// The order's draw did not ask this provider ([`crate::drawn`]).
    #[error("provider not drawn to bid on this order")]
    NotDrawn,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The bid is for another order.
    #[error("bid for another order")]
    WrongOrder,
    /// The bid came after the window closed.
    #[error("bid after the window closed")]
    Late,
    /// The provider already bid.
    #[error("duplicate bid")]
    Duplicate,
    /// The price is above the order's maximum.
    #[error("bid above max price")]
    AboveMaxPrice,
    /// The provider's resources do not fit a task.
    #[error("{0}")]
    Unfit(#[from] Unfit),
    /// More slots than the offer can hold.
    #[error("bid offers more slots than its resources hold")]
    Overcommitted,
    /// The provider cannot bid on the ledger (no stake).
    #[error("provider has no stake")]
    Unstaked,
    /// It would run another build of the tool than the job's replicas
    /// run, whose results may differ in every bit.
    #[error("another build of the tool than the job runs")]
    OtherBuild,
}

/// How an auction ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// These providers won, in the order drawn.
    Selected(Vec<Candidate>),
    /// Nobody can be leased; the reason is for the requester's status.
    Unplaced(String),
}

/// One round of bidding on an order.
#[derive(Clone, Debug)]
pub struct Auction {
    order: Order,
    order_id: ContentId,
    /// When bidding opened and closes (ms): the order's own window, or a
    /// later one when a standing order is bid on again.
    opened_ms: u64,
    deadline_ms: u64,
    slots_wanted: u64,
    candidates: BTreeMap<PublicKey, Candidate>,
    declines: BTreeMap<String, u32>,
    /// Who declined: one decline counts per provider.
    decliners: BTreeSet<PublicKey>,
    rejections: BTreeMap<String, u32>,
    /// The tool build every winner must run ([`Auction::pin_build`]).
    build: Option<ContentId>,
    /// How many bidders must run one build for it to be chosen.
    replicas: u64,
}

/// Distinct decline reasons an auction keeps; more are counted as
/// "other reasons". Anyone may decline, in any words: the table must not
/// grow with what strangers send.
const DECLINE_REASONS_MAX: usize = 16;
/// The longest decline reason kept, in bytes.
const DECLINE_REASON_BYTES_MAX: usize = 200;
/// Providers whose declines an auction counts.
const DECLINERS_MAX: usize = 4_096;

impl Auction {
    /// Opens bidding on `order`, wanting bids that cover `slots_wanted`
    /// concurrent tasks (usually the number of tasks).
    pub fn open(order: Order, slots_wanted: u64) -> Self {
        let (opened_ms, deadline_ms) = (order.created_ms, order.bid_deadline_ms());
        Self::with_window(order, slots_wanted, opened_ms, deadline_ms)
    }

    /// Opens another round of bidding on an order published before, from
    /// `now_ms` for the order's window: a job still short of providers takes
    /// bids from providers that saw the order while busy and are free now,
    /// without publishing the order again.
    pub fn reopen(order: Order, slots_wanted: u64, now_ms: u64) -> Self {
        let deadline_ms = now_ms.saturating_add(u64::from(order.bid_window_ms));
        Self::with_window(order, slots_wanted, now_ms, deadline_ms)
    }

    fn with_window(order: Order, slots_wanted: u64, opened_ms: u64, deadline_ms: u64) -> Self {
        Self {
            order_id: order.id(),
            order,
            opened_ms,
            deadline_ms,
            slots_wanted: slots_wanted.max(1),
            candidates: BTreeMap::new(),
            declines: BTreeMap::new(),
            decliners: BTreeSet::new(),
            rejections: BTreeMap::new(),
            build: None,
            replicas: 1,
        }
    }

    /// Takes bids only from providers that run the tool on `build`: the
    /// one the job's replicas already ran, so that results compare bit for
    /// bit. Without one, the auction keeps the bids of the build most
    /// bidders run, if at least `replicas` do (a result needs that many
    /// providers); if none has that many, it keeps every bid, and the
    /// verifier's vote decides between builds.
    pub fn pin_build(mut self, build: Option<ContentId>, replicas: u64) -> Self {
        self.build = build;
        self.replicas = replicas;
        self
    }

    /// The order being auctioned.
    pub fn order(&self) -> &Order {
        &self.order
    }

    /// The order's id.
    pub fn order_id(&self) -> ContentId {
        self.order_id
    }

    /// When bidding closes (ms).
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// Takes a bid. `stake` and `record` come from the ledger (`None` stake:
    /// the provider may not bid there).
    pub fn bid(
        &mut self,
        bid: &Signed<Bid>,
        stake: Option<u128>,
        record: (u64, u64),
        now_ms: u64,
    ) -> Result<(), BidRejection> {
        let result = self.check(bid, stake, now_ms);
        match result {
            Ok(()) => {
                let payload = bid.payload_unchecked();
                self.candidates.insert(
                    bid.signer(),
                    Candidate {
                        provider: bid.signer(),
                        price_ucairn_per_gfuel: payload.price_ucairn_per_gfuel,
                        slots: payload.slots,
                        stake: stake.unwrap_or(0),
                        record,
                        latency_ms: now_ms.saturating_sub(self.opened_ms),
                        ready_in_ms: payload.ready_in_ms,
                        build: payload.offer.build_for(&self.order),
                    },
                );
            }
            Err(ref rejection) => {
                *self.rejections.entry(rejection.to_string()).or_default() += 1;
            }
        }
        result
    }

    fn check(
        &self,
        signed: &Signed<Bid>,
        stake: Option<u128>,
        now_ms: u64,
    ) -> Result<(), BidRejection> {
        // Before the signature: the lot costs a hash, a signature check
        // many times more, and a flood of bids from providers not drawn
        // is refused at the price of the hash.
        if !crate::drawn(&self.order_id, self.order.draw_ppm, &signed.signer()) {
            return Err(BidRejection::NotDrawn);
        }
        let bid = signed
            .verify(BID_NAMESPACE)
            .map_err(|_| BidRejection::BadSignature)?;
        if bid.order != self.order_id {
            return Err(BidRejection::WrongOrder);
        }
        if now_ms > self.deadline_ms {
            return Err(BidRejection::Late);
        }
        if self.candidates.contains_key(&signed.signer()) {
            return Err(BidRejection::Duplicate);
        }
        if bid.price_ucairn_per_gfuel > self.order.price_max_ucairn_per_gfuel {
            return Err(BidRejection::AboveMaxPrice);
        }
        let fits = bid.offer.slots_for(&self.order)?;
        if bid.slots == 0 || bid.slots > fits {
            return Err(BidRejection::Overcommitted);
        }
        if stake.is_none() {
            return Err(BidRejection::Unstaked);
        }
        if self.build.is_some() && bid.offer.build_for(&self.order) != self.build {
            return Err(BidRejection::OtherBuild);
        }
        Ok(())
    }

    /// Records `provider`'s reason for not bidding: once per provider,
    /// in a table of bounded size.
    pub fn decline(&mut self, provider: PublicKey, reason: &str) {
        // A provider the draw did not ask has nothing to decline: its words
        // would only crowd out those of providers that were asked.
        if !crate::drawn(&self.order_id, self.order.draw_ppm, &provider)
            || self.decliners.len() >= DECLINERS_MAX
            || self.candidates.contains_key(&provider)
            || !self.decliners.insert(provider)
        {
            return;
        }
        let mut reason = reason;
        if reason.len() > DECLINE_REASON_BYTES_MAX {
            let mut end = DECLINE_REASON_BYTES_MAX;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason = &reason[..end];
        }
        let key = if self.declines.contains_key(reason)
            || self.declines.len() < DECLINE_REASONS_MAX - 1
        {
            reason
        } else {
            "other reasons"
        };
        *self.declines.entry(key.to_string()).or_default() += 1;
    }

    /// Whether to close now: the window has passed, or the bids already
    /// cover every slot wanted (no reason to make the requester wait).
    pub fn ready(&self, now_ms: u64) -> bool {
        let offered: u64 = self.candidates.values().map(|c| u64::from(c.slots)).sum();
        now_ms >= self.deadline_ms || offered >= self.slots_wanted
    }

    /// Valid bids so far.
    pub fn bids(&self) -> usize {
        self.candidates.len()
    }

    /// Ends the auction.
    pub fn close(self, params: &SelectionParams, rng: &mut Rng) -> Outcome {
        if self.candidates.is_empty() {
            return Outcome::Unplaced(self.unplaced_reason());
        }
        let candidates = one_build(self.candidates.into_values().collect(), self.replicas);
        let chosen = select(&candidates, self.slots_wanted, params, rng);
        Outcome::Selected(chosen.into_iter().map(|i| candidates[i].clone()).collect())
    }

    fn unplaced_reason(&self) -> String {
        let list = |counts: &BTreeMap<String, u32>| {
            let mut by_count: Vec<_> = counts.iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            by_count
                .iter()
                .map(|(reason, n)| format!("{reason} ({n})"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match (self.declines.is_empty(), self.rejections.is_empty()) {
            (true, true) => "no provider answered the order".into(),
            (false, true) => list(&self.declines),
            (true, false) => format!("every bid was refused: {}", list(&self.rejections)),
            (false, false) => format!(
                "{}; refused bids: {}",
                list(&self.declines),
                list(&self.rejections)
            ),
        }
    }
}

/// The candidates that run the build most of them run (ties: the one
/// with the cheapest bid), so that a tool job's replicas compare bit for
/// bit, if at least `replicas` do; else all of them. Wasm candidates all
/// have no build, and all stay.
fn one_build(candidates: Vec<Candidate>, replicas: u64) -> Vec<Candidate> {
    let mut builds: BTreeMap<Option<ContentId>, (u64, u64)> = BTreeMap::new();
    for c in &candidates {
        let (count, cheapest) = builds.entry(c.build).or_insert((0, u64::MAX));
        *count += 1;
        *cheapest = (*cheapest).min(c.price_ucairn_per_gfuel);
    }
    let Some(chosen) = builds
        .iter()
        .max_by_key(|(_, (count, cheapest))| (*count, std::cmp::Reverse(*cheapest)))
        .filter(|(_, (count, _))| *count >= replicas)
        .map(|(build, _)| *build)
    else {
        return candidates;
    };
    candidates
        .into_iter()
        .filter(|c| c.build == chosen)
        .collect()
}

#[cfg(test)]
mod tests {
    use cairn_wire::Keypair;

    use super::*;
    use crate::order::Offer;
    use crate::pricing::{PricingPolicy, Quote, ScalePricing};

    fn order() -> Order {
        Order {
            job: ContentId::of(b"job"),
            runtime: "wasm".into(),
            module: ContentId::of(b"module"),
            module_bytes: 4 << 20,
            tasks: 8,
            fuel_per_task_max: 1_000_000,
            memory_mib: 64,
            gpus: 0,
            price_max_ucairn_per_gfuel: 100,
            created_ms: 1_000,
            bid_window_ms: 50,
            gpu_memory_mib: 0,
            draw_ppm: crate::DRAW_ALL,
        }
    }

    fn offer() -> Offer {
        Offer {
            runtimes: vec!["wasm".into()],
            cores: 4,
            memory_mib: 1024,
            gpus: 0,
            score_mfuel_per_s: 500,
            tools: Vec::new(),
            gpu_model: String::new(),
            gpu_memory_mib: 0,
            gpu_driver: String::new(),
        }
    }

    fn bid(key: &Keypair, order: &Order, price: u64, slots: u32) -> Signed<Bid> {
        Signed::sign(
            key,
            BID_NAMESPACE,
            Bid {
                order: order.id(),
                price_ucairn_per_gfuel: price,
                slots,
                ready_in_ms: 0,
                offer: offer(),
            },
        )
    }

    #[test]
    fn a_bidder_the_draw_did_not_ask_is_refused_before_its_signature_is_checked() {
        let mut order = order();
        order.draw_ppm = 300_000;
        let keys: Vec<Keypair> = (0..64u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let drawn = keys.iter().find(|k| order.draws(&k.public())).unwrap();
        let undrawn = keys.iter().find(|k| !order.draws(&k.public())).unwrap();
        let mut auction = Auction::open(order.clone(), 64);
        assert_eq!(
            auction.bid(&bid(drawn, &order, 50, 4), Some(1), (0, 0), 1_010),
            Ok(())
        );
        assert_eq!(
            auction.bid(&bid(undrawn, &order, 50, 4), Some(1), (0, 0), 1_010),
            Err(BidRejection::NotDrawn)
        );
        // Its forged bid is refused for the draw, not for the signature:
        // the signature was never checked.
        let mut bytes = bid(drawn, &order, 10, 4).to_bytes();
        bytes[1..33].copy_from_slice(undrawn.public().as_bytes());
        let forged = Signed::<Bid>::from_bytes(&bytes, &()).unwrap();
        assert_eq!(
            auction.bid(&forged, Some(1), (0, 0), 1_011),
            Err(BidRejection::NotDrawn)
        );
        assert_eq!(auction.bids(), 1);
        // Nor is a decline counted from a provider the draw did not ask.
        let mut declined = Auction::open(order.clone(), 64);
        declined.decline(undrawn.public(), "crowding out");
        declined.decline(drawn.public(), "too busy");
        let Outcome::Unplaced(reason) =
            declined.close(&SelectionParams::default(), &mut Rng::new(1))
        else {
            panic!("no bid");
        };
        assert!(
            reason.contains("too busy") && !reason.contains("crowding"),
            "{reason}"
        );
    }

    #[test]
    fn invalid_bids_are_refused_and_counted() {
        let order = order();
        let mut auction = Auction::open(order.clone(), 8);
        let honest = Keypair::from_seed([1; 32]);
        let overpricer = Keypair::from_seed([2; 32]);
        let forger = Keypair::from_seed([3; 32]);
        let latecomer = Keypair::from_seed([4; 32]);

        assert_eq!(
            auction.bid(&bid(&honest, &order, 50, 4), Some(1), (0, 0), 1_010),
            Ok(())
        );
        assert_eq!(
            auction.bid(&bid(&honest, &order, 50, 4), Some(1), (0, 0), 1_011),
            Err(BidRejection::Duplicate)
        );
        assert_eq!(
            auction.bid(&bid(&overpricer, &order, 101, 4), Some(1), (0, 0), 1_012),
            Err(BidRejection::AboveMaxPrice)
        );
        // A bid whose signer is swapped: the signature no longer verifies.
        let stolen = bid(&honest, &order, 10, 4);
        let mut bytes = stolen.to_bytes();
        bytes[1..33].copy_from_slice(forger.public().as_bytes());
        let forged = Signed::<Bid>::from_bytes(&bytes, &()).unwrap();
        assert_eq!(
            auction.bid(&forged, Some(1), (0, 0), 1_013),
            Err(BidRejection::BadSignature)
        );
        assert_eq!(
            auction.bid(&bid(&latecomer, &order, 10, 4), Some(1), (0, 0), 1_051),
            Err(BidRejection::Late)
        );
        assert_eq!(
            auction.bid(&bid(&latecomer, &order, 10, 5), Some(1), (0, 0), 1_020),
            Err(BidRejection::Overcommitted)
        );
        assert_eq!(
            auction.bid(&bid(&latecomer, &order, 10, 4), None, (0, 0), 1_020),
            Err(BidRejection::Unstaked)
        );
        assert_eq!(auction.bids(), 1);
        assert!(!auction.ready(1_020));
        assert!(auction.ready(1_050));
        match auction.close(&SelectionParams::default(), &mut Rng::new(1)) {
            Outcome::Selected(winners) => {
                assert_eq!(winners.len(), 1);
                assert_eq!(winners[0].provider, honest.public());
                assert_eq!(winners[0].latency_ms, 10);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn enough_slots_close_the_auction_early() {
        let order = order();
        let mut auction = Auction::open(order.clone(), 4);
        auction
            .bid(
                &bid(&Keypair::from_seed([1; 32]), &order, 50, 4),
                Some(1),
                (0, 0),
                1_001,
            )
            .unwrap();
        assert!(auction.ready(1_001));
    }

    #[test]
    fn a_reopened_order_takes_bids_for_a_window_of_its_own() {
        let order = order();
        let late = bid(&Keypair::from_seed([1; 32]), &order, 50, 1);
        let mut first = Auction::open(order.clone(), 8);
        assert_eq!(
            first.bid(&late, Some(1), (0, 0), 5_000),
            Err(BidRejection::Late)
        );
        let mut again = Auction::reopen(order.clone(), 8, 5_000);
        assert_eq!(again.deadline_ms(), 5_050);
        assert!(!again.ready(5_049));
        assert_eq!(again.bid(&late, Some(1), (0, 0), 5_010), Ok(()));
        assert!(again.ready(5_050));
        let after = bid(&Keypair::from_seed([2; 32]), &order, 50, 1);
        assert_eq!(
            again.bid(&after, Some(1), (0, 0), 5_051),
            Err(BidRejection::Late)
        );
        let Outcome::Selected(chosen) = again.close(&SelectionParams::default(), &mut Rng::new(1))
        else {
            panic!("one valid bid");
        };
        // Latency counts from the round's opening, not the order's.
        assert_eq!(chosen[0].latency_ms, 10);
    }

    /// A `decline_flooder` declines one order again and again, in new
    /// words each time, from many keys: each key counts once, and the
    /// reasons kept stay bounded.
    #[test]
    fn decline_flooder_is_bounded() {
        let mut auction = Auction::open(order(), 1);
        let flooder = Keypair::from_seed([1; 32]).public();
        for i in 0..1_000 {
            auction.decline(flooder, &format!("reason {i}"));
        }
        assert_eq!(auction.declines.values().sum::<u32>(), 1);
        for i in 0..10_000u32 {
            let mut seed = [0; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            seed[4] = 9;
            let key = Keypair::from_seed(seed).public();
            auction.decline(key, &"x".repeat(10_000 + i as usize));
        }
        assert!(auction.declines.len() <= DECLINE_REASONS_MAX);
        assert!(
            auction
                .declines
                .keys()
                .all(|r| r.len() <= DECLINE_REASON_BYTES_MAX)
        );
        assert!(auction.decliners.len() <= DECLINERS_MAX);
    }

    #[test]
    fn an_unplaced_job_says_why() {
        let mut order = order();
        order.runtime = "docker".into();
        let mut auction = Auction::open(order.clone(), 8);
        for i in 0..3 {
            match ScalePricing::default().quote(&order, &offer(), 0) {
                Quote::Decline(reason) => {
                    auction.decline(Keypair::from_seed([i; 32]).public(), &reason.to_string())
                }
                Quote::Bid { .. } => panic!("bid on a runtime it lacks"),
            }
        }
        match auction.close(&SelectionParams::default(), &mut Rng::new(1)) {
            Outcome::Unplaced(reason) => {
                assert_eq!(reason, "no provider offers runtime 'docker' (3)")
            }
            other => panic!("{other:?}"),
        }
        // A tool job is bid on by providers with a version that serves it,
        // and declined, with that reason, by the others.
        order.runtime = "ffmpeg@5.1".into();
        let mut with_tool = offer();
        with_tool.runtimes.push("ffmpeg@5.1.9".into());
        assert!(matches!(
            ScalePricing::default().quote(&order, &with_tool, 0),
            Quote::Bid { .. }
        ));
        with_tool.runtimes[1] = "ffmpeg@6.0".into();
        match ScalePricing::default().quote(&order, &with_tool, 0) {
            Quote::Decline(reason) => assert_eq!(
                reason.to_string(),
                "no provider offers runtime 'ffmpeg@5.1'"
            ),
            Quote::Bid { .. } => panic!("bid with another version of the tool"),
        }
        let silent = Auction::open(self::order(), 1);
        assert_eq!(
            silent.close(&SelectionParams::default(), &mut Rng::new(1)),
            Outcome::Unplaced("no provider answered the order".into())
        );
    }

    /// A bid for a tool job that runs ffmpeg with `threads` threads.
    fn tool_bid(key: &Keypair, order: &Order, price: u64, threads: u32) -> Signed<Bid> {
        let mut tool = bid(key, order, price, 1).payload_unchecked().clone();
        tool.offer.runtimes.push("ffmpeg@5.1.9".into());
        tool.offer.tools.push(crate::ToolBuild {
            runtime: "ffmpeg@5.1.9".into(),
            binary: ContentId::of(b"ffmpeg"),
            isa: "x86-64-v3".into(),
            threads,
            gpu: String::new(),
        });
        Signed::sign(key, BID_NAMESPACE, tool)
    }

    #[test]
    fn a_tool_job_is_leased_to_one_build_of_the_tool() {
        let mut order = order();
        order.runtime = "ffmpeg@5".into();
        let keys: Vec<Keypair> = (1..=5).map(|i| Keypair::from_seed([i; 32])).collect();
        // Two bidders run it on one thread, three on two: the cheapest
        // bid is a one-thread one, but most bidders run two.
        let mut auction = Auction::open(order.clone(), 8).pin_build(None, 2);
        for (i, key) in keys.iter().enumerate() {
            let threads = if i < 2 { 1 } else { 2 };
            let price = 10 + i as u64;
            auction
                .bid(
                    &tool_bid(key, &order, price, threads),
                    Some(1),
                    (0, 0),
                    1_010,
                )
                .unwrap();
        }
        let Outcome::Selected(winners) =
            auction.close(&SelectionParams::default(), &mut Rng::new(7))
        else {
            panic!("placed");
        };
        let two = tool_bid(&keys[0], &order, 1, 2)
            .payload_unchecked()
            .offer
            .build_for(&order);
        assert_eq!(winners.len(), 3, "{winners:?}");
        assert!(winners.iter().all(|w| w.build == two && w.build.is_some()));

        // Bidding again once replicas ran: only that build is taken, and
        // the others hear why.
        let mut again = Auction::open(order.clone(), 8).pin_build(two, 2);
        assert_eq!(
            again.bid(&tool_bid(&keys[0], &order, 10, 1), Some(1), (0, 0), 1_010),
            Err(BidRejection::OtherBuild)
        );
        assert_eq!(
            again.bid(&tool_bid(&keys[2], &order, 10, 2), Some(1), (0, 0), 1_010),
            Ok(())
        );
        // Three replicas wanted, no build run by three bidders: every bid
        // stays, and the vote decides between builds.
        let mut split = Auction::open(order.clone(), 8).pin_build(None, 3);
        for (i, key) in keys.iter().take(4).enumerate() {
            let threads = if i < 2 { 1 } else { 2 };
            split
                .bid(&tool_bid(key, &order, 10, threads), Some(1), (0, 0), 1_010)
                .unwrap();
        }
        let Outcome::Selected(all) = split.close(&SelectionParams::default(), &mut Rng::new(7))
        else {
            panic!("placed");
        };
        assert_eq!(all.len(), 4);
        // A Wasm offer describes no build: not one for a pinned tool job.
        let mut untold = Auction::open(order.clone(), 8).pin_build(two, 2);
        let mut bare = tool_bid(&keys[3], &order, 10, 2)
            .payload_unchecked()
            .clone();
        bare.offer.tools.clear();
        assert_eq!(
            untold.bid(
                &Signed::sign(&keys[3], BID_NAMESPACE, bare),
                Some(1),
                (0, 0),
                1_010
            ),
            Err(BidRejection::OtherBuild)
        );
    }

    #[test]
    fn pricing_declines_below_its_floor_and_marks_up_with_load() {
        let mut order = order();
        let policy = ScalePricing::default();
        let idle = policy.price(&order, 0, 4);
        let busy = policy.price(&order, 3, 4);
        assert!(busy > idle, "{busy} <= {idle}");
        order.price_max_ucairn_per_gfuel = idle - 1;
        assert!(matches!(
            policy.quote(&order, &offer(), 0),
            Quote::Decline(crate::Decline::PriceAboveMax { .. })
        ));
        order.price_max_ucairn_per_gfuel = 1_000;
        assert_eq!(
            policy.quote(&order, &offer(), 4),
            Quote::Decline(crate::Decline::Busy)
        );
        assert_eq!(
            policy.quote(&order, &offer(), 1),
            Quote::Bid {
                price_ucairn_per_gfuel: policy.price(&order, 1, 4),
                slots: 3
            }
        );
    }

    #[test]
    fn orders_and_bids_round_trip_through_the_wire() {
        let order = order();
        let key = Keypair::from_seed([5; 32]);
        let signed = Signed::sign(&key, crate::ORDER_NAMESPACE, order.clone());
        let back = Signed::<Order>::from_bytes(&signed.to_bytes(), &()).unwrap();
        assert_eq!(back.verify(crate::ORDER_NAMESPACE).unwrap(), &order);
        assert!(
            back.verify(BID_NAMESPACE).is_err(),
            "namespaces must separate"
        );
        let b = bid(&key, &order, 42, 2);
        let back = Signed::<Bid>::from_bytes(&b.to_bytes(), &()).unwrap();
        assert_eq!(back, b);
    }
}
