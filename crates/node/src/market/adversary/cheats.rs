//! The cheats, by name, and what each does to the provider's or the
//! requester's part.

use std::path::Path;

use cairn_ledger::{ACCEPTANCE_NAMESPACE, Acceptance, COMMIT_NAMESPACE, Commit};
use cairn_wire::{ContentId, Keypair, Signed};

use super::RenderCheat;
use crate::market::MarketConfig;
use crate::market::proto::Report;

/// How a provider built to test verification cheats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {
    /// Returns a wrong result for every task, consistently (another first
    /// output, or stdout, with the digest of that manifest), and defends
    /// it in disputes with its honest trace ending in its lie.
    Liar,
    /// Lies like a liar, and answers every dispute question that it is
    /// still preparing its answer, for ever.
    Stonewaller,
    /// Commits to every result and never reveals one.
    Staller,
    /// Adds, to every pull, a signed commitment and a failure for a task
    /// past the job's end (tests of the requester's input checks).
    IndexOverflower,
    /// Signs the honest digest but delivers another file as its first
    /// output (what `cairn job results` would write).
    OutputSubstituter,
    /// Signs the honest digest with a receipt claiming all the task's fuel.
    FuelInflater,
    /// Rents out training (`cairn:train`) and drops the weight update of
    /// every fourth step, keeping the step count and the loss curve.
    StepSkipper,
    /// Trains on other text from the third step on, while the commitments
    /// name the data it was given.
    DataSwapper,
    /// Trains to half-way, then delivers those weights with the rest of the
    /// loss curve and the commitments made up.
    EarlyStopper,
    /// Nudges weights by one unit in the last place before the last step.
    WeightNudger,
    /// Renders Blender frames with a quarter of the samples the job's
    /// script sets.
    LazyRenderer,
    /// Renders the next Blender frame and delivers it as the one asked for.
    FrameSwapper,
    /// Paints over a corner of every Blender frame it delivers.
    RegionPainter,
}

/// How a requester built to test the providers' defences cheats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequesterMisbehave {
    /// Challenges honest commits on the ledger without cause (the first
    /// [`FRAMED_COMMITS_MAX`](crate::market::requester::FRAMED_COMMITS_MAX)
    /// it receives), and posts them as withheld once the reveal window has
    /// passed.
    Framer,
    /// Takes every result and never settles: closes the job's escrow for
    /// its budget back instead.
    Withholder,
    /// Never settles either, and for each acceptance it hands a provider
    /// signs a second one of the same results at no fuel and claims it on
    /// the ledger first, meaning to have them paid nothing.
    Underpayer,
    /// Exits its process once it has stored a case against a cheat, before
    /// it asks any validator: the crash a stored case must survive.
    CaseCrasher,
}

/// Makes `config`'s node cheat as `name` (one of [`super::NAMES`]). A
/// provider's cheat needs the provider role configured first.
pub fn configure(config: &mut MarketConfig, name: &str) -> Result<(), String> {
    let requester = match name {
        "framer" => Some(RequesterMisbehave::Framer),
        "withholder" => Some(RequesterMisbehave::Withholder),
        "underpayer" => Some(RequesterMisbehave::Underpayer),
        "case-crasher" => Some(RequesterMisbehave::CaseCrasher),
        _ => None,
    };
    if requester.is_some() {
        config.requester_misbehave = requester;
        tracing::warn!("this requester cheats on purpose ({name}): a build for tests");
        return Ok(());
    }
    let provider = match name {
        "liar" => Misbehave::Liar,
        "stonewaller" => Misbehave::Stonewaller,
        "staller" => Misbehave::Staller,
        "index-overflower" => Misbehave::IndexOverflower,
        "output-substituter" => Misbehave::OutputSubstituter,
        "fuel-inflater" => Misbehave::FuelInflater,
        "step-skipper" => Misbehave::StepSkipper,
        "data-swapper" => Misbehave::DataSwapper,
        "early-stopper" => Misbehave::EarlyStopper,
        "weight-nudger" => Misbehave::WeightNudger,
        "lazy-renderer" => Misbehave::LazyRenderer,
        "frame-swapper" => Misbehave::FrameSwapper,
        "region-painter" => Misbehave::RegionPainter,
        _ => return Err(format!("no such misbehaviour: '{name}'")),
    };
    let Some(role) = config.provider.as_mut() else {
        return Err(format!(
            "'{name}' is a provider's misbehaviour: the node must provide"
        ));
    };
    role.misbehave = Some(provider);
    tracing::warn!("this provider cheats on purpose ({name}): a build for tests");
    Ok(())
}

impl Misbehave {
    /// Commits and never reveals, on the ledger either.
    pub(crate) fn withholds_reveals(self) -> bool {
        self == Self::Staller
    }

    /// Answers every dispute question that it is still preparing.
    pub(crate) fn stonewalls(self) -> bool {
        self == Self::Stonewaller
    }

    /// Signs its lie in a dispute, though its trace says otherwise.
    pub(crate) fn stands_by_its_lie(self) -> bool {
        self == Self::Liar
    }

    /// What it adds to a pull under `lease`, signed with `key`: for the
    /// index overflower, a commitment and a failure for a task past the
    /// job's end.
    pub(crate) fn extra_reports(self, key: &Keypair, lease: ContentId) -> Vec<Report> {
        if self != Self::IndexOverflower {
            return Vec::new();
        }
        let task = u32::MAX - 1;
        let commit = Commit {
            lease,
            task: u64::from(task),
            commitment: [7; 32],
        };
        vec![
            Report::Committed(Signed::sign(key, COMMIT_NAMESPACE, commit)),
            Report::Failed {
                task,
                reason: "overflow".into(),
            },
        ]
    }

    /// Tampers with a task's `result` in `output_dir` after the run: a
    /// liar's other output, a substituter's other file under the honest
    /// digest, a painter's painted frames (`render`), an inflater's fuel
    /// (all `fuel_max`). A lie is consistent: the digest is the manifest's
    /// of what it delivers, so only replicas and a dispute can tell it is
    /// wrong.
    pub(crate) fn tamper(
        self,
        render: Option<RenderCheat>,
        output_dir: &Path,
        result: &mut cairn_exec::TaskResult,
        tool_task: bool,
        fuel_max: u64,
    ) -> Result<(), String> {
        let lies = matches!(self, Self::Liar | Self::Stonewaller);
        if (lies || self == Self::OutputSubstituter)
            && let Some(first) = result.outputs.first_mut()
        {
            let other = b"not what the task wrote";
            std::fs::write(output_dir.join(&first.path), other).ok();
            first.id = ContentId::of(other);
            first.size_bytes = other.len() as u64;
        }
        let painted = match render {
            Some(cheat) => cheat
                .paint(output_dir, &mut result.outputs)
                .map_err(|e| format!("painting: {e}"))?,
            None => false,
        };
        if lies || painted {
            if result.outputs.is_empty() {
                result.stdout.extend_from_slice(b"a lie\n");
            }
            // A tool's log is not part of its result: the manifest binds
            // empty streams, as the runtime's own does.
            let stream = |bytes: &[u8]| match tool_task {
                true => ContentId::of(b""),
                false => ContentId::of(bytes),
            };
            result.digest = cairn_exec::Manifest {
                outcome: result.outcome.clone(),
                fuel_used: result.fuel_used,
                stdout: stream(&result.stdout),
                stderr: stream(&result.stderr),
                outputs: result.outputs.clone(),
            }
            .digest();
        }
        if self == Self::FuelInflater {
            result.fuel_used = fuel_max;
        }
        Ok(())
    }
}

impl RequesterMisbehave {
    /// Never settles, and closes the escrow instead.
    pub(crate) fn withholds(self) -> bool {
        matches!(self, Self::Withholder | Self::Underpayer)
    }

    /// An underpayer's second acceptance of what `accepted` names, at no
    /// fuel, signed with `key`, to claim before the provider claims the
    /// first.
    pub(crate) fn shortchange(
        self,
        key: &Keypair,
        accepted: &Signed<Acceptance>,
    ) -> Option<Signed<Acceptance>> {
        (self == Self::Underpayer).then(|| {
            let mut smaller = accepted.payload_unchecked().clone();
            for result in &mut smaller.results {
                result.fuel_used = 0;
            }
            Signed::sign(key, ACCEPTANCE_NAMESPACE, smaller)
        })
    }

    /// Challenges honest commits without cause.
    pub(crate) fn frames(self) -> bool {
        self == Self::Framer
    }

    /// Exits once a case is stored, before a validator is asked.
    pub(crate) fn crashes_with_a_case(self) -> bool {
        self == Self::CaseCrasher
    }
}
