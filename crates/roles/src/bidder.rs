//! A provider's side of the market as a synchronous state machine: which
//! orders to bid on and at what price, which lease offers match a bid, and
//! which orders to bid on again once it is idle.
//!
//! The last is what keeps a busy network from starving late jobs. An order
//! arrives while the provider's slots are full: it declines (or bids high)
//! and the job is leased to the few providers free at that moment. When the
//! provider's work runs out it bids again on the orders it remembers, and a
//! job still short of providers reopens its auction for it (see
//! [`RequesterCore::bid`](crate::requester::RequesterCore::bid)). The
//! provider is the one that knows it is free; the requester only knows it is
//! short. Publishing orders again on a timer instead would ask the whole
//! network, mostly to hear "busy".

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cairn_ledger::Lease;
use cairn_market::{Bid, Offer, Order, PricingPolicy, Quote, drawn};
use cairn_wire::{ContentId, PublicKey};

/// Orders remembered to recognise replays.
const SEEN_ORDERS_MAX: usize = 65_536;
/// Bids remembered to check leases against; past it, bids whose auction
/// ended long ago are forgotten, and if none has, no more bids are made.
const BIDS_MAX: usize = 4_096;
/// How long after its auction's deadline a bid may still be leased.
const BID_LEASE_GRACE_MS: u64 = 600_000;
/// Orders kept to bid on again when idle, newest kept.
const STANDING_MAX: usize = 64;
/// How long an order is worth bidding on again.
const STANDING_MS: u64 = 30 * 60_000;
/// Orders bid on again per idle moment: a provider free now asks a few
/// jobs, not every one it ever saw.
const IDLE_BIDS_MAX: usize = 4;
/// Requesters remembered as underpaying, newest kept.
pub const UNDERPAID_MAX: usize = 1_024;
/// Why an underpaying requester's orders are declined.
pub const UNDERPAID_REASON: &str =
    "a task of this requester declared a sliver of the work it took, under an earlier lease";

/// What to do about an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Sign and send this bid (the shell fills in `ready_in_ms`).
    Bid(Bid),
    /// Tell the requester why not.
    Decline(String),
    /// Say nothing.
    Ignore(Ignored),
}

/// Why an order gets no answer at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Seen before.
    Replayed,
    /// Its window closed before it arrived.
    Late,
    /// Too many bids are open to remember another.
    TooManyBids,
    /// The order's draw did not ask this provider: it asked others.
    NotDrawn,
}

/// A bid on an order seen before, made once the provider is idle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebid {
    /// Who signed the order: the bid goes to it.
    pub requester: PublicKey,
    /// The order.
    pub order: Order,
    /// The bid (the shell fills in `ready_in_ms`).
    pub bid: Bid,
}

/// A bid made: what a lease offer for its job must match.
#[derive(Clone, Copy, Debug)]
struct Made {
    price: u64,
    slots: u32,
    deadline_ms: u64,
    /// What one task of the order needs: the slots and the price were
    /// reckoned on it.
    needs: Needs,
}

/// What one task needs of a provider, as an order states it and as a
/// lease's terms state it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// Memory, MiB.
    pub memory_mib: u32,
    /// GPUs.
    pub gpus: u32,
    /// Memory of each GPU, MiB.
    pub gpu_memory_mib: u32,
}

impl Needs {
    /// What `order`'s tasks need.
    pub fn of(order: &Order) -> Self {
        Self {
            memory_mib: order.memory_mib,
            gpus: order.gpus,
            gpu_memory_mib: order.gpu_memory_mib,
        }
    }
}

/// An order to bid on again when idle.
#[derive(Clone, Debug)]
struct Standing {
    order: Order,
    requester: PublicKey,
    seen_ms: u64,
}

/// The provider's bidding.
pub struct Bidder {
    /// Whose bidding: the order's draw is of keys.
    me: PublicKey,
    offer: Offer,
    pricing: Box<dyn PricingPolicy>,
    /// The largest module this provider stores.
    module_bytes_max: u64,
    seen: BTreeSet<ContentId>,
    seen_order: VecDeque<ContentId>,
    /// Bids made, by requester and job. Keyed by both: anyone may sign an
    /// order naming another requester's job, and it must not replace the
    /// bid that requester's lease is checked against.
    bids: BTreeMap<(PublicKey, ContentId), Made>,
    /// Orders not leased to this provider, by requester and job.
    standing: BTreeMap<(PublicKey, ContentId), Standing>,
    /// Requesters one of whose tasks declared a sliver of the work it
    /// took, under an earlier lease, oldest first: not bid for again.
    underpaid: VecDeque<PublicKey>,
}

impl Bidder {
    /// `me`'s bidding with `offer`'s resources at `pricing`'s prices, on
    /// modules up to `module_bytes_max`.
    pub fn new(
        me: PublicKey,
        offer: Offer,
        pricing: Box<dyn PricingPolicy>,
        module_bytes_max: u64,
    ) -> Self {
        Self {
            me,
            offer,
            pricing,
            module_bytes_max,
            seen: BTreeSet::new(),
            seen_order: VecDeque::new(),
            bids: BTreeMap::new(),
            standing: BTreeMap::new(),
            underpaid: VecDeque::new(),
        }
    }

    /// An order `requester` signed (the shell checked the signature and
    /// who published it), at `now`, with `busy` slots running tasks.
    pub fn order(&mut self, order: &Order, requester: PublicKey, busy: u32, now: u64) -> Answer {
        let id = order.id();
        if !self.seen.insert(id) {
            return Answer::Ignore(Ignored::Replayed);
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > SEEN_ORDERS_MAX
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        if now > order.bid_deadline_ms() {
            return Answer::Ignore(Ignored::Late);
        }
        // Not asked now, nor when idle: the requester refuses the bid. An
        // earlier order of the job that did ask this provider is over.
        if !drawn(&id, order.draw_ppm, &self.me) {
            self.standing.remove(&(requester, order.job));
            return Answer::Ignore(Ignored::NotDrawn);
        }
        if self.underpaid.contains(&requester) {
            return Answer::Decline(UNDERPAID_REASON.into());
        }
        if order.module_bytes > self.module_bytes_max {
            return Answer::Decline(format!(
                "the module is {} bytes; this provider takes modules up to {}",
                order.module_bytes, self.module_bytes_max
            ));
        }
        // Until it is leased for the job, an order is worth bidding on again
        // when this provider is free, if it would bid then.
        let quote = self.pricing.quote(order, &self.offer, busy);
        let bids_when_idle = match (&quote, busy) {
            (Quote::Bid { .. }, 0) => true,
            _ => matches!(self.pricing.quote(order, &self.offer, 0), Quote::Bid { .. }),
        };
        if bids_when_idle {
            self.stand(order, requester, now);
        }
        match quote {
            Quote::Bid {
                price_ucairn_per_gfuel,
                slots,
            } => {
                let deadline_ms = order.bid_deadline_ms();
                self.bid(
                    requester,
                    order,
                    (price_ucairn_per_gfuel, slots),
                    deadline_ms,
                    now,
                )
            }
            Quote::Decline(reason) => Answer::Decline(reason.to_string()),
        }
    }

    fn stand(&mut self, order: &Order, requester: PublicKey, now: u64) {
        self.standing.insert(
            (requester, order.job),
            Standing {
                order: order.clone(),
                requester,
                seen_ms: now,
            },
        );
        if self.standing.len() > STANDING_MAX
            && let Some(oldest) = self
                .standing
                .iter()
                .min_by_key(|(_, s)| s.seen_ms)
                .map(|(key, _)| *key)
        {
            self.standing.remove(&oldest);
        }
    }

    fn bid(
        &mut self,
        requester: PublicKey,
        order: &Order,
        (price, slots): (u64, u32),
        deadline_ms: u64,
        now: u64,
    ) -> Answer {
        let key = (requester, order.job);
        if self.bids.len() >= BIDS_MAX {
            self.bids
                .retain(|_, bid| bid.deadline_ms.saturating_add(BID_LEASE_GRACE_MS) > now);
        }
        if self.bids.len() >= BIDS_MAX && !self.bids.contains_key(&key) {
            return Answer::Ignore(Ignored::TooManyBids);
        }
        self.bids.insert(
            key,
            Made {
                price,
                slots,
                deadline_ms,
                needs: Needs::of(order),
            },
        );
        Answer::Bid(Bid {
            order: order.id(),
            price_ucairn_per_gfuel: price,
            slots,
            ready_in_ms: 0,
            offer: self.offer.clone(),
        })
    }

    /// A task of `requester`'s declared a sliver of the work it took (see
    /// `LeaseWork::worked`): none of its orders gets a bid again (a new job
    /// of the same requester would get one more task done for nothing),
    /// and no bid made already is leased. The newest [`UNDERPAID_MAX`] are
    /// remembered; the shell keeps them across restarts.
    pub fn underpaid(&mut self, requester: &PublicKey) {
        self.bids.retain(|(r, _), _| r != requester);
        self.standing.retain(|(r, _), _| r != requester);
        if !self.underpaid.contains(requester) {
            self.underpaid.push_back(*requester);
            if self.underpaid.len() > UNDERPAID_MAX {
                self.underpaid.pop_front();
            }
        }
    }

    /// The bid on `requester`'s `job` is withdrawn (the shell found a
    /// reason not to send it): no lease for it is signed.
    pub fn withdraw(&mut self, requester: &PublicKey, job: &ContentId) {
        self.bids.remove(&(*requester, *job));
        self.standing.remove(&(*requester, *job));
    }

    /// Whether a lease offer from `lease.requester` matches the bid made on
    /// its job, for `slots`; why not if it does not.
    pub fn check_lease(&self, lease: &Lease, slots: u32) -> Result<(), &'static str> {
        let bid = self
            .bids
            .get(&(lease.requester, lease.job))
            .ok_or("no bid on that job")?;
        if lease.price_ucairn_per_gfuel != bid.price || slots == 0 || slots > bid.slots {
            return Err("the lease differs from the bid");
        }
        Ok(())
    }

    /// Whether the terms of a lease offer for `lease`'s job ask of a task
    /// what the order did (`check_lease` first): the bid's price and slots
    /// were reckoned on the order, so terms asking for more memory, or for
    /// GPUs the order never priced, would get them at the order's price
    /// and crowd out other leases' tasks.
    pub fn check_terms(&self, lease: &Lease, terms: Needs) -> Result<(), &'static str> {
        let bid = self
            .bids
            .get(&(lease.requester, lease.job))
            .ok_or("no bid on that job")?;
        let ordered = bid.needs;
        if terms.memory_mib > ordered.memory_mib {
            return Err("the terms ask for more memory a task than the order did");
        }
        if (terms.gpus, terms.gpu_memory_mib) != (ordered.gpus, ordered.gpu_memory_mib) {
            return Err("the terms ask for other GPUs than the order did");
        }
        Ok(())
    }

    /// Leased for `lease`'s job: its order is not bid on again.
    pub fn leased(&mut self, lease: &Lease) {
        self.standing.remove(&(lease.requester, lease.job));
    }

    /// The provider ran out of work at `now`: bids on the newest orders it
    /// remembers, each with the requester that signed its order. Each order
    /// is bid on again once; a job still short of providers reopens its
    /// auction for the bid, any other refuses it.
    pub fn idle(&mut self, now: u64) -> Vec<Rebid> {
        self.standing
            .retain(|_, s| s.seen_ms.saturating_add(STANDING_MS) > now);
        let mut newest: Vec<Standing> = self.standing.values().cloned().collect();
        newest.sort_by_key(|s| std::cmp::Reverse(s.seen_ms));
        let mut bids = Vec::new();
        for standing in newest.into_iter().take(IDLE_BIDS_MAX) {
            let order = standing.order;
            self.standing.remove(&(standing.requester, order.job));
            let Quote::Bid {
                price_ucairn_per_gfuel,
                slots,
            } = self.pricing.quote(&order, &self.offer, 0)
            else {
                continue;
            };
            let deadline_ms = now.saturating_add(u64::from(order.bid_window_ms));
            let quote = (price_ucairn_per_gfuel, slots);
            if let Answer::Bid(bid) = self.bid(standing.requester, &order, quote, deadline_ms, now)
            {
                bids.push(Rebid {
                    requester: standing.requester,
                    order,
                    bid,
                });
            }
        }
        bids
    }
}

#[cfg(test)]
mod tests;
