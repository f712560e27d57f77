//! Nodes built to cheat, so that tests can show the defences hold: a
//! provider that lies, stalls or tampers with what it runs, a requester
//! that frames, withholds payment, underpays or crashes mid-case (`cairn node
//! --misbehave NAME`, hidden).
//!
//! Only a build with this crate's `adversary` feature has them: the tests
//! turn it on (through dev-dependencies), and a node built for use has
//! none of their code. There, [`Misbehave`] and [`RequesterMisbehave`] are
//! empty types: a node's cheat is always `None`, every call site that
//! plays one is unreachable, and the compiler removes it.

/// What `cairn node --misbehave` takes, in either build: a build without
/// the adversaries refuses each with the reason ([`configure`]).
pub const NAMES: &[&str] = &[
    "liar",
    "stonewaller",
    "staller",
    "index-overflower",
    "output-substituter",
    "fuel-inflater",
    "step-skipper",
    "data-swapper",
    "early-stopper",
    "weight-nudger",
    "lazy-renderer",
    "frame-swapper",
    "region-painter",
    "framer",
    "withholder",
    "underpayer",
    "case-crasher",
];

#[cfg(feature = "adversary")]
mod cheats;
#[cfg(feature = "adversary")]
mod render;
#[cfg(feature = "adversary")]
mod training;

#[cfg(feature = "adversary")]
pub use cheats::{Misbehave, RequesterMisbehave, configure};
#[cfg(feature = "adversary")]
pub(crate) use render::RenderCheat;
#[cfg(feature = "adversary")]
pub(crate) use training::TrainingCheat;

#[cfg(not(feature = "adversary"))]
mod honest;
#[cfg(not(feature = "adversary"))]
pub use honest::{Misbehave, RequesterMisbehave, configure};
#[cfg(not(feature = "adversary"))]
pub(crate) use honest::{RenderCheat, TrainingCheat};
