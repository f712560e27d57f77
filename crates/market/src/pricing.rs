//! Provider pricing: whether to bid on an order, and at what price.

use crate::order::{Offer, Order, Unfit};

/// A provider's answer to an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quote {
    /// Bid this price for this many concurrent tasks.
    Bid {
        /// Price per 10^9 fuel.
        price_ucairn_per_gfuel: u64,
        /// Concurrent tasks.
        slots: u32,
    },
    /// Do not bid, for this reason (told to the requester so a job that
    /// cannot be placed says why).
    Decline(Decline),
}

/// Why a provider does not bid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Decline {
    /// The tasks do not fit the provider.
    #[error(transparent)]
    Unfit(#[from] Unfit),
    /// The provider's price is above the order's maximum.
    #[error(
        "all bids above max price: provider asks {asked} µcairn/Gfuel, the order pays at most {max}"
    )]
    PriceAboveMax {
        /// What the provider's policy asks.
        asked: u64,
        /// The order's maximum.
        max: u64,
    },
    /// Every slot is taken.
    #[error("the provider is busy")]
    Busy,
}

/// Decides bids. Pluggable: a provider may run any policy.
pub trait PricingPolicy: Send + Sync {
    /// The quote for `order`, given what the provider has and how many of its
    /// slots are already leased.
    fn quote(&self, order: &Order, offer: &Offer, busy_slots: u32) -> Quote;
}

/// Akash-style per-resource scale pricing with a floor: the price per
/// Gfuel grows with the memory and GPUs a task holds while it burns that
/// fuel, and with how loaded the provider already is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePricing {
    /// Price of 10^9 fuel with no memory.
    pub base_ucairn_per_gfuel: u64,
    /// Added per GiB of task memory.
    pub memory_ucairn_per_gib_gfuel: u64,
    /// Added per GPU.
    pub gpu_ucairn_per_gfuel: u64,
    /// Surcharge when every slot is busy, in basis points (linear in load).
    pub load_markup_bps: u32,
    /// Never bid below this.
    pub floor_ucairn_per_gfuel: u64,
}

impl Default for ScalePricing {
    fn default() -> Self {
        Self {
            base_ucairn_per_gfuel: 40,
            memory_ucairn_per_gib_gfuel: 20,
            gpu_ucairn_per_gfuel: 400,
            load_markup_bps: 5_000,
            floor_ucairn_per_gfuel: 10,
        }
    }
}

impl ScalePricing {
    /// The price this policy asks for `order` at a given load.
    pub fn price(&self, order: &Order, busy_slots: u32, slots_total: u32) -> u64 {
        let memory = self
            .memory_ucairn_per_gib_gfuel
            .saturating_mul(u64::from(order.memory_mib))
            / 1024;
        let gpus = self
            .gpu_ucairn_per_gfuel
            .saturating_mul(u64::from(order.gpus));
        let list = self
            .base_ucairn_per_gfuel
            .saturating_add(memory)
            .saturating_add(gpus);
        let load_bps =
            u64::from(self.load_markup_bps) * u64::from(busy_slots) / u64::from(slots_total.max(1));
        let loaded = u128::from(list) * u128::from(10_000 + load_bps) / 10_000;
        u64::try_from(loaded)
            .unwrap_or(u64::MAX)
            .max(self.floor_ucairn_per_gfuel)
    }
}

impl PricingPolicy for ScalePricing {
    fn quote(&self, order: &Order, offer: &Offer, busy_slots: u32) -> Quote {
        let slots_total = match offer.slots_for(order) {
            Ok(slots) => slots,
            Err(unfit) => return Quote::Decline(unfit.into()),
        };
        let free = slots_total.saturating_sub(busy_slots);
        if free == 0 {
            return Quote::Decline(Decline::Busy);
        }
        let asked = self.price(order, busy_slots, slots_total);
        if asked > order.price_max_ucairn_per_gfuel {
            return Quote::Decline(Decline::PriceAboveMax {
                asked,
                max: order.price_max_ucairn_per_gfuel,
            });
        }
        Quote::Bid {
            price_ucairn_per_gfuel: asked,
            slots: free,
        }
    }
}
