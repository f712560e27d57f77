//! NaN canonicalisation where NaN bits become observable.
//!
//! WebAssembly leaves the bits of a NaN produced by arithmetic to the CPU:
//! x86 makes 0/0 a negative NaN, ARM a positive one. Everything else about
//! floats is exact, and whether a value *is* NaN is the same everywhere. So a
//! NaN's bits can only make two machines disagree where a program looks at
//! them. For scalars that is at exactly five instructions:
//!
//! - `f32.store` / `f64.store` (the bits reach memory),
//! - `i32.reinterpret_f32` / `i64.reinterpret_f64` (the bits become an integer),
//! - `f32.copysign` / `f64.copysign` (the sign operand's sign bit reaches a result),
//! - `f32x4.splat` / `f64x2.splat` and `*.replace_lane` (a scalar enters a vector).
//!
//! This pass rewrites a module so that the value reaching each of those is
//! canonical (`0x7fc00000` / `0x7ff8000000000000`), unless the instruction
//! just before pushed bits that are already the same everywhere (a load, a
//! constant, a conversion from an integer): memory only ever receives
//! canonical or integer-made bits, so copying a float through memory needs
//! no check. Vector registers have no
//! type, so their observation points are everywhere; vector float operations
//! that can create a NaN are instead canonicalised where they produce one.
//!
//! Cranelift can canonicalise after every float operation instead, but that
//! puts a compare and a select on the critical path of all float code and
//! makes float-heavy guests (the path tracer) about 1.9x slower; checking at
//! observation points costs a few percent. The one behaviour given up: a NaN
//! whose payload a program carries through an `f32`/`f64` store (rather than
//! through integer loads and stores) arrives canonical.
//!
//! The rewrite is deterministic and part of the runtime's version: it adds
//! instructions, so it changes the fuel a task uses.

use wasm_encoder::reencode::{Error, Reencode, utils};
use wasm_encoder::{CodeSection, Function, Ieee32, Ieee64, Instruction, Module, ValType};
use wasmparser::{FunctionBody, Operator, Parser, Payload};

/// Where an operator needs a canonical value.
enum Site {
    /// Canonicalise the scalar on top of the stack before the operator.
    Before(ValType),
    /// Canonicalise the vector the operator produces, with lanes of this type.
    After(ValType),
}

fn site(op: &Operator<'_>) -> Option<Site> {
    use Operator::*;
    Some(match op {
        F32Store { .. }
        | I32ReinterpretF32
        | F32Copysign
        | F32x4Splat
        | F32x4ReplaceLane { .. } => Site::Before(ValType::F32),
        F64Store { .. }
        | I64ReinterpretF64
        | F64Copysign
        | F64x2Splat
        | F64x2ReplaceLane { .. } => Site::Before(ValType::F64),
        F32x4Add | F32x4Sub | F32x4Mul | F32x4Div | F32x4Min | F32x4Max | F32x4Sqrt | F32x4Ceil
        | F32x4Floor | F32x4Trunc | F32x4Nearest | F32x4DemoteF64x2Zero | F32x4RelaxedMadd
        | F32x4RelaxedNmadd | F32x4RelaxedMin | F32x4RelaxedMax => Site::After(ValType::F32),
        F64x2Add | F64x2Sub | F64x2Mul | F64x2Div | F64x2Min | F64x2Max | F64x2Sqrt | F64x2Ceil
        | F64x2Floor | F64x2Trunc | F64x2Nearest | F64x2PromoteLowF32x4 | F64x2RelaxedMadd
        | F64x2RelaxedNmadd | F64x2RelaxedMin | F64x2RelaxedMax => Site::After(ValType::F64),
        _ => return None,
    })
}

/// Whether `op` pushes a float whose bits cannot differ between machines:
/// a load (memory only ever receives canonical or integer-made bits), a
/// constant, or a conversion from an integer. Such a value needs no
/// canonicalising before a store.
fn pushes_exact_float(op: &Operator<'_>) -> bool {
    use Operator::*;
    matches!(
        op,
        F32Load { .. }
            | F64Load { .. }
            | F32Const { .. }
            | F64Const { .. }
            | F32ReinterpretI32
            | F64ReinterpretI64
            | F32ConvertI32S
            | F32ConvertI32U
            | F32ConvertI64S
            | F32ConvertI64U
            | F64ConvertI32S
            | F64ConvertI32U
            | F64ConvertI64S
            | F64ConvertI64U
    )
}

/// Rewrites `wasm` as described in the module documentation.
pub(crate) fn canonicalize_nans(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut pass = NanPass {
        param_counts: defined_function_params(wasm)?,
        next_function: 0,
    };
    let mut module = Module::new();
    pass.parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| e.to_string())?;
    Ok(module.finish())
}

/// The number of parameters of each function the module defines, in order:
/// the scratch locals the pass adds are numbered after params and locals.
fn defined_function_params(wasm: &[u8]) -> Result<Vec<u32>, String> {
    let mut type_params = Vec::new();
    let mut params = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    type_params.push(ty.map_err(|e| e.to_string())?.params().len() as u32);
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    let ty = ty.map_err(|e| e.to_string())? as usize;
                    let count = type_params.get(ty).ok_or("function type out of range")?;
                    params.push(*count);
                }
            }
            _ => {}
        }
    }
    Ok(params)
}

struct NanPass {
    param_counts: Vec<u32>,
    next_function: usize,
}

impl Reencode for NanPass {
    type Error = String;

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: FunctionBody<'_>,
    ) -> Result<(), Error<String>> {
        let params = *self
            .param_counts
            .get(self.next_function)
            .ok_or_else(|| Error::UserError("more bodies than functions".to_string()))?;
        self.next_function += 1;
        let mut locals = Vec::new();
        let mut count = params;
        for pair in func.get_locals_reader()? {
            let (n, ty) = pair?;
            count = count
                .checked_add(n)
                .ok_or_else(|| Error::UserError("too many locals".to_string()))?;
            locals.push((n, self.val_type(ty)?));
        }
        let scratch = Scratch {
            f32: count,
            f64: count + 1,
            v128: count + 2,
        };
        locals.extend([(1, ValType::F32), (1, ValType::F64), (1, ValType::V128)]);
        let mut out = Function::new(locals);
        let mut reader = func.get_operators_reader()?;
        // Whether the value on top of the stack was just pushed by an
        // instruction whose result bits are the same on every machine.
        let mut top_is_exact = false;
        while !reader.eof() {
            let op = reader.read()?;
            let site = site(&op);
            if let Some(Site::Before(ty)) = site
                && !top_is_exact
            {
                scratch.scalar(&mut out, ty);
            }
            top_is_exact = pushes_exact_float(&op);
            out.instruction(&utils::instruction(self, op)?);
            if let Some(Site::After(lanes)) = site {
                scratch.vector(&mut out, lanes);
            }
        }
        code.function(&out);
        Ok(())
    }
}

/// The locals the pass adds to every function.
struct Scratch {
    f32: u32,
    f64: u32,
    v128: u32,
}

impl Scratch {
    /// `[x] -> [x == x ? x : canonical NaN]`
    fn scalar(&self, out: &mut Function, ty: ValType) {
        let (local, canonical, eq) = match ty {
            ValType::F32 => (
                self.f32,
                Instruction::F32Const(Ieee32::from(f32::from_bits(0x7fc0_0000))),
                Instruction::F32Eq,
            ),
            _ => (
                self.f64,
                Instruction::F64Const(Ieee64::from(f64::from_bits(0x7ff8_0000_0000_0000))),
                Instruction::F64Eq,
            ),
        };
        out.instruction(&Instruction::LocalTee(local))
            .instruction(&canonical)
            .instruction(&Instruction::LocalGet(local))
            .instruction(&Instruction::LocalGet(local))
            .instruction(&eq)
            .instruction(&Instruction::Select);
    }

    /// Each lane that is NaN becomes the canonical NaN.
    fn vector(&self, out: &mut Function, lanes: ValType) {
        let (canonical, eq) = match lanes {
            ValType::F32 => (
                i128::from_le_bytes(u32x4(0x7fc0_0000)),
                Instruction::F32x4Eq,
            ),
            _ => (
                i128::from_le_bytes(u64x2(0x7ff8_0000_0000_0000)),
                Instruction::F64x2Eq,
            ),
        };
        // bitselect(x, canonical, x == x): x's bits where a lane equals
        // itself (is not NaN), the canonical NaN elsewhere.
        out.instruction(&Instruction::LocalTee(self.v128))
            .instruction(&Instruction::V128Const(canonical))
            .instruction(&Instruction::LocalGet(self.v128))
            .instruction(&Instruction::LocalGet(self.v128))
            .instruction(&eq)
            .instruction(&Instruction::V128Bitselect);
    }
}

fn u32x4(lane: u32) -> [u8; 16] {
    let mut bytes = [0; 16];
    for chunk in bytes.chunks_exact_mut(4) {
        chunk.copy_from_slice(&lane.to_le_bytes());
    }
    bytes
}

fn u64x2(lane: u64) -> [u8; 16] {
    let mut bytes = [0; 16];
    for chunk in bytes.chunks_exact_mut(8) {
        chunk.copy_from_slice(&lane.to_le_bytes());
    }
    bytes
}
