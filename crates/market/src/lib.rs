//! market: Match orders with provider bids in a reverse auction, as a pure state machine.
//!
//! A requester announces an [`Order`]; each provider's [`PricingPolicy`]
//! decides whether and what to [`Bid`]; the requester's [`Auction`] refuses
//! invalid bids, waits a bounded window, and [`select`]s providers by price,
//! stake, record and latency with a seeded [`Rng`]. An order draws the
//! providers it asks by lot ([`drawn`]), so a network of any size answers
//! it with bids in proportion to the work, not to the network. Nothing here touches a
//! socket, a clock or the OS's entropy: the network shell passes time and
//! randomness in, so a simulator can run the very same code.
#![deny(missing_docs)]

mod auction;
mod order;
mod pricing;
mod rng;
mod select;

pub use auction::{Auction, BidRejection, Outcome};
pub use order::{
    BID_NAMESPACE, Bid, DRAW_ALL, GPU_BACKENDS_BYTES_MAX, GPU_DRIVER_BYTES_MAX,
    GPU_MODEL_BYTES_MAX, ISA_BYTES_MAX, ORDER_NAMESPACE, Offer, Order, RUNTIME_BYTES_MAX,
    RUNTIMES_MAX, ToolBuild, Unfit, draw_ppm, drawn,
};
pub use pricing::{Decline, PricingPolicy, Quote, ScalePricing};
pub use rng::Rng;
pub use select::{Candidate, SelectionParams, select};
