//! Orders, offers and bids: what requesters announce and providers answer.

use bytes::BufMut;
use cairn_wire::codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use cairn_wire::{ContentId, text};

/// The namespace requesters sign orders under.
pub const ORDER_NAMESPACE: &[u8] = b"cairn/order";
/// The namespace providers sign bids under.
pub const BID_NAMESPACE: &[u8] = b"cairn/bid";
/// The longest runtime name.
pub const RUNTIME_BYTES_MAX: usize = 32;
/// The most runtimes one offer lists.
pub const RUNTIMES_MAX: usize = 8;
/// The longest name of a CPU's instruction-set level.
pub const ISA_BYTES_MAX: usize = 16;

/// A requester's announcement of a job that needs providers: a reverse
/// auction in which providers bid down from `price_max_ucairn_per_gfuel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// The job (its escrow on the ledger has the same id).
    pub job: ContentId,
    /// The runtime every task needs: `"wasm"`, or an installed tool
    /// (`"ffmpeg@5.1"`, see [`cairn_wire::tool`]).
    pub runtime: String,
    /// The program.
    pub module: ContentId,
    /// Its size, so a provider can tell how long fetching and compiling it
    /// will take before it bids.
    pub module_bytes: u64,
    /// Tasks still to place.
    pub tasks: u64,
    /// The most fuel one task may use.
    pub fuel_per_task_max: u64,
    /// Memory one task needs.
    pub memory_mib: u32,
    /// GPUs one task needs.
    pub gpus: u32,
    /// The highest price the requester accepts.
    pub price_max_ucairn_per_gfuel: u64,
    /// When the order was made (requester's clock, ms since the epoch).
    pub created_ms: u64,
    /// How long bids are collected.
    pub bid_window_ms: u32,
}

impl Order {
    /// The order's id: the digest of its canonical encoding.
    pub fn id(&self) -> ContentId {
        let mut buf = Vec::with_capacity(self.encode_size());
        self.write(&mut buf);
        ContentId::of(&buf)
    }

    /// The last moment a bid for this order is worth sending.
    pub fn bid_deadline_ms(&self) -> u64 {
        self.created_ms
            .saturating_add(u64::from(self.bid_window_ms))
    }
}

/// What a provider can run, per machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Runtimes it runs: `"wasm"`, and installed tools at their exact
    /// versions (`"ffmpeg@5.1.9"`).
    pub runtimes: Vec<String>,
    /// CPU cores it lends.
    pub cores: u32,
    /// Memory it lends.
    pub memory_mib: u32,
    /// GPUs it lends.
    pub gpus: u32,
    /// Its benchmark score: millions of fuel per second per core.
    pub score_mfuel_per_s: u32,
    /// The installed tools among `runtimes`, as they would run here.
    pub tools: Vec<ToolBuild>,
}

/// An installed tool as a provider runs it: what decides whether two of
/// its runs give the same bits. The same version built otherwise, or run
/// on another instruction-set level or thread count, may not (x264 with
/// two threads does not give the bytes it gives with one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolBuild {
    /// The runtime it serves (`ffmpeg@5.1.9`).
    pub runtime: String,
    /// BLAKE3 of its executable.
    pub binary: ContentId,
    /// The CPU's instruction-set level (`x86-64-v3`).
    pub isa: String,
    /// Threads a task of it may use.
    pub threads: u32,
}

impl ToolBuild {
    /// Its id: the digest of its canonical encoding. Replicas of a tool
    /// job run on one build, so that their results compare bit for bit.
    pub fn id(&self) -> ContentId {
        let mut buf = Vec::with_capacity(self.encode_size());
        self.write(&mut buf);
        ContentId::of(&buf)
    }
}

impl Offer {
    /// The build of the tool this offer would run `runtime` (a tool
    /// request) with; `None` for Wasm, or a tool it does not describe.
    pub fn build_for(&self, runtime: &str) -> Option<ContentId> {
        self.tools
            .iter()
            .find(|tool| cairn_wire::tool::serves(&tool.runtime, runtime))
            .map(ToolBuild::id)
    }

    /// How many tasks of `order` fit at once, or why none does.
    pub fn slots_for(&self, order: &Order) -> Result<u32, Unfit> {
        if !self
            .runtimes
            .iter()
            .any(|offered| cairn_wire::tool::serves(offered, &order.runtime))
        {
            return Err(Unfit::Runtime(order.runtime.clone()));
        }
        if self.gpus < order.gpus {
            return Err(Unfit::Gpus {
                needed: order.gpus,
                offered: self.gpus,
            });
        }
        if self.memory_mib < order.memory_mib {
            return Err(Unfit::Memory {
                needed_mib: order.memory_mib,
                offered_mib: self.memory_mib,
            });
        }
        let by_memory = self
            .memory_mib
            .checked_div(order.memory_mib)
            .unwrap_or(u32::MAX);
        let by_gpus = self.gpus.checked_div(order.gpus).unwrap_or(u32::MAX);
        let slots = self.cores.min(by_memory).min(by_gpus);
        if slots == 0 {
            return Err(Unfit::NoCores);
        }
        Ok(slots)
    }
}

/// Why an offer cannot run an order's tasks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    /// The runtime is not offered.
    #[error("no provider offers runtime '{0}'")]
    Runtime(String),
    /// Too little memory for one task.
    #[error("a task needs {needed_mib} MiB of memory, the provider offers {offered_mib} MiB")]
    Memory {
        /// Per task.
        needed_mib: u32,
        /// In all.
        offered_mib: u32,
    },
    /// Too few GPUs for one task.
    #[error("a task needs {needed} GPUs, the provider offers {offered}")]
    Gpus {
        /// Per task.
        needed: u32,
        /// In all.
        offered: u32,
    },
    /// No cores offered.
    #[error("the provider offers no cores")]
    NoCores,
}

/// A provider's signed offer to work on an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bid {
    /// The order's id.
    pub order: ContentId,
    /// The price asked.
    pub price_ucairn_per_gfuel: u64,
    /// How many tasks it will run at once.
    pub slots: u32,
    /// How long, from the lease, until it can start the first task: its
    /// estimate of fetching and compiling the module (0 when it has it
    /// compiled already). The requester waits this long for its first pull
    /// before it treats the provider as gone.
    pub ready_in_ms: u32,
    /// What it has.
    pub offer: Offer,
}

// ---- canonical encoding ----

impl Write for Order {
    fn write(&self, buf: &mut impl BufMut) {
        self.job.write(buf);
        text::write(&self.runtime, buf);
        self.module.write(buf);
        self.module_bytes.write(buf);
        self.tasks.write(buf);
        self.fuel_per_task_max.write(buf);
        self.memory_mib.write(buf);
        self.gpus.write(buf);
        self.price_max_ucairn_per_gfuel.write(buf);
        self.created_ms.write(buf);
        self.bid_window_ms.write(buf);
    }
}

impl EncodeSize for Order {
    fn encode_size(&self) -> usize {
        self.job.encode_size()
            + text::encode_size(&self.runtime)
            + self.module.encode_size()
            + self.module_bytes.encode_size()
            + self.tasks.encode_size()
            + self.fuel_per_task_max.encode_size()
            + self.memory_mib.encode_size()
            + self.gpus.encode_size()
            + self.price_max_ucairn_per_gfuel.encode_size()
            + self.created_ms.encode_size()
            + self.bid_window_ms.encode_size()
    }
}

impl Read for Order {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            job: ContentId::read(buf)?,
            runtime: text::read_name(buf, RUNTIME_BYTES_MAX)?,
            module: ContentId::read(buf)?,
            module_bytes: u64::read(buf)?,
            tasks: u64::read(buf)?,
            fuel_per_task_max: u64::read(buf)?,
            memory_mib: u32::read(buf)?,
            gpus: u32::read(buf)?,
            price_max_ucairn_per_gfuel: u64::read(buf)?,
            created_ms: u64::read(buf)?,
            bid_window_ms: u32::read(buf)?,
        })
    }
}

impl Write for Offer {
    fn write(&self, buf: &mut impl BufMut) {
        (self.runtimes.len() as u8).write(buf);
        for runtime in &self.runtimes {
            text::write(runtime, buf);
        }
        self.cores.write(buf);
        self.memory_mib.write(buf);
        self.gpus.write(buf);
        self.score_mfuel_per_s.write(buf);
        (self.tools.len() as u8).write(buf);
        for tool in &self.tools {
            tool.write(buf);
        }
    }
}

impl EncodeSize for Offer {
    fn encode_size(&self) -> usize {
        1 + self
            .runtimes
            .iter()
            .map(|r| text::encode_size(r))
            .sum::<usize>()
            + 16
            + 1
            + self
                .tools
                .iter()
                .map(EncodeSize::encode_size)
                .sum::<usize>()
    }
}

impl Write for ToolBuild {
    fn write(&self, buf: &mut impl BufMut) {
        text::write(&self.runtime, buf);
        self.binary.write(buf);
        text::write(&self.isa, buf);
        self.threads.write(buf);
    }
}

impl EncodeSize for ToolBuild {
    fn encode_size(&self) -> usize {
        text::encode_size(&self.runtime)
            + self.binary.encode_size()
            + text::encode_size(&self.isa)
            + 4
    }
}

impl Read for ToolBuild {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            runtime: text::read_name(buf, RUNTIME_BYTES_MAX)?,
            binary: ContentId::read(buf)?,
            isa: text::read_name(buf, ISA_BYTES_MAX)?,
            threads: u32::read(buf)?,
        })
    }
}

impl Read for Offer {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let count = usize::from(u8::read(buf)?);
        if count > RUNTIMES_MAX {
            return Err(CodecError::InvalidLength(count));
        }
        let runtimes = (0..count)
            .map(|_| text::read_name(buf, RUNTIME_BYTES_MAX))
            .collect::<Result<_, _>>()?;
        let (cores, memory_mib, gpus, score_mfuel_per_s) = (
            u32::read(buf)?,
            u32::read(buf)?,
            u32::read(buf)?,
            u32::read(buf)?,
        );
        let count = usize::from(u8::read(buf)?);
        if count > RUNTIMES_MAX {
            return Err(CodecError::InvalidLength(count));
        }
        let tools = (0..count)
            .map(|_| ToolBuild::read(buf))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            runtimes,
            cores,
            memory_mib,
            gpus,
            score_mfuel_per_s,
            tools,
        })
    }
}

impl Write for Bid {
    fn write(&self, buf: &mut impl BufMut) {
        self.order.write(buf);
        self.price_ucairn_per_gfuel.write(buf);
        self.slots.write(buf);
        self.ready_in_ms.write(buf);
        self.offer.write(buf);
    }
}

impl EncodeSize for Bid {
    fn encode_size(&self) -> usize {
        self.order.encode_size()
            + self.price_ucairn_per_gfuel.encode_size()
            + self.slots.encode_size()
            + self.ready_in_ms.encode_size()
            + self.offer.encode_size()
    }
}

impl Read for Bid {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            order: ContentId::read(buf)?,
            price_ucairn_per_gfuel: u64::read(buf)?,
            slots: u32::read(buf)?,
            ready_in_ms: u32::read(buf)?,
            offer: Offer::read(buf)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use cairn_wire::codec::{DecodeExt as _, Encode as _};

    use super::*;

    fn ffmpeg(threads: u32) -> ToolBuild {
        ToolBuild {
            runtime: "ffmpeg@5.1.9".into(),
            binary: ContentId::of(b"/usr/bin/ffmpeg"),
            isa: "x86-64-v3".into(),
            threads,
        }
    }

    #[test]
    fn an_offer_carries_its_tool_builds_and_names_the_one_an_order_gets() {
        let offer = Offer {
            runtimes: vec!["wasm".into(), "ffmpeg@5.1.9".into()],
            cores: 4,
            memory_mib: 1024,
            gpus: 0,
            score_mfuel_per_s: 300,
            tools: vec![ffmpeg(1)],
        };
        let bytes = offer.encode();
        assert_eq!(bytes.len(), offer.encode_size());
        assert_eq!(Offer::decode(bytes).unwrap(), offer);
        assert_eq!(offer.build_for("ffmpeg@5"), Some(ffmpeg(1).id()));
        assert_eq!(offer.build_for("wasm"), None);
        assert_eq!(offer.build_for("blender"), None);
        assert_ne!(ffmpeg(1).id(), ffmpeg(2).id(), "threads change the bits");
        // Bounded like the runtimes: at most RUNTIMES_MAX, short names.
        let mut crowded = offer.clone();
        crowded.tools = vec![ffmpeg(1); RUNTIMES_MAX + 1];
        assert!(Offer::decode(crowded.encode()).is_err());
        let mut long = offer;
        long.tools[0].isa = "x".repeat(ISA_BYTES_MAX + 1);
        assert!(Offer::decode(long.encode()).is_err());
    }
}
