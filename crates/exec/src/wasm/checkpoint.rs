//! Checkpoints of a running task, for disputes.
//!
//! A guest may split its work into steps by exporting `cairn_step: () ->
//! i32`: the runtime calls `_start`, then `cairn_step` until it returns 0.
//! Between calls the guest's stack is empty, so its whole state is its
//! linear memory, its globals, what it has written (stdout, stderr, files
//! under `/output`), the fuel it has used, and the host state it has moved
//! (the virtual clocks, the random streams' positions, the write budgets).
//! A [`Snapshot`](crate::Snapshot) holds all of that (its codec is in
//! `crate::snapshot`); its [`StateHash`] is what disputing providers
//! compare, and a referee restores one snapshot and runs one step from it
//! instead of the whole task.
//!
//! Rules for checkpointable guests (Rust guests keep them without trying):
//! no file stays open across a step, and tables are not changed after
//! start-up. A guest without `cairn_step` is one step long: a dispute over
//! it makes the referee run it whole.
//!
//! Globals are not visible to the host unless exported, so every module is
//! rewritten at load to export each global as `cairn:global:<index>`; the
//! rewrite adds exports only and changes neither behaviour nor fuel.

use cairn_wire::ContentId;
use wasm_encoder::reencode::{Error, Reencode, RoundtripReencoder, utils};
use wasm_encoder::{ExportKind, ExportSection, Module};
use wasmparser::{Parser, Payload};

use crate::snapshot::StateHash;

/// The export a checkpointable guest provides: one step of work; returns 0
/// when the task is done.
pub const STEP_EXPORT: &str = "cairn_step";

/// The prefix of the exports the rewrite adds for globals.
pub(crate) const GLOBAL_EXPORT_PREFIX: &str = "cairn:global:";

/// Adds an export for every global of `wasm`.
pub(crate) fn export_globals(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut globals = 0u32;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    let import = import.map_err(|e| e.to_string())?;
                    globals += u32::from(matches!(import.ty, wasmparser::TypeRef::Global(_)));
                }
            }
            Payload::GlobalSection(section) => globals += section.count(),
            _ => {}
        }
    }
    let mut module = Module::new();
    let mut pass = ExportPass { globals };
    pass.parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| format!("{e:?}"))?;
    Ok(module.finish())
}

struct ExportPass {
    globals: u32,
}

impl Reencode for ExportPass {
    type Error = std::convert::Infallible;

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        utils::parse_export_section(&mut RoundtripReencoder, exports, section)?;
        for index in 0..self.globals {
            exports.export(
                &format!("{GLOBAL_EXPORT_PREFIX}{index}"),
                ExportKind::Global,
                index,
            );
        }
        Ok(())
    }
}

/// A task's execution as the positions a dispute bisects over: position 0
/// is the task itself, positions `1..=states.len()` the states after
/// start-up and after each step, and the last position the result digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The state hash at positions `1..=states.len()`.
    pub states: Vec<StateHash>,
    /// The fuel used at each of those states.
    pub fuel: Vec<u64>,
    /// The result digest (the last position).
    pub digest: ContentId,
}

impl Trace {
    /// How many positions the trace has (the task, the states, the digest).
    pub fn positions(&self) -> u64 {
        self.states.len() as u64 + 2
    }

    /// The trace as bytes, for keeping it across restarts: the state
    /// count, the states, their fuel, the digest.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.states.len() * 40 + 32);
        out.extend_from_slice(&(self.states.len() as u64).to_be_bytes());
        for state in &self.states {
            out.extend_from_slice(state);
        }
        for fuel in &self.fuel {
            out.extend_from_slice(&fuel.to_be_bytes());
        }
        out.extend_from_slice(self.digest.as_bytes());
        out
    }

    /// A trace from [`Trace::to_bytes`], or `None` if the bytes are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (count, rest) = bytes.split_first_chunk::<8>()?;
        let count = usize::try_from(u64::from_be_bytes(*count)).ok()?;
        if rest.len() != count.checked_mul(40)?.checked_add(32)? {
            return None;
        }
        let (states, rest) = rest.split_at(count * 32);
        let (fuel, digest) = rest.split_at(count * 8);
        Some(Self {
            states: states
                .chunks_exact(32)
                .map(|c| c.try_into().expect("32 bytes"))
                .collect(),
            fuel: fuel
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            digest: ContentId::from_digest(digest.try_into().ok()?),
        })
    }

    /// The hash at `position`; `None` at 0 (the task) or past the end.
    pub fn hash_at(&self, position: u64) -> Option<StateHash> {
        let last = self.positions() - 1;
        match position {
            0 => None,
            p if p == last => Some(*self.digest.as_bytes()),
            p if p < last => Some(self.states[p as usize - 1]),
            _ => None,
        }
    }
}

/// What a referee computed for one transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The hash of the next position.
    pub hash: StateHash,
    /// Fuel the referee spent executing it (0 when the next position is
    /// the digest of a halted state).
    pub fuel_executed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_trace_reads_back_the_same_and_a_damaged_one_does_not() {
        let trace = Trace {
            states: vec![[1; 32], [2; 32], [3; 32]],
            fuel: vec![10, 20, 30],
            digest: ContentId::of(b"result"),
        };
        let bytes = trace.to_bytes();
        assert_eq!(Trace::from_bytes(&bytes), Some(trace.clone()));
        assert_eq!(Trace::from_bytes(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Trace::from_bytes(&longer), None);
        let mut huge = bytes;
        huge[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(Trace::from_bytes(&huge), None, "a count that overflows");
        let empty = Trace {
            states: Vec::new(),
            fuel: Vec::new(),
            digest: ContentId::of(b""),
        };
        assert_eq!(Trace::from_bytes(&empty.to_bytes()), Some(empty));
    }
}
