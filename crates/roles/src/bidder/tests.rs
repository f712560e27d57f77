//! A provider's bidding, driven by hand.

use cairn_market::ScalePricing;
use cairn_wire::Keypair;

use super::*;

fn offer() -> Offer {
    Offer {
        runtimes: vec!["wasm".into()],
        cores: 4,
        memory_mib: 4_096,
        gpus: 0,
        score_mfuel_per_s: 1_000,
        tools: Vec::new(),
        gpu_model: String::new(),
        gpu_memory_mib: 0,
        gpu_driver: String::new(),
    }
}

fn me() -> PublicKey {
    Keypair::from_seed([9; 32]).public()
}

fn bidder() -> Bidder {
    Bidder::new(me(), offer(), Box::new(ScalePricing::default()), 1 << 20)
}

fn order(job: &[u8], created_ms: u64) -> Order {
    Order {
        job: ContentId::of(job),
        runtime: "wasm".into(),
        module: ContentId::of(b"module"),
        module_bytes: 1_000,
        tasks: 100,
        fuel_per_task_max: 1_000_000,
        memory_mib: 64,
        gpus: 0,
        // Enough for an idle provider, not for a busy one's markup.
        price_max_ucairn_per_gfuel: 50,
        created_ms,
        bid_window_ms: 200,
        gpu_memory_mib: 0,
        draw_ppm: cairn_market::DRAW_ALL,
    }
}

fn requester() -> PublicKey {
    Keypair::from_seed([7; 32]).public()
}

/// A lease on `order`'s job from `requester` at `price`.
fn lease(order: &Order, requester: PublicKey, price: u64) -> Lease {
    Lease {
        job: order.job,
        requester,
        provider: Keypair::from_seed([8; 32]).public(),
        price_ucairn_per_gfuel: price,
        fuel_per_task_max: order.fuel_per_task_max,
        expires_height: 100,
    }
}

#[test]
fn an_order_is_bid_on_once_and_a_lease_must_match_the_bid() {
    let mut bidder = bidder();
    let o = order(b"job", 0);
    let Answer::Bid(bid) = bidder.order(&o, requester(), 0, 10) else {
        panic!("an idle provider bids");
    };
    assert_eq!((bid.order, bid.slots), (o.id(), 4));
    assert_eq!(
        bidder.order(&o, requester(), 0, 11),
        Answer::Ignore(Ignored::Replayed)
    );
    let price = bid.price_ucairn_per_gfuel;
    let offered = lease(&o, requester(), price);
    assert_eq!(bidder.check_lease(&offered, 4), Ok(()));
    assert!(
        bidder
            .check_lease(&lease(&o, requester(), price + 1), 4)
            .is_err()
    );
    assert!(bidder.check_lease(&offered, 5).is_err());
    assert!(bidder.check_lease(&offered, 0).is_err());
    let mut other = order(b"other", 0);
    other.job = ContentId::of(b"other");
    assert!(
        bidder
            .check_lease(&lease(&other, requester(), price), 1)
            .is_err()
    );
    // A `job_squatter` signs an order naming the same job and withdraws
    // (it has no funds): the real requester's bid stands.
    let squatter = Keypair::from_seed([9; 32]).public();
    let mut squatted = o.clone();
    squatted.created_ms = 1;
    assert!(matches!(
        bidder.order(&squatted, squatter, 0, 12),
        Answer::Bid(_)
    ));
    assert!(bidder.check_lease(&lease(&o, squatter, price), 4).is_ok());
    bidder.withdraw(&squatter, &o.job);
    assert_eq!(bidder.check_lease(&offered, 4), Ok(()));
    bidder.withdraw(&requester(), &o.job);
    assert!(bidder.check_lease(&offered, 4).is_err());
}

/// A `gpu_smuggler` requester orders CPU tasks (priced as such, slots
/// by cores) and writes terms asking each task for the provider's GPUs,
/// or for more memory than it ordered: the lease is refused.
#[test]
fn gpu_smuggler_terms_asking_more_than_the_order_are_refused() {
    let mut bidder = Bidder::new(
        me(),
        Offer {
            gpus: 2,
            gpu_model: "NVIDIA H200".into(),
            gpu_memory_mib: 143_771,
            ..offer()
        },
        Box::new(ScalePricing::default()),
        1 << 20,
    );
    let o = order(b"job", 0);
    let Answer::Bid(bid) = bidder.order(&o, requester(), 0, 10) else {
        panic!("an idle provider bids");
    };
    let offered = lease(&o, requester(), bid.price_ucairn_per_gfuel);
    let as_ordered = Needs::of(&o);
    assert_eq!(bidder.check_terms(&offered, as_ordered), Ok(()));
    for (what, terms) in [
        (
            "GPUs",
            Needs {
                gpus: 2,
                ..as_ordered
            },
        ),
        (
            "GPUs",
            Needs {
                gpu_memory_mib: 1,
                ..as_ordered
            },
        ),
        (
            "memory",
            Needs {
                memory_mib: o.memory_mib + 1,
                ..as_ordered
            },
        ),
    ] {
        let refused = bidder.check_terms(&offered, terms).unwrap_err();
        assert!(refused.contains(what), "{what}: {refused}");
    }
    // Less memory than ordered is no harm.
    let less = Needs {
        memory_mib: 1,
        ..as_ordered
    };
    assert_eq!(bidder.check_terms(&offered, less), Ok(()));
}

#[test]
fn late_and_oversized_orders_get_no_bid() {
    let mut bidder = bidder();
    assert_eq!(
        bidder.order(&order(b"late", 0), requester(), 0, 201),
        Answer::Ignore(Ignored::Late)
    );
    let mut big = order(b"big", 0);
    big.module_bytes = 2 << 20;
    let Answer::Decline(reason) = bidder.order(&big, requester(), 0, 1) else {
        panic!("declined");
    };
    assert!(reason.contains("modules up to"), "{reason}");
    // Neither is bid on again.
    assert!(bidder.idle(1_000).is_empty());
}

#[test]
fn orders_seen_while_busy_are_bid_on_again_once_when_idle_and_not_once_leased() {
    let mut bidder = bidder();
    let (a, b, c) = (order(b"a", 0), order(b"b", 10), order(b"c", 20));
    for (o, now) in [(&a, 1), (&b, 11), (&c, 21)] {
        assert!(
            matches!(bidder.order(o, requester(), 4, now), Answer::Decline(_)),
            "a busy provider's price is above the order's maximum"
        );
    }
    // Leased for `b` meanwhile (by a bid elsewhere): it is not asked again.
    bidder.leased(&lease(&b, requester(), 0));
    let again = bidder.idle(5_000);
    let orders: Vec<ContentId> = again.iter().map(|r| r.bid.order).collect();
    assert_eq!(orders, [c.id(), a.id()], "newest first");
    assert!(again.iter().all(|r| r.requester == requester()));
    assert_eq!(again[0].order, c);
    // The re-bid can be leased: it is remembered like the first.
    let bid = &again[0].bid;
    assert_eq!(
        bidder.check_lease(
            &lease(&c, requester(), bid.price_ucairn_per_gfuel),
            bid.slots
        ),
        Ok(())
    );
    assert!(bidder.idle(6_000).is_empty(), "each order once");
}

#[test]
fn standing_orders_are_bounded_and_expire() {
    let mut bidder = bidder();
    for i in 0..(STANDING_MAX as u64 + 10) {
        let o = order(&i.to_be_bytes(), i);
        bidder.order(&o, requester(), 4, i + 1);
    }
    assert_eq!(bidder.standing.len(), STANDING_MAX);
    assert_eq!(bidder.idle(1_000).len(), IDLE_BIDS_MAX);
    // Half an hour on, what is left is too old to bid on.
    assert!(bidder.idle(STANDING_MS + 1_000).is_empty());
    assert!(bidder.standing.is_empty());
}

/// A requester one of whose tasks underpaid under an earlier lease gets no
/// bid on its next orders, this job's or another's, and no lease of it is
/// signed; other requesters' orders still do.
#[test]
fn an_underpaying_requesters_next_orders_are_declined() {
    let mut bidder = bidder();
    let first = order(b"job", 0);
    let other = order(b"other job", 5);
    for o in [&first, &other] {
        assert!(matches!(
            bidder.order(o, requester(), 0, 10),
            Answer::Bid(_)
        ));
    }
    bidder.underpaid(&requester());
    for o in [&first, &other] {
        assert!(
            bidder.check_lease(&lease(o, requester(), 40), 1).is_err(),
            "the bids were withdrawn"
        );
    }
    for (job, at) in [(&b"job"[..], 1_000), (b"a third job", 2_000)] {
        match bidder.order(&order(job, at), requester(), 0, at + 10) {
            Answer::Decline(reason) => assert_eq!(reason, UNDERPAID_REASON),
            other => panic!("expected a decline, got {other:?}"),
        }
    }
    assert!(bidder.idle(2_020).is_empty(), "not bid on again when idle");
    let stranger = Keypair::from_seed([9; 32]).public();
    assert!(matches!(
        bidder.order(&order(b"job", 3_000), stranger, 0, 3_010),
        Answer::Bid(_)
    ));
}

/// An order whose draw did not ask this provider gets no bid, now or
/// once the provider is idle; one that asked it does.
#[test]
fn an_order_whose_draw_asked_others_is_not_bid_on_now_or_when_idle() {
    let mut bidder = bidder();
    let draw_from = |job: &[u8], from: u64, asked: bool| -> Order {
        (from..)
            .map(|i: u64| Order {
                draw_ppm: 500_000,
                ..order(job, i)
            })
            .find(|o| o.draws(&me()) == asked)
            .unwrap()
    };
    let draw = |job: &[u8], asked: bool| draw_from(job, 0, asked);
    // Seen while busy, an order that asked it stands, to bid on once idle;
    // the job's next order, which asked others, ends it.
    let first = draw(b"redrawn", true);
    bidder.order(&first, requester(), 4, first.created_ms);
    let second = draw_from(b"redrawn", first.created_ms + 1, false);
    assert_eq!(
        bidder.order(&second, requester(), 4, second.created_ms),
        Answer::Ignore(Ignored::NotDrawn)
    );
    assert!(
        bidder.idle(second.created_ms + 1).is_empty(),
        "no bid on an order that is over"
    );
    let others = draw(b"others", false);
    assert_eq!(
        bidder.order(&others, requester(), 4, others.created_ms),
        Answer::Ignore(Ignored::NotDrawn)
    );
    assert!(bidder.idle(others.created_ms + 1).is_empty());
    let mine = draw(b"mine", true);
    assert!(matches!(
        bidder.order(&mine, requester(), 0, mine.created_ms),
        Answer::Bid(_)
    ));
}
