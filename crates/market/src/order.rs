//! Orders, offers and bids: what requesters announce and providers answer.

use bytes::BufMut;
use cairn_wire::codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use cairn_wire::{ContentId, PublicKey, text};

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
/// The longest GPU model name (`NVIDIA GeForce RTX 4090`).
pub const GPU_MODEL_BYTES_MAX: usize = 48;
/// The longest list of a tool's GPU backends (`CUDA+OPTIX`).
pub const GPU_BACKENDS_BYTES_MAX: usize = 16;
/// The longest GPU driver version (`550.54.15`).
pub const GPU_DRIVER_BYTES_MAX: usize = 16;
/// An order's draw that asks every provider, in parts per million.
pub const DRAW_ALL: u32 = 1_000_000;
/// The domain of the lot that draws a provider for an order.
const DRAW_NAMESPACE: &[u8] = b"cairn/draw";

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
    /// Memory each of them must have, MiB (0: any).
    pub gpu_memory_mib: u32,
    /// The highest price the requester accepts.
    pub price_max_ucairn_per_gfuel: u64,
    /// When the order was made (requester's clock, ms since the epoch).
    pub created_ms: u64,
    /// How long bids are collected.
    pub bid_window_ms: u32,
    /// The share of providers asked to bid, in parts per million (1 to
    /// [`DRAW_ALL`]): a provider bids only if the lot of the order's id
    /// and its key falls under it ([`drawn`]). Gossip takes every order to
    /// every provider; without a draw, each would sign and send a bid, and
    /// a requester on a network of 100,000 would check 100,000 bids for a
    /// job that needs a hundred providers. The lot cannot be chosen by
    /// either side once the order is signed, and a requester refuses a bid
    /// from a provider not drawn before checking its signature.
    pub draw_ppm: u32,
}

/// Whether `provider` is drawn to bid on the order with id `order` that
/// asks `draw_ppm` parts per million of providers.
pub fn drawn(order: &ContentId, draw_ppm: u32, provider: &PublicKey) -> bool {
    if draw_ppm >= DRAW_ALL {
        return true;
    }
    // Every provider hears every order and draws for it: no allocation.
    const AT: usize = DRAW_NAMESPACE.len();
    let mut lot = [0; AT + 64];
    lot[..AT].copy_from_slice(DRAW_NAMESPACE);
    lot[AT..AT + 32].copy_from_slice(order.as_bytes());
    lot[AT + 32..].copy_from_slice(provider.as_bytes());
    let digest = ContentId::of(&lot);
    let mut head = [0; 8];
    head.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_le_bytes(head) % u64::from(DRAW_ALL) < u64::from(draw_ppm)
}

/// The draw that asks about `bidders` of the `known` providers able to
/// bid (`known` 0: not known, every one is asked).
pub fn draw_ppm(bidders: u64, known: u64) -> u32 {
    if known == 0 || bidders >= known {
        return DRAW_ALL;
    }
    let ppm = u128::from(bidders) * u128::from(DRAW_ALL);
    // Rounded up, and at least one in a million: a draw never asks no one.
    ppm.div_ceil(u128::from(known))
        .clamp(1, u128::from(DRAW_ALL)) as u32
}

impl Order {
    /// The order's id: the digest of its canonical encoding.
    pub fn id(&self) -> ContentId {
        let mut buf = Vec::with_capacity(self.encode_size());
        self.write(&mut buf);
        ContentId::of(&buf)
    }

    /// Whether `provider` is drawn to bid on this order ([`drawn`]).
    pub fn draws(&self, provider: &PublicKey) -> bool {
        drawn(&self.id(), self.draw_ppm, provider)
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
    /// GPUs it lends, all of one model.
    pub gpus: u32,
    /// Their model (`NVIDIA H200`); empty without GPUs.
    pub gpu_model: String,
    /// The least memory any of them has, MiB (0: unknown).
    pub gpu_memory_mib: u32,
    /// Their driver's version (`550.54.15`); empty if unknown.
    pub gpu_driver: String,
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
    /// The GPU backends it can use with the offer's GPUs (`CUDA+OPTIX`);
    /// empty if none.
    pub gpu: String,
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
    /// The build of the tool this offer would run `order`'s tasks with;
    /// `None` for Wasm, or a tool it does not describe. A task on a GPU
    /// runs on the GPU's model and driver too: another model may give
    /// other bits (as another CPU's instruction-set level may), and the
    /// driver compiles the GPU code, so the build of a GPU order names
    /// both; a CPU order's does not, and the GPU backends a tool has do
    /// not change what it does on a CPU.
    pub fn build_for(&self, order: &Order) -> Option<ContentId> {
        let tool = self
            .tools
            .iter()
            .find(|tool| cairn_wire::tool::serves(&tool.runtime, &order.runtime))?;
        if order.gpus == 0 {
            return Some(
                ToolBuild {
                    gpu: String::new(),
                    ..tool.clone()
                }
                .id(),
            );
        }
        let mut buf = Vec::new();
        tool.write(&mut buf);
        text::write(&self.gpu_model, &mut buf);
        text::write(&self.gpu_driver, &mut buf);
        Some(ContentId::of(&buf))
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
        if order.gpus > 0 {
            if self.gpu_memory_mib < order.gpu_memory_mib {
                return Err(Unfit::GpuMemory {
                    needed_mib: order.gpu_memory_mib,
                    offered_mib: self.gpu_memory_mib,
                });
            }
            // A tool that cannot use the GPUs would run the task on the
            // CPU, or fail: either is not what the job asked for.
            let usable = self.tools.iter().any(|tool| {
                cairn_wire::tool::serves(&tool.runtime, &order.runtime) && !tool.gpu.is_empty()
            });
            if !usable {
                return Err(Unfit::ToolWithoutGpu(order.runtime.clone()));
            }
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
    /// Too little memory on each GPU.
    #[error("a task needs GPUs of {needed_mib} MiB, the provider's have {offered_mib} MiB")]
    GpuMemory {
        /// Per GPU, asked.
        needed_mib: u32,
        /// Per GPU, the least the provider's have (0: unknown).
        offered_mib: u32,
    },
    /// The tool cannot use the provider's GPUs.
    #[error("the provider's {0} cannot use its GPUs")]
    ToolWithoutGpu(String),
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
        self.gpu_memory_mib.write(buf);
        self.price_max_ucairn_per_gfuel.write(buf);
        self.created_ms.write(buf);
        self.bid_window_ms.write(buf);
        self.draw_ppm.write(buf);
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
            + self.gpu_memory_mib.encode_size()
            + self.price_max_ucairn_per_gfuel.encode_size()
            + self.created_ms.encode_size()
            + self.bid_window_ms.encode_size()
            + self.draw_ppm.encode_size()
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
            gpu_memory_mib: u32::read(buf)?,
            price_max_ucairn_per_gfuel: u64::read(buf)?,
            created_ms: u64::read(buf)?,
            bid_window_ms: u32::read(buf)?,
            draw_ppm: match u32::read(buf)? {
                0 => return Err(CodecError::Invalid("order", "a draw that asks no one")),
                ppm if ppm > DRAW_ALL => {
                    return Err(CodecError::Invalid(
                        "order",
                        "a draw over a million per million",
                    ));
                }
                ppm => ppm,
            },
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
        text::write(&self.gpu_model, buf);
        self.gpu_memory_mib.write(buf);
        text::write(&self.gpu_driver, buf);
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
            + text::encode_size(&self.gpu_model)
            + 4
            + text::encode_size(&self.gpu_driver)
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
        text::write(&self.gpu, buf);
    }
}

impl EncodeSize for ToolBuild {
    fn encode_size(&self) -> usize {
        text::encode_size(&self.runtime)
            + self.binary.encode_size()
            + text::encode_size(&self.isa)
            + 4
            + text::encode_size(&self.gpu)
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
            gpu: text::read_name(buf, GPU_BACKENDS_BYTES_MAX)?,
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
        let (cores, memory_mib, gpus) = (u32::read(buf)?, u32::read(buf)?, u32::read(buf)?);
        let gpu_model = text::read_label(buf, GPU_MODEL_BYTES_MAX)?;
        let gpu_memory_mib = u32::read(buf)?;
        let gpu_driver = text::read_name(buf, GPU_DRIVER_BYTES_MAX)?;
        if (gpus == 0) != gpu_model.is_empty() {
            return Err(CodecError::Invalid(
                "offer.gpu_model",
                "GPUs without a model, or a model without GPUs",
            ));
        }
        let score_mfuel_per_s = u32::read(buf)?;
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
            gpu_model,
            gpu_memory_mib,
            gpu_driver,
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
            gpu: String::new(),
        }
    }

    fn order(runtime: &str, gpus: u32, gpu_memory_mib: u32) -> Order {
        Order {
            job: ContentId::of(b"job"),
            runtime: runtime.into(),
            module: ContentId::of(runtime.as_bytes()),
            module_bytes: runtime.len() as u64,
            tasks: 4,
            fuel_per_task_max: 1_000,
            memory_mib: 256,
            gpus,
            gpu_memory_mib,
            price_max_ucairn_per_gfuel: 100,
            created_ms: 0,
            bid_window_ms: 100,
            draw_ppm: DRAW_ALL,
        }
    }

    fn key(i: u32) -> PublicKey {
        let mut seed = [0; 32];
        seed[..4].copy_from_slice(&i.to_le_bytes());
        cairn_wire::Keypair::from_seed(seed).public()
    }

    #[test]
    fn a_draw_asks_its_share_of_providers_and_each_order_asks_others() {
        let mut one = order("wasm", 0, 0);
        one.draw_ppm = 100_000;
        let mut other = one.clone();
        other.created_ms = 1;
        let keys: Vec<PublicKey> = (0..20_000).map(key).collect();
        let drawn_by = |o: &Order| -> Vec<bool> { keys.iter().map(|k| o.draws(k)).collect() };
        let (a, b) = (drawn_by(&one), drawn_by(&other));
        let count = |v: &[bool]| v.iter().filter(|d| **d).count();
        // 2,000 expected; a fair lot is within 5 standard deviations (42).
        for drawn in [count(&a), count(&b)] {
            assert!(
                (1_790..=2_210).contains(&drawn),
                "{drawn} of 20,000 drawn at 10%"
            );
        }
        // Another order draws others: about 10% of one draw is in the other.
        let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count();
        assert!((100..=320).contains(&both), "{both} drawn by both orders");
        // A draw of all asks everyone.
        one.draw_ppm = DRAW_ALL;
        assert_eq!(count(&drawn_by(&one)), keys.len());
    }

    #[test]
    fn a_draw_asks_the_bidders_wanted_and_never_no_one() {
        assert_eq!(draw_ppm(100, 0), DRAW_ALL, "network size not known");
        assert_eq!(draw_ppm(100, 100), DRAW_ALL);
        assert_eq!(draw_ppm(500, 100), DRAW_ALL);
        assert_eq!(draw_ppm(1_000, 100_000), 10_000);
        assert_eq!(draw_ppm(1, 3), 333_334, "rounded up");
        assert_eq!(draw_ppm(0, 100), 1);
        assert_eq!(draw_ppm(1, u64::MAX), 1);
    }

    #[test]
    fn an_order_with_a_draw_of_none_or_over_all_is_refused() {
        let mut o = order("wasm", 0, 0);
        o.draw_ppm = 250_000;
        let bytes = o.encode();
        assert_eq!(bytes.len(), o.encode_size());
        assert_eq!(Order::decode(bytes).unwrap(), o);
        for ppm in [0, DRAW_ALL + 1, u32::MAX] {
            o.draw_ppm = ppm;
            assert!(Order::decode(o.encode()).is_err(), "draw of {ppm} decoded");
        }
    }

    #[test]
    fn an_offer_carries_its_tool_builds_and_names_the_one_an_order_gets() {
        let offer = Offer {
            runtimes: vec!["wasm".into(), "ffmpeg@5.1.9".into()],
            cores: 4,
            memory_mib: 1024,
            gpus: 0,
            gpu_model: String::new(),
            gpu_memory_mib: 0,
            score_mfuel_per_s: 300,
            tools: vec![ffmpeg(1)],
            gpu_driver: String::new(),
        };
        let bytes = offer.encode();
        assert_eq!(bytes.len(), offer.encode_size());
        assert_eq!(Offer::decode(bytes).unwrap(), offer);
        assert_eq!(
            offer.build_for(&order("ffmpeg@5", 0, 0)),
            Some(ffmpeg(1).id())
        );
        assert_eq!(offer.build_for(&order("wasm", 0, 0)), None);
        assert_eq!(offer.build_for(&order("blender", 0, 0)), None);
        assert_ne!(ffmpeg(1).id(), ffmpeg(2).id(), "threads change the bits");
        // Bounded like the runtimes: at most RUNTIMES_MAX, short names.
        let mut crowded = offer.clone();
        crowded.tools = vec![ffmpeg(1); RUNTIMES_MAX + 1];
        assert!(Offer::decode(crowded.encode()).is_err());
        let mut long = offer;
        long.tools[0].isa = "x".repeat(ISA_BYTES_MAX + 1);
        assert!(Offer::decode(long.encode()).is_err());
    }

    fn gpu_offer(model: &str, memory_mib: u32, backends: &str) -> Offer {
        let mut blender = ffmpeg(1);
        blender.runtime = "blender@3.4.1".into();
        blender.gpu = backends.into();
        Offer {
            runtimes: vec!["wasm".into(), "blender@3.4.1".into()],
            cores: 16,
            memory_mib: 65_536,
            gpus: 2,
            gpu_model: model.into(),
            gpu_memory_mib: memory_mib,
            gpu_driver: "550.54.15".into(),
            score_mfuel_per_s: 300,
            tools: vec![blender],
        }
    }

    #[test]
    fn a_gpu_order_fits_only_gpus_its_tool_can_use_with_the_memory_it_asks() {
        let offer = gpu_offer("NVIDIA H200", 143_771, "CUDA");
        assert_eq!(Offer::decode(offer.encode()).unwrap(), offer);
        assert_eq!(
            offer.slots_for(&order("blender@3", 1, 80_000)),
            Ok(2),
            "a task a GPU"
        );
        assert_eq!(offer.slots_for(&order("blender@3", 2, 0)), Ok(1));
        assert_eq!(
            offer.slots_for(&order("blender@3", 3, 0)),
            Err(Unfit::Gpus {
                needed: 3,
                offered: 2
            })
        );
        assert_eq!(
            offer.slots_for(&order("blender@3", 1, 200_000)),
            Err(Unfit::GpuMemory {
                needed_mib: 200_000,
                offered_mib: 143_771
            })
        );
        let cpu_only = gpu_offer("NVIDIA H200", 143_771, "");
        assert_eq!(
            cpu_only.slots_for(&order("blender@3", 1, 0)),
            Err(Unfit::ToolWithoutGpu("blender@3".into())),
            "a Blender that found no GPU device would render on the CPU"
        );
        assert_eq!(cpu_only.slots_for(&order("blender@3", 0, 0)), Ok(16));
        let none = Offer {
            gpus: 0,
            gpu_model: String::new(),
            ..offer.clone()
        };
        assert_eq!(
            none.slots_for(&order("blender@3", 1, 0)),
            Err(Unfit::Gpus {
                needed: 1,
                offered: 0
            })
        );
    }

    #[test]
    fn a_gpu_orders_build_names_the_gpu_model_and_a_cpu_orders_does_not() {
        let h200 = gpu_offer("NVIDIA H200", 143_771, "CUDA");
        let rtx = gpu_offer("NVIDIA GeForce RTX 4090", 24_564, "CUDA+OPTIX");
        let no_gpu = Offer {
            gpus: 0,
            gpu_model: String::new(),
            gpu_memory_mib: 0,
            tools: vec![ToolBuild {
                gpu: String::new(),
                ..h200.tools[0].clone()
            }],
            ..h200.clone()
        };
        let (cpu, gpu) = (order("blender@3", 0, 0), order("blender@3", 1, 0));
        // On the CPU the three run the same build: their GPUs change nothing.
        assert_eq!(h200.build_for(&cpu), rtx.build_for(&cpu));
        assert_eq!(h200.build_for(&cpu), no_gpu.build_for(&cpu));
        // On a GPU, each model is a build of its own.
        assert_ne!(h200.build_for(&gpu), rtx.build_for(&gpu));
        assert_ne!(h200.build_for(&gpu), h200.build_for(&cpu));
        let other_h200 = gpu_offer("NVIDIA H200", 80_000, "CUDA");
        assert_eq!(h200.build_for(&gpu), other_h200.build_for(&gpu));
        let other_driver = Offer {
            gpu_driver: "535.183.01".into(),
            ..other_h200
        };
        assert_ne!(h200.build_for(&gpu), other_driver.build_for(&gpu));
        assert_eq!(h200.build_for(&cpu), other_driver.build_for(&cpu));
        // GPUs and their model come together.
        for (gpus, model) in [(2, ""), (0, "NVIDIA H200")] {
            let inconsistent = Offer {
                gpus,
                gpu_model: model.into(),
                ..h200.clone()
            };
            assert!(
                Offer::decode(inconsistent.encode()).is_err(),
                "{gpus} {model:?}"
            );
        }
        // A model name is words of printable ASCII, and short.
        let mut long = h200.clone();
        long.gpu_model = "X".repeat(GPU_MODEL_BYTES_MAX + 1);
        assert!(Offer::decode(long.encode()).is_err());
        let mut escape = h200;
        escape.gpu_model = "NVIDIA\u{1b}[2J".into();
        assert!(Offer::decode(escape.encode()).is_err());
    }
}
