//! Pausing any module at a fuel boundary and resuming it, so that a dispute
//! over a program without `cairn_step` still bisects down to a short
//! segment.
//!
//! A paused Wasm program's state includes its call stack, which wasmtime
//! keeps in native frames that cannot be copied or hashed. So, as binaryen's
//! Asyncify does, the module is rewritten at load so it can move its own
//! stack out and back in:
//!
//! - **Ticks.** Every loop iteration and every entry to a function that can
//!   recurse decrements a global counter; every [`TICKS`] ticks the program
//!   calls the host's `yield`. The host compares the fuel used with the next
//!   boundary (every [`spacing`] fuel) and, when the run is being traced and
//!   a boundary has passed, sets the state global to *unwinding*.
//! - **Unwinding.** After every call that can pause, the caller checks the
//!   state; when unwinding it hands every local to the host (`save_*`), then
//!   the number of the call site, and returns. Values the original code
//!   kept on the operand stack across such a call are first moved into
//!   locals (one local per stack position and type), so locals are the
//!   whole frame. When `_start` returns, the host holds the whole stack.
//! - **Rewinding.** With the state set to *rewinding*, the host calls
//!   `_start` again. Each function takes its locals back (`load_*`), and
//!   every construct that contains a call site jumps, by a `br_table` over
//!   blocks wrapped around its code, straight to the construct or call on
//!   the way to the saved site, with the operands it had. The `yield` that
//!   paused is called again, sets the state to *running*, and the program
//!   goes on as if it had never stopped.
//!
//! Unwinding and rewinding run instructions of their own; the host gives
//! back the fuel they use, so a run that pauses a thousand times uses the
//! same fuel, and reaches the same states, as one that never pauses. The
//! ticks and checks are part of every run of such a module (they are its
//! fuel), paused or not.
//!
//! Functions that cannot pause (no loop, no call that can pause) are left
//! as they were. A module using what the rewrite does not handle (tail
//! calls, exceptions, typed function references, reference-typed locals
//! live at a call site, multi-value function results) is refused with
//! [`Unsupported`], and runs unpaused: a dispute over it re-runs it whole.

use std::collections::{BTreeMap, HashMap};

use wasm_encoder::reencode::{Error, Reencode, utils};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, Function,
    GlobalSection, GlobalType, ImportSection, Instruction, Module, SectionId, TypeSection, ValType,
};
use wasmparser::{
    FuncValidator, FunctionBody, Operator, Parser, Payload, ValidPayload, Validator,
    ValidatorResources, WasmModuleResources,
};
use wasmtime::{Caller, Extern, Global, Linker, V128, Val};

use super::host::{Host, reproducible};

/// The import module of the host functions the rewrite calls.
pub(crate) const PAUSE_MODULE: &str = "cairn:pause";
/// The export of the state global ([`RUNNING`], [`UNWINDING`], [`REWINDING`]).
pub(crate) const STATE_EXPORT: &str = "cairn:pause:state";
/// The export of the tick counter.
pub(crate) const TICKS_EXPORT: &str = "cairn:pause:ticks";

pub(crate) const RUNNING: i32 = 0;
pub(crate) const UNWINDING: i32 = 1;
pub(crate) const REWINDING: i32 = 2;

/// Ticks between two calls of the host's `yield`.
pub(crate) const TICKS: i32 = 4096;

/// The value types a frame may hold across a pause, in the order of their
/// `save_*` / `load_*` imports.
const SAVED: [ValType; 5] = [
    ValType::I32,
    ValType::I64,
    ValType::F32,
    ValType::F64,
    ValType::V128,
];

/// The host functions, in import order: `yield`, then `save_<t>` and
/// `load_<t>` for each type of [`SAVED`].
pub(crate) fn import_names() -> Vec<String> {
    let mut names = vec!["yield".to_string()];
    for ty in SAVED {
        names.push(format!("save_{}", type_name(ty)));
        names.push(format!("load_{}", type_name(ty)));
    }
    names
}

fn type_name(ty: ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        _ => "v128",
    }
}

/// The fuel between two pause points of a task whose fuel limit is `limit`:
/// at least 2^22, and never more than 4,096 points in all.
pub fn spacing(limit: u64) -> u64 {
    (limit / 4096).max(1 << 22)
}

/// The first function `wasm` imports from [`PAUSE_MODULE`], which only the
/// rewrite may: a module calling them itself could corrupt its pauses.
pub(crate) fn imports_from_pause(wasm: &[u8]) -> Option<String> {
    for payload in Parser::new(0).parse_all(wasm) {
        if let Ok(Payload::ImportSection(reader)) = payload {
            for import in reader.into_imports().flatten() {
                if import.module == PAUSE_MODULE {
                    return Some(import.name.to_string());
                }
            }
        }
    }
    None
}

/// The first export of `wasm` named like the runtime's own (`cairn:…`):
/// the runtime finds its state and a program's globals by those names, so
/// a module exporting one could pose as paused (and be lent fuel) or hide
/// a global from its snapshots.
pub(crate) fn reserved_export(wasm: &[u8]) -> Option<String> {
    for payload in Parser::new(0).parse_all(wasm) {
        if let Ok(Payload::ExportSection(reader)) = payload {
            for export in reader.into_iter().flatten() {
                if export.name.starts_with("cairn:") {
                    return Some(export.name.to_string());
                }
            }
        }
    }
    None
}

/// Why a module cannot be rewritten to pause.
#[derive(Debug, thiserror::Error)]
#[error("the module cannot pause: {0}")]
pub(crate) struct Unsupported(String);

/// Rewrites `wasm` (a valid module) so it can pause, as the module
/// documentation says.
///
/// [`Variant::Plain`] leaves out the copies that rewinding runs (each is
/// `unreachable`): it runs, with the same fuel, every run that never stops,
/// and compiles at a fraction of the cost (the rewinding copies' jumps into
/// the middle of constructs merge every local at every call site, which is
/// most of the compiler's work). [`Variant::Stopping`] is built only for a
/// trace or a referee's step.
pub(crate) fn make_pausable(wasm: &[u8], variant: Variant) -> Result<Vec<u8>, Unsupported> {
    let plan = Plan::of(wasm)?;
    let mut pass = PausePass {
        plan,
        next_body: 0,
        added: Added::default(),
        variant,
    };
    let mut module = Module::new();
    pass.parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| match e {
            Error::UserError(u) => u,
            other => Unsupported(format!("{other:?}")),
        })?;
    Ok(module.finish())
}

/// What the rewrite found in the whole module before writing any of it.
struct Plan {
    /// Functions the module imports (the rewrite's imports follow them).
    imported_functions: u32,
    /// Type index of the first of the rewrite's types.
    first_type: u32,
    /// Index of the state global (the tick counter is the next).
    state_global: u32,
    /// Per defined function: how to rewrite it, or `None` to copy it.
    functions: Vec<Option<Analysis>>,
}

/// Imports the rewrite adds: `yield` and a save and a load per type.
const ADDED_IMPORTS: u32 = 1 + 2 * SAVED.len() as u32;

impl Plan {
    fn of(wasm: &[u8]) -> Result<Self, Unsupported> {
        let bad = |e: wasmparser::BinaryReaderError| Unsupported(e.to_string());
        // Only a valid module is analysed: indices in range, stacks typed.
        Validator::new().validate_all(wasm).map_err(bad)?;
        // First: which defined functions can pause (a loop, or a call
        // that can pause), found over the call graph.
        let mut imported_functions = 0u32;
        let mut types = 0u32;
        let mut globals = 0u32;
        let mut loops = Vec::new();
        let mut calls: Vec<Vec<u32>> = Vec::new();
        let mut indirect = Vec::new();
        let mut exports_step = false;
        // Functions a table or a reference can reach (call_indirect's
        // possible callees).
        let mut escaping = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.map_err(bad)? {
                Payload::ElementSection(reader) => {
                    for element in reader {
                        match element.map_err(bad)?.items {
                            wasmparser::ElementItems::Functions(functions) => {
                                for function in functions {
                                    escaping.push(function.map_err(bad)?);
                                }
                            }
                            wasmparser::ElementItems::Expressions(_, exprs) => {
                                for expr in exprs {
                                    let mut ops = expr.map_err(bad)?.get_operators_reader();
                                    while !ops.eof() {
                                        if let Operator::RefFunc { function_index } =
                                            ops.read().map_err(bad)?
                                        {
                                            escaping.push(function_index);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Payload::TypeSection(reader) => types = reader.count(),
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.map_err(bad)?;
                        if import.module == PAUSE_MODULE {
                            return Err(Unsupported(format!(
                                "the module imports from {PAUSE_MODULE}"
                            )));
                        }
                        match import.ty {
                            wasmparser::TypeRef::Func(_) => imported_functions += 1,
                            wasmparser::TypeRef::Global(_) => globals += 1,
                            _ => {}
                        }
                    }
                }
                Payload::GlobalSection(reader) => {
                    globals += reader.count();
                    for global in reader {
                        let mut ops = global.map_err(bad)?.init_expr.get_operators_reader();
                        while !ops.eof() {
                            if let Operator::RefFunc { function_index } = ops.read().map_err(bad)? {
                                escaping.push(function_index);
                            }
                        }
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        exports_step |= export.map_err(bad)?.name == super::STEP_EXPORT;
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let (mut has_loop, mut called, mut any) = (false, Vec::new(), false);
                    let mut reader = body.get_operators_reader().map_err(bad)?;
                    while !reader.eof() {
                        match reader.read().map_err(bad)? {
                            Operator::Loop { .. } => has_loop = true,
                            Operator::Call { function_index } => called.push(function_index),
                            Operator::CallIndirect { .. } => any = true,
                            Operator::RefFunc { function_index } => escaping.push(function_index),
                            op @ (Operator::ReturnCall { .. }
                            | Operator::ReturnCallIndirect { .. }
                            | Operator::CallRef { .. }
                            | Operator::ReturnCallRef { .. }
                            | Operator::Try { .. }
                            | Operator::TryTable { .. }
                            | Operator::Throw { .. }
                            | Operator::ThrowRef
                            | Operator::Rethrow { .. }
                            | Operator::Delegate { .. }
                            | Operator::BrOnNull { .. }
                            | Operator::BrOnNonNull { .. }
                            | Operator::BrOnCast { .. }
                            | Operator::BrOnCastFail { .. }) => {
                                return Err(Unsupported(format!("the module uses {op:?}")));
                            }
                            _ => {}
                        }
                    }
                    loops.push(has_loop);
                    calls.push(called);
                    indirect.push(any);
                }
                _ => {}
            }
        }
        if exports_step {
            return Err(Unsupported(format!(
                "the module has steps of its own ({})",
                super::STEP_EXPORT
            )));
        }
        let defined = loops.len();
        let local = |f: u32| {
            f.checked_sub(imported_functions)
                .map(|f| f as usize)
                .filter(|f| *f < defined)
        };
        // A function can pause if it loops, calls through a table, or
        // calls one that can: spread from those to their callers.
        let mut callers: Vec<Vec<usize>> = vec![Vec::new(); defined];
        for (f, called) in calls.iter().enumerate() {
            for callee in called.iter().copied().filter_map(local) {
                callers[callee].push(f);
            }
        }
        let mut pauses: Vec<bool> = (0..defined).map(|f| loops[f] || indirect[f]).collect();
        let mut work: Vec<usize> = (0..defined).filter(|f| pauses[*f]).collect();
        while let Some(callee) = work.pop() {
            for &caller in &callers[callee] {
                if !pauses[caller] {
                    pauses[caller] = true;
                    work.push(caller);
                }
            }
        }

        // Functions that can call themselves again get a tick on entry too:
        // without it a recursion would run unbounded between ticks. Others
        // are bounded by their loops' ticks and their callees'. A call
        // through a table goes to one more node, the table, which reaches
        // every function a table or a reference can name.
        let table = defined;
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); defined + 1];
        for f in 0..defined {
            edges[f].extend(calls[f].iter().copied().filter_map(local));
            if indirect[f] {
                edges[f].push(table);
            }
        }
        edges[table] = escaping.into_iter().filter_map(local).collect();
        let recursive = recursive(&edges);

        // Then: each function that can pause, analysed with the validator
        // (it knows the operand stack's types at every instruction).
        let mut functions = Vec::with_capacity(defined);
        let budget = std::cell::Cell::new(BUDGET);
        let mut validator = Validator::new();
        let mut index = 0usize;
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload.map_err(bad)?;
            if let ValidPayload::Func(to_validate, body) =
                validator.payload(&payload).map_err(bad)?
            {
                let func = to_validate.into_validator(Default::default());
                functions.push(if pauses[index] {
                    let context = Context {
                        pauses: &pauses,
                        imported_functions,
                        entry_tick: recursive[index],
                        budget: &budget,
                    };
                    Some(Analysis::of(func, &body, &context)?)
                } else {
                    None
                });
                index += 1;
            }
        }
        Ok(Self {
            imported_functions,
            first_type: types,
            state_global: globals,
            functions,
        })
    }

    fn yield_function(&self) -> u32 {
        self.imported_functions
    }

    fn save_function(&self, ty: ValType) -> u32 {
        self.imported_functions + 1 + 2 * saved_index(ty)
    }

    fn load_function(&self, ty: ValType) -> u32 {
        self.save_function(ty) + 1
    }

    fn ticks_global(&self) -> u32 {
        self.state_global + 1
    }
}

fn saved_index(ty: ValType) -> u32 {
    SAVED.iter().position(|t| *t == ty).expect("a saved type") as u32
}

struct Context<'a> {
    pauses: &'a [bool],
    imported_functions: u32,
    /// Whether the function ticks on entry (it can recurse).
    entry_tick: bool,
    /// What the rewrite may still add to the module, counted in values
    /// kept across calls and `br_table` entries: a module crafted to make
    /// the rewrite huge is run unpaused instead.
    budget: &'a std::cell::Cell<u64>,
}

/// The rewrite's budget for a whole module (see [`Context::budget`]):
/// about 16 million additions, far past any real program's.
const BUDGET: u64 = 1 << 24;

/// The deepest nesting of constructs the rewrite follows.
const NESTING_MAX: usize = 1024;

impl Context<'_> {
    fn spend(&self, amount: usize) -> Result<(), Unsupported> {
        let left = self
            .budget
            .get()
            .checked_sub(amount as u64)
            .ok_or_else(|| Unsupported("a module the rewrite would make too large".into()))?;
        self.budget.set(left);
        Ok(())
    }
}

/// Which nodes of a graph lie on a cycle (Tarjan's strongly connected
/// components, without recursion: a module's call graph can be deep).
fn recursive(edges: &[Vec<usize>]) -> Vec<bool> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut on_cycle = vec![false; n];
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to follow)
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if let Some(&to) = edges[node].get(*edge) {
                *edge += 1;
                if to == node {
                    on_cycle[node] = true;
                }
                if index[to] == usize::MAX {
                    index[to] = next;
                    low[to] = next;
                    next += 1;
                    stack.push(to);
                    on_stack[to] = true;
                    work.push((to, 0));
                } else if on_stack[to] {
                    low[node] = low[node].min(index[to]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                loop {
                    let member = stack.pop().expect("on the stack");
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    for member in component {
                        on_cycle[member] = true;
                    }
                }
            }
        }
    }
    on_cycle
}

impl Context<'_> {
    fn can_pause(&self, function: u32) -> bool {
        function >= self.imported_functions
            && self.pauses[(function - self.imported_functions) as usize]
    }
}

/// A value on the operand stack at a known position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Slot {
    position: u32,
    ty: u8,
    /// 0 for a stack position's slot; for an `if`'s condition, one more
    /// than the `if`'s instruction index. Inside an arm the first value
    /// lands where the condition was, and would overwrite it before a
    /// pause; a rewind must find the condition the arm was taken by.
    owner: u32,
}

impl Slot {
    fn ty(self) -> ValType {
        SAVED[self.ty as usize]
    }
}

/// A place a frame's code can pause at: a call that can pause, the tick
/// at a frame's start, or a construct containing either.
#[derive(Clone, Debug)]
struct Point {
    /// The call-site numbers inside it.
    first: u32,
    last: u32,
    /// The frame's values under its inputs.
    below: Vec<Slot>,
    /// What it takes (arguments, block parameters and an `if`'s condition).
    inputs: Vec<Slot>,
    /// What it leaves.
    outputs: Vec<Slot>,
}

impl Point {
    /// What keeping it costs the rewrite: the values moved around it.
    fn size(&self) -> usize {
        self.below.len() + self.inputs.len() + self.outputs.len() + 1
    }
}

/// The points of one frame (a function body, or a block, loop or an arm
/// of an `if`) and the parameters it starts with.
#[derive(Clone, Debug, Default)]
struct Layout {
    params: Vec<Slot>,
    points: Vec<Point>,
    /// Whether the first point is a tick at the frame's start.
    tick: bool,
}

/// What the writer does at an instruction.
#[derive(Debug)]
enum Note {
    /// A call that can pause.
    Call(Point),
    /// A block, loop or `if`: the point it is in its frame (if it contains
    /// one), and the layouts of its arms.
    Open(Option<Point>, Layout, Option<Layout>),
}

/// How to rewrite one function that can pause.
struct Analysis {
    /// Types of every local: parameters, declared locals, then the slots.
    locals: Vec<ValType>,
    /// How many of `locals` are parameters.
    params: usize,
    /// Local index of each slot.
    slots: HashMap<Slot, u32>,
    /// The local holding the call site a frame resumes at (after all the
    /// others).
    target: u32,
    results: Vec<ValType>,
    body: Layout,
    notes: HashMap<usize, Note>,
}

/// A frame while analysing.
struct Open {
    /// The instruction that opened it (`None`: the function body).
    at: Option<usize>,
    /// Inside unreachable code: never runs, so never pauses.
    dead: bool,
    /// The first call-site number given out inside it.
    first: u32,
    /// The point it would be in its parent frame, less the call sites.
    point: Option<Point>,
    layout: Layout,
    /// The first arm's layout, once an `else` closed it.
    first_arm: Option<Layout>,
}

impl Analysis {
    fn of(
        mut func: FuncValidator<ValidatorResources>,
        body: &FunctionBody<'_>,
        context: &Context<'_>,
    ) -> Result<Self, Unsupported> {
        let bad = |e: wasmparser::BinaryReaderError| Unsupported(e.to_string());
        let mut reader = body.get_binary_reader();
        func.read_locals(&mut reader).map_err(bad)?;
        let ty = func
            .resources()
            .type_id_of_function(func.index())
            .ok_or_else(|| Unsupported("a function without a type".into()))?;
        let ty = func.resources().sub_type_at_id(ty).unwrap_func();
        let params = ty.params().len();
        let results = types(ty.results())?;
        if results.len() > 1 {
            return Err(Unsupported("a function with several results".into()));
        }
        let mut locals = Vec::new();
        for index in 0..func.len_locals() {
            locals.push(val(func.get_local_type(index).expect("a local"))?);
        }

        let mut next_id = 0u32;
        let mut notes = HashMap::new();
        let mut frames = vec![Open {
            at: None,
            dead: false,
            first: 0,
            point: None,
            layout: Layout::default(),
            first_arm: None,
        }];
        if context.entry_tick {
            tick(frames.last_mut().expect("the body"), 0, &mut next_id);
        }
        let mut ops = body.get_operators_reader().map_err(bad)?;
        let mut index = 0usize;
        let mut body_layout = None;
        while !ops.eof() {
            let (op, offset) = ops.read_with_offset().map_err(bad)?;
            let reachable = func.get_control_frame(0).is_some_and(|f| !f.unreachable);
            let live = reachable && !frames.last().expect("a frame").dead;
            let call = match &op {
                Operator::Call { function_index } if live && context.can_pause(*function_index) => {
                    let ty = func
                        .resources()
                        .type_id_of_function(*function_index)
                        .ok_or_else(|| Unsupported("a call to no function".into()))?;
                    let ty = func.resources().sub_type_at_id(ty).unwrap_func();
                    Some((ty.params().len(), types(ty.results())?))
                }
                Operator::CallIndirect { type_index, .. } if live => {
                    let ty = func
                        .resources()
                        .sub_type_at(*type_index)
                        .ok_or_else(|| Unsupported("a call of no type".into()))?
                        .unwrap_func();
                    // The table index is an input too.
                    Some((ty.params().len() + 1, types(ty.results())?))
                }
                _ => None,
            };
            if let Some((inputs, outputs)) = call {
                let point = point_here(&func, inputs, &outputs, next_id)?;
                context.spend(point.size())?;
                next_id += 1;
                frames
                    .last_mut()
                    .expect("a frame")
                    .layout
                    .points
                    .push(point.clone());
                notes.insert(index, Note::Call(point));
            }
            match &op {
                Operator::Block { blockty }
                | Operator::Loop { blockty }
                | Operator::If { blockty } => {
                    let (params, outputs) = block_type(&func, *blockty)?;
                    let condition = usize::from(matches!(op, Operator::If { .. }));
                    let point = match live {
                        true => {
                            let mut point =
                                point_here(&func, params.len() + condition, &types(&outputs)?, 0)?;
                            if condition == 1 {
                                let cond = point.inputs.last_mut().expect("a condition");
                                cond.owner = index as u32 + 1;
                            }
                            Some(point)
                        }
                        false => None,
                    };
                    func.op(offset, &op).map_err(bad)?;
                    let base = func.get_control_frame(0).expect("the new frame").height as u32;
                    if frames.len() >= NESTING_MAX {
                        return Err(Unsupported("constructs nested too deep".into()));
                    }
                    let mut frame = Open {
                        at: Some(index),
                        dead: !live,
                        first: next_id,
                        point,
                        layout: Layout {
                            params: slots(base, &params)?,
                            ..Layout::default()
                        },
                        first_arm: None,
                    };
                    if live && matches!(op, Operator::Loop { .. }) {
                        tick(&mut frame, base, &mut next_id);
                    }
                    frames.push(frame);
                    index += 1;
                    continue;
                }
                Operator::Else => {
                    let frame = frames.last_mut().expect("an if");
                    let second = Layout {
                        params: frame.layout.params.clone(),
                        ..Layout::default()
                    };
                    frame.first_arm = Some(std::mem::replace(&mut frame.layout, second));
                }
                Operator::End => {
                    let frame = frames.pop().expect("a frame");
                    let Some(at) = frame.at else {
                        body_layout = Some(frame.layout);
                        func.op(offset, &op).map_err(bad)?;
                        break;
                    };
                    let (first_arm, second_arm) = match frame.first_arm {
                        Some(first_arm) => (first_arm, Some(frame.layout)),
                        None => (frame.layout, None),
                    };
                    let pauses = !first_arm.points.is_empty()
                        || second_arm.as_ref().is_some_and(|l| !l.points.is_empty());
                    // The dispatch tables of its arms.
                    for arm in std::iter::once(&first_arm).chain(second_arm.as_ref()) {
                        if let (Some(first), Some(last)) = (arm.points.first(), arm.points.last()) {
                            context.spend((last.last - first.first) as usize + 1)?;
                        }
                    }
                    let point = match frame.point {
                        Some(mut point) if pauses => {
                            context.spend(point.size())?;
                            point.first = frame.first;
                            point.last = next_id - 1;
                            let parent = frames.last_mut().expect("a parent");
                            parent.layout.points.push(point.clone());
                            Some(point)
                        }
                        _ => None,
                    };
                    notes.insert(at, Note::Open(point, first_arm, second_arm));
                }
                _ => {}
            }
            func.op(offset, &op).map_err(bad)?;
            index += 1;
        }
        let body = body_layout.ok_or_else(|| Unsupported("a body without its end".into()))?;

        // One local per slot used anywhere, after the function's own.
        let mut used = BTreeMap::new();
        let mut note_slots = |layout: &Layout| {
            for slot in &layout.params {
                used.insert(*slot, ());
            }
            for point in &layout.points {
                for slot in point
                    .below
                    .iter()
                    .chain(&point.inputs)
                    .chain(&point.outputs)
                {
                    used.insert(*slot, ());
                }
            }
        };
        note_slots(&body);
        for note in notes.values() {
            if let Note::Open(_, first, second) = note {
                note_slots(first);
                if let Some(second) = second {
                    note_slots(second);
                }
            }
        }
        let mut slots = HashMap::new();
        for slot in used.into_keys() {
            slots.insert(slot, locals.len() as u32);
            locals.push(slot.ty());
        }
        if locals.len() > LOCALS_MAX {
            return Err(Unsupported(format!(
                "a function that can pause with {} locals (at most {LOCALS_MAX})",
                locals.len()
            )));
        }
        let target = locals.len() as u32;
        Ok(Self {
            locals,
            params,
            slots,
            target,
            results,
            body,
            notes,
        })
    }
}

/// Adds the tick at the start of `frame`, whose stack starts at `base`: a
/// point taking its condition above the frame's parameters.
fn tick(frame: &mut Open, base: u32, next_id: &mut u32) {
    let below = frame.layout.params.clone();
    frame.layout.tick = true;
    frame.layout.points.push(Point {
        first: *next_id,
        last: *next_id,
        inputs: vec![Slot {
            position: base + below.len() as u32,
            ty: saved_index(ValType::I32) as u8,
            owner: 0,
        }],
        below,
        outputs: Vec::new(),
    });
    *next_id += 1;
}

/// The point of an instruction taking `inputs` values and leaving
/// `outputs`, from the validator's view of the stack before it.
fn point_here(
    func: &FuncValidator<ValidatorResources>,
    inputs: usize,
    outputs: &[ValType],
    id: u32,
) -> Result<Point, Unsupported> {
    let base = func.get_control_frame(0).expect("a frame").height;
    let height = func.operand_stack_height() as usize;
    if height < base + inputs {
        return Err(Unsupported(
            "a stack shorter than an instruction's inputs".into(),
        ));
    }
    let mut values = Vec::with_capacity(height - base);
    for position in base..height {
        let ty = func
            .get_operand_type(height - 1 - position)
            .flatten()
            .ok_or_else(|| Unsupported("a value of unknown type".into()))?;
        values.push(Slot {
            position: position as u32,
            ty: saved_index(val(ty)?) as u8,
            owner: 0,
        });
    }
    let inputs_at = height - inputs;
    let outputs = outputs
        .iter()
        .enumerate()
        .map(|(i, ty)| Slot {
            position: (inputs_at + i) as u32,
            ty: saved_index(*ty) as u8,
            owner: 0,
        })
        .collect();
    Ok(Point {
        first: id,
        last: id,
        inputs: values.split_off(inputs_at - base),
        below: values,
        outputs,
    })
}

fn types(types: &[wasmparser::ValType]) -> Result<Vec<ValType>, Unsupported> {
    types.iter().map(|t| val(*t)).collect()
}

fn val(ty: wasmparser::ValType) -> Result<ValType, Unsupported> {
    Ok(match ty {
        wasmparser::ValType::I32 => ValType::I32,
        wasmparser::ValType::I64 => ValType::I64,
        wasmparser::ValType::F32 => ValType::F32,
        wasmparser::ValType::F64 => ValType::F64,
        wasmparser::ValType::V128 => ValType::V128,
        wasmparser::ValType::Ref(_) => {
            return Err(Unsupported("a reference value across a pause".into()));
        }
    })
}

/// A block type's parameters and results.
fn block_type(
    func: &FuncValidator<ValidatorResources>,
    ty: wasmparser::BlockType,
) -> Result<(Vec<wasmparser::ValType>, Vec<wasmparser::ValType>), Unsupported> {
    Ok(match ty {
        wasmparser::BlockType::Empty => (Vec::new(), Vec::new()),
        wasmparser::BlockType::Type(t) => (Vec::new(), vec![t]),
        wasmparser::BlockType::FuncType(index) => {
            let ty = func
                .resources()
                .sub_type_at(index)
                .ok_or_else(|| Unsupported("a block of no type".into()))?
                .unwrap_func();
            (ty.params().to_vec(), ty.results().to_vec())
        }
    })
}

fn slots(base: u32, types: &[wasmparser::ValType]) -> Result<Vec<Slot>, Unsupported> {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(Slot {
                position: base + i as u32,
                ty: saved_index(val(*t)?) as u8,
                owner: 0,
            })
        })
        .collect()
}

/// Which of the rewrite's additions are written.
#[derive(Default)]
struct Added {
    types: bool,
    imports: bool,
    globals: bool,
    exports: bool,
}

struct PausePass {
    plan: Plan,
    next_body: usize,
    added: Added,
    variant: Variant,
}

/// Which copies of each function the rewrite writes (see [`make_pausable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Variant {
    /// For runs that never stop: the rewinding copies are `unreachable`.
    Plain,
    /// For traces and referees: both copies.
    Stopping,
}

/// Where a section goes in a module (`None` before the first and after
/// the last).
fn rank(id: Option<SectionId>) -> u32 {
    match id {
        None => 0,
        Some(SectionId::Type) => 10,
        Some(SectionId::Import) => 20,
        Some(SectionId::Function) => 30,
        Some(SectionId::Table) => 40,
        Some(SectionId::Memory) => 50,
        Some(SectionId::Tag) => 55,
        Some(SectionId::Global) => 60,
        Some(SectionId::Export) => 70,
        Some(SectionId::Start) => 80,
        Some(SectionId::Element) => 90,
        Some(SectionId::DataCount) => 95,
        Some(SectionId::Code) => 100,
        Some(SectionId::Data) => 110,
        Some(_) => 0,
    }
}

impl PausePass {
    fn add_types(&mut self, types: &mut TypeSection) {
        self.added.types = true;
        types.ty().function([], []);
        for ty in SAVED {
            types.ty().function([ty], []);
            types.ty().function([], [ty]);
        }
    }

    fn add_imports(&mut self, imports: &mut ImportSection) {
        self.added.imports = true;
        for (offset, name) in import_names().iter().enumerate() {
            imports.import(
                PAUSE_MODULE,
                name,
                EntityType::Function(self.plan.first_type + offset as u32),
            );
        }
    }

    fn add_globals(&mut self, globals: &mut GlobalSection) {
        self.added.globals = true;
        let ty = GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        };
        globals.global(ty, &ConstExpr::i32_const(RUNNING));
        globals.global(ty, &ConstExpr::i32_const(TICKS));
    }

    fn add_exports(&mut self, exports: &mut ExportSection) {
        self.added.exports = true;
        exports.export(STATE_EXPORT, ExportKind::Global, self.plan.state_global);
        exports.export(TICKS_EXPORT, ExportKind::Global, self.plan.ticks_global());
    }
}

impl Reencode for PausePass {
    type Error = Unsupported;

    fn function_index(&mut self, func: u32) -> Result<u32, Error<Unsupported>> {
        Ok(if func >= self.plan.imported_functions {
            func + ADDED_IMPORTS
        } else {
            func
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), Error<Unsupported>> {
        utils::parse_type_section(self, types, section)?;
        self.add_types(types);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), Error<Unsupported>> {
        utils::parse_import_section(self, imports, section)?;
        self.add_imports(imports);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), Error<Unsupported>> {
        utils::parse_global_section(self, globals, section)?;
        self.add_globals(globals);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), Error<Unsupported>> {
        utils::parse_export_section(self, exports, section)?;
        self.add_exports(exports);
        Ok(())
    }

    /// Writes the sections the rewrite adds to and the module lacks, in
    /// their place.
    fn intersperse_section_hook(
        &mut self,
        module: &mut Module,
        after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), Error<Unsupported>> {
        let between = |id: SectionId| rank(after) < rank(Some(id)) && rank(Some(id)) < rank(before);
        if !self.added.types && between(SectionId::Type) {
            let mut types = TypeSection::new();
            self.add_types(&mut types);
            module.section(&types);
        }
        if !self.added.imports && between(SectionId::Import) {
            let mut imports = ImportSection::new();
            self.add_imports(&mut imports);
            module.section(&imports);
        }
        if !self.added.globals && between(SectionId::Global) {
            let mut globals = GlobalSection::new();
            self.add_globals(&mut globals);
            module.section(&globals);
        }
        if !self.added.exports && between(SectionId::Export) {
            let mut exports = ExportSection::new();
            self.add_exports(&mut exports);
            module.section(&exports);
        }
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), Error<Unsupported>> {
        // Function names would name the wrong functions once imports are
        // added; they are only for backtraces.
        if section.name() == "name" {
            return Ok(());
        }
        utils::parse_custom_section(self, module, section)
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        body: FunctionBody<'_>,
    ) -> Result<(), Error<Unsupported>> {
        let index = self.next_body;
        self.next_body += 1;
        let analysis = self.plan.functions.get_mut(index).and_then(Option::take);
        match analysis {
            None => utils::parse_function_body(self, code, body),
            Some(analysis) => {
                let function = Writer::new(self, &analysis).write(&body)?;
                code.function(&function);
                Ok(())
            }
        }
    }
}

/// A frame while writing.
struct Frame<'a> {
    /// Its points, if it has any.
    layout: Option<&'a Layout>,
    /// How many of them it has passed (each closes one of its blocks).
    passed: usize,
    /// The point it is in its parent frame.
    point: Option<&'a Point>,
    /// An `if`'s second arm.
    second: Option<&'a Layout>,
}

impl Frame<'_> {
    /// Blocks of the rewrite still open inside this frame.
    fn open_blocks(&self) -> u32 {
        self.layout
            .map(|l| (l.points.len() - self.passed) as u32)
            .unwrap_or(0)
    }
}

struct Writer<'a> {
    pass: &'a mut PausePass,
    analysis: &'a Analysis,
    out: Function,
    frames: Vec<Frame<'a>>,
    /// Writing the copy of the body that rewinding runs.
    rewinding: bool,
}

impl<'a> Writer<'a> {
    fn new(pass: &'a mut PausePass, analysis: &'a Analysis) -> Self {
        // Parameters are not declared; the rest is, then the call site and
        // the tick's scratch (never live across a pause, so never saved).
        let mut locals: Vec<(u32, ValType)> = analysis.locals[analysis.params..]
            .iter()
            .map(|t| (1, *t))
            .collect();
        locals.push((2, ValType::I32));
        Self {
            pass,
            analysis,
            out: Function::new(locals),
            frames: Vec::new(),
            rewinding: false,
        }
    }

    fn emit(&mut self, instruction: Instruction<'_>) {
        self.out.instruction(&instruction);
    }

    fn write(mut self, body: &FunctionBody<'_>) -> Result<Function, Error<Unsupported>> {
        let analysis = self.analysis;
        let results = match analysis.results.first() {
            Some(ty) => BlockType::Result(*ty),
            None => BlockType::Empty,
        };
        // block $unwind {
        //   if (result R) (state) { <the body, rewinding> }
        //   else { <the body> }
        //   return
        // }
        // <save every local, then the call site>; <zeros as results>
        //
        // Two copies, so that the one every call runs has no jumps into the
        // middle of its constructs: those would merge every local there
        // and cost the compiled code its optimisations. Blocks and `end`s
        // cost no fuel, and where the rewinding copy checks the state (2
        // fuel) the other has two dead constants (2 fuel, no code): after
        // a rewind, the rewinding copy goes on with the same fuel.
        self.emit(Instruction::Block(BlockType::Empty));
        self.emit(Instruction::GlobalGet(self.pass.plan.state_global));
        self.emit(Instruction::If(results));
        if self.pass.variant == Variant::Plain {
            // Never entered: the state is only ever set by a run that stops.
            self.emit(Instruction::Unreachable);
            self.emit(Instruction::Else);
        }
        for rewinding in [true, false] {
            if rewinding && self.pass.variant == Variant::Plain {
                continue;
            }
            self.rewinding = rewinding;
            self.frames.push(Frame {
                layout: Some(&analysis.body),
                passed: 0,
                point: None,
                second: None,
            });
            self.open_frame(true);
            let mut ops = body.get_operators_reader()?;
            let mut index = 0usize;
            while !ops.eof() {
                let op = ops.read()?;
                self.operator(op, index)?;
                index += 1;
            }
        }
        self.emit(Instruction::Return);
        self.emit(Instruction::End);
        let plan = &self.pass.plan;
        let mut save = Vec::new();
        for local in 0..analysis.target {
            let ty = analysis.locals[local as usize];
            save.push(Instruction::LocalGet(local));
            save.push(Instruction::Call(plan.save_function(ty)));
        }
        save.push(Instruction::LocalGet(analysis.target));
        save.push(Instruction::Call(plan.save_function(ValType::I32)));
        for instruction in save {
            self.emit(instruction);
        }
        for ty in &analysis.results {
            self.emit(zero(*ty));
        }
        self.emit(Instruction::End);
        Ok(self.out)
    }

    fn operator(&mut self, op: Operator<'_>, index: usize) -> Result<(), Error<Unsupported>> {
        let analysis = self.analysis;
        match (&op, analysis.notes.get(&index)) {
            (Operator::Call { .. } | Operator::CallIndirect { .. }, Some(Note::Call(point))) => {
                self.enter_point(point);
                let call = utils::instruction(self.pass, op)?;
                self.emit(call);
                self.unwind_check(point.first);
                self.leave_point(point);
            }
            (Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. }, note) => {
                let (point, first, second) = match note {
                    Some(Note::Open(Some(point), first, second)) => {
                        (Some(point), Some(first), second.as_ref())
                    }
                    _ => (None, None, None),
                };
                if let Some(point) = point {
                    self.enter_point(point);
                }
                let open = utils::instruction(self.pass, op)?;
                self.emit(open);
                self.frames.push(Frame {
                    layout: first,
                    passed: 0,
                    point,
                    second,
                });
                self.open_frame(false);
            }
            (Operator::Else, _) => {
                let frame = self.frames.last_mut().expect("an if");
                debug_assert_eq!(frame.open_blocks(), 0);
                frame.layout = frame.second.take();
                frame.passed = 0;
                self.emit(Instruction::Else);
                self.open_frame(false);
            }
            (Operator::End, _) => {
                let frame = self.frames.pop().expect("a frame");
                debug_assert_eq!(frame.open_blocks(), 0);
                // The body's own end closes the rewinding copy's arm.
                if self.frames.is_empty() && self.rewinding {
                    self.emit(Instruction::Else);
                } else {
                    self.emit(Instruction::End);
                }
                if let Some(point) = frame.point {
                    self.leave_point(point);
                }
            }
            (Operator::Br { relative_depth }, _) => {
                let depth = self.depth(*relative_depth);
                self.emit(Instruction::Br(depth));
            }
            (Operator::BrIf { relative_depth }, _) => {
                let depth = self.depth(*relative_depth);
                self.emit(Instruction::BrIf(depth));
            }
            (Operator::BrTable { targets }, _) => {
                let mut depths = Vec::with_capacity(targets.len() as usize);
                for target in targets.targets() {
                    depths.push(self.depth(target?));
                }
                let default = self.depth(targets.default());
                self.emit(Instruction::BrTable(depths.into(), default));
            }
            _ => {
                let instruction = utils::instruction(self.pass, op)?;
                self.emit(instruction);
            }
        }
        Ok(())
    }

    /// The depth of original label `depth` once the rewrite's blocks are
    /// counted.
    fn depth(&self, depth: u32) -> u32 {
        let extra: u32 = self
            .frames
            .iter()
            .rev()
            .take(depth as usize + 1)
            .map(Frame::open_blocks)
            .sum();
        depth + extra
    }

    /// At a frame's start (its parameters on the stack): moves them into
    /// their slots, opens one block per point, and when rewinding jumps to
    /// the end of the block before the point holding the saved call site;
    /// then puts the parameters back. The function's frame first takes its
    /// locals back.
    fn open_frame(&mut self, function: bool) {
        let analysis = self.analysis;
        let Some(layout) = self.frames.last().and_then(|f| f.layout) else {
            return;
        };
        if layout.points.is_empty() {
            return;
        }
        let plan = &self.pass.plan;
        let mut code = Vec::new();
        for slot in layout.params.iter().rev() {
            code.push(Instruction::LocalSet(analysis.slots[slot]));
        }
        for _ in &layout.points {
            code.push(Instruction::Block(BlockType::Empty));
        }
        if !self.rewinding {
            // The other copy's check of the state, in fuel only. The
            // body's own frame has none: the copy was chosen on entry.
            if !function {
                code.extend([
                    Instruction::I32Const(0),
                    Instruction::I32Const(0),
                    Instruction::Drop,
                    Instruction::Drop,
                ]);
            }
            for slot in &layout.params {
                code.push(Instruction::LocalGet(analysis.slots[slot]));
            }
            for instruction in code {
                self.emit(instruction);
            }
            if layout.tick {
                self.write_tick(&layout.points[0]);
            }
            return;
        }
        // Entering a frame, the state is running or rewinding (never
        // unwinding): any state but running is a rewind.
        code.push(Instruction::GlobalGet(plan.state_global));
        code.push(Instruction::If(BlockType::Empty));
        if function {
            code.push(Instruction::Call(plan.load_function(ValType::I32)));
            code.push(Instruction::LocalSet(analysis.target));
            for local in (0..analysis.target).rev() {
                let ty = analysis.locals[local as usize];
                code.push(Instruction::Call(plan.load_function(ty)));
                code.push(Instruction::LocalSet(local));
            }
        }
        // Call sites are numbered in order, so each point's are a range.
        let first = layout.points[0].first;
        let mut table = Vec::new();
        for (n, point) in layout.points.iter().enumerate() {
            for _ in point.first..=point.last {
                // Inside the `if`, the block that closes just before
                // point n is at depth n + 1.
                table.push(n as u32 + 1);
            }
        }
        code.push(Instruction::LocalGet(analysis.target));
        code.push(Instruction::I32Const(first as i32));
        code.push(Instruction::I32Sub);
        code.push(Instruction::BrTable(table.into(), 0));
        code.push(Instruction::End);
        for slot in &layout.params {
            code.push(Instruction::LocalGet(analysis.slots[slot]));
        }
        for instruction in code {
            self.emit(instruction);
        }
        if layout.tick {
            self.write_tick(&layout.points[0]);
        }
    }

    /// The tick, a point of its own: `if (--ticks == 0) { yield }`.
    fn write_tick(&mut self, point: &Point) {
        let plan = &self.pass.plan;
        let (ticks, yield_function) = (plan.ticks_global(), plan.yield_function());
        let scratch = self.analysis.target + 1;
        self.emit(Instruction::GlobalGet(ticks));
        self.emit(Instruction::I32Const(1));
        self.emit(Instruction::I32Sub);
        self.emit(Instruction::LocalTee(scratch));
        self.emit(Instruction::GlobalSet(ticks));
        self.emit(Instruction::LocalGet(scratch));
        self.emit(Instruction::I32Eqz);
        self.enter_point(point);
        self.emit(Instruction::If(BlockType::Empty));
        // A frame of the rewrite's own, for depths: nothing in it branches
        // but the unwind check.
        self.frames.push(Frame {
            layout: None,
            passed: 0,
            point: None,
            second: None,
        });
        self.emit(Instruction::Call(yield_function));
        self.unwind_check(point.first);
        self.frames.pop();
        self.emit(Instruction::End);
        self.leave_point(point);
    }

    /// Before a point: its inputs and the values under them into their
    /// slots, the block before it closed (where rewinding lands), its
    /// inputs back.
    fn enter_point(&mut self, point: &Point) {
        let slots = &self.analysis.slots;
        for slot in point.inputs.iter().rev().chain(point.below.iter().rev()) {
            self.out.instruction(&Instruction::LocalSet(slots[slot]));
        }
        self.emit(Instruction::End);
        self.frames.last_mut().expect("a frame").passed += 1;
        for slot in &point.inputs {
            self.out.instruction(&Instruction::LocalGet(slots[slot]));
        }
    }

    /// After a point: the values that were under it back under its outputs.
    fn leave_point(&mut self, point: &Point) {
        let slots = &self.analysis.slots;
        for slot in point.outputs.iter().rev() {
            self.out.instruction(&Instruction::LocalSet(slots[slot]));
        }
        for slot in point.below.iter().chain(&point.outputs) {
            self.out.instruction(&Instruction::LocalGet(slots[slot]));
        }
    }

    /// After a call that can pause: if the program is unwinding, note the
    /// call site and branch to the function's end, where locals are saved.
    fn unwind_check(&mut self, site: u32) {
        // `$unwind` is one label outside the body's, and the check's `if`
        // is one more label.
        let body = self.frames.len() as u32 - 1;
        let depth = self.depth(body) + 2;
        // After a call that can pause, the state is running or unwinding
        // (a rewind ends inside the call): any state but running is an
        // unwind.
        self.emit(Instruction::GlobalGet(self.pass.plan.state_global));
        self.emit(Instruction::If(BlockType::Empty));
        self.emit(Instruction::I32Const(site as i32));
        self.emit(Instruction::LocalSet(self.analysis.target));
        self.emit(Instruction::Br(depth));
        self.emit(Instruction::End);
    }
}

fn zero(ty: ValType) -> Instruction<'static> {
    match ty {
        ValType::I32 => Instruction::I32Const(0),
        ValType::I64 => Instruction::I64Const(0),
        ValType::F32 => Instruction::F32Const(0.0.into()),
        ValType::F64 => Instruction::F64Const(0.0.into()),
        _ => Instruction::V128Const(0),
    }
}

/// Values a paused program may hand the host, a bound on what one task can
/// make a host hold (256 MiB at most). A frame saves at most
/// [`LOCALS_MAX`] + 1 values and takes at least 16 bytes of wasmtime's
/// 512 KiB stack (a return address and a frame pointer), so no stack that
/// fits wasmtime can overflow it: a traced run never fails where a plain
/// one does not.
pub(crate) const SAVED_MAX: usize = WASM_STACK_BYTES / 16 * (LOCALS_MAX + 1);

/// The native stack a Wasm call may use (wasmtime's default, set
/// explicitly because [`SAVED_MAX`] depends on it).
pub(crate) const WASM_STACK_BYTES: usize = 512 << 10;

/// The most locals (slots included) a function that can pause may have.
const LOCALS_MAX: usize = 511;

/// Fuel lent to a program while it unwinds and rewinds, and taken back
/// when it resumes, so that pausing costs it nothing.
const HEADROOM: u64 = 1 << 40;

/// The host's side of pausing, one per run.
pub(crate) struct Pause {
    /// Whether this run stops at pause points (a trace, a referee's step);
    /// a plain run goes straight on, in the same states with the same fuel.
    pub stops: bool,
    /// The task's fuel limit; 0 when fuel is not metered (nothing stops).
    pub fuel_limit: u64,
    /// Fuel used at the last stop (0 before the first).
    pub since: u64,
    /// Fuel left when the program stopped: the store holds more while it
    /// unwinds and rewinds.
    pub fuel_left: u64,
    /// What the program handed over while unwinding, in order.
    pub saved: Vec<u128>,
}

impl Pause {
    pub(crate) fn new(fuel_limit: u64, stops: bool) -> Self {
        Self {
            stops,
            fuel_limit,
            since: 0,
            fuel_left: fuel_limit,
            saved: Vec::new(),
        }
    }

    /// The store's fuel to resume with: what was left, plus the loan.
    pub(crate) fn resume_fuel(&self) -> u64 {
        self.fuel_left + HEADROOM
    }
}

fn global(caller: &mut Caller<'_, Host>, name: &str) -> wasmtime::Result<Global> {
    match caller.get_export(name) {
        Some(Extern::Global(global)) => Ok(global),
        _ => Err(wasmtime::Error::msg(format!(
            "the module exports no {name}"
        ))),
    }
}

fn set_i32(caller: &mut Caller<'_, Host>, name: &str, value: i32) -> wasmtime::Result<()> {
    global(caller, name)?.set(&mut *caller, Val::I32(value))
}

/// `yield`: every [`TICKS`] ticks, and once more when a rewind reaches the
/// call that stopped.
fn on_yield(mut caller: Caller<'_, Host>) -> wasmtime::Result<()> {
    let state = global(&mut caller, STATE_EXPORT)?
        .get(&mut caller)
        .i32()
        .unwrap_or(-1);
    match state {
        REWINDING => {
            set_i32(&mut caller, STATE_EXPORT, RUNNING)?;
            set_i32(&mut caller, TICKS_EXPORT, TICKS)?;
            let left = caller.data().pause.fuel_left;
            caller.set_fuel(left)
        }
        RUNNING => {
            let (limit, since) = (caller.data().pause.fuel_limit, caller.data().pause.since);
            if limit > 0 {
                let left = caller.get_fuel()?;
                let used = limit.saturating_sub(left);
                let every = spacing(limit);
                // A pause point, whether this run stops at it or not: both
                // must go on alike. Not where a referee could not rebuild
                // the open files; the next `yield` looks again.
                if used / every > since / every && reproducible(caller.data_mut()) {
                    // A folder listing kept across it is not state a
                    // snapshot holds.
                    let host = caller.data_mut();
                    host.files.end_step();
                    host.pause.since = used;
                    if host.pause.stops {
                        host.pause.fuel_left = left;
                        caller.set_fuel(left + HEADROOM)?;
                        return set_i32(&mut caller, STATE_EXPORT, UNWINDING);
                    }
                }
            }
            set_i32(&mut caller, TICKS_EXPORT, TICKS)
        }
        _ => Err(wasmtime::Error::msg("yield while unwinding")),
    }
}

fn save(caller: &mut Caller<'_, Host>, bits: u128) -> wasmtime::Result<()> {
    let saved = &mut caller.data_mut().pause.saved;
    if saved.len() >= SAVED_MAX {
        return Err(wasmtime::Error::msg(format!(
            "a paused stack of more than {SAVED_MAX} values"
        )));
    }
    saved.push(bits);
    Ok(())
}

fn load(caller: &mut Caller<'_, Host>) -> wasmtime::Result<u128> {
    caller
        .data_mut()
        .pause
        .saved
        .pop()
        .ok_or_else(|| wasmtime::Error::msg("a rewind past the saved stack"))
}

/// NaN bits are the CPU's until a program observes them (see `nan`); what
/// is saved is hashed, so NaNs are saved canonical.
fn canonical_f32(bits: u32) -> u32 {
    if f32::from_bits(bits).is_nan() {
        0x7fc0_0000
    } else {
        bits
    }
}

fn canonical_f64(bits: u64) -> u64 {
    if f64::from_bits(bits).is_nan() {
        0x7ff8_0000_0000_0000
    } else {
        bits
    }
}

/// Adds the functions a pausable module imports.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(PAUSE_MODULE, "yield", on_yield)?;
    linker.func_wrap(
        PAUSE_MODULE,
        "save_i32",
        |mut c: Caller<'_, Host>, v: i32| save(&mut c, u128::from(v as u32)),
    )?;
    linker.func_wrap(PAUSE_MODULE, "load_i32", |mut c: Caller<'_, Host>| {
        load(&mut c).map(|b| b as u32 as i32)
    })?;
    linker.func_wrap(
        PAUSE_MODULE,
        "save_i64",
        |mut c: Caller<'_, Host>, v: i64| save(&mut c, u128::from(v as u64)),
    )?;
    linker.func_wrap(PAUSE_MODULE, "load_i64", |mut c: Caller<'_, Host>| {
        load(&mut c).map(|b| b as u64 as i64)
    })?;
    linker.func_wrap(
        PAUSE_MODULE,
        "save_f32",
        |mut c: Caller<'_, Host>, v: f32| save(&mut c, u128::from(canonical_f32(v.to_bits()))),
    )?;
    linker.func_wrap(PAUSE_MODULE, "load_f32", |mut c: Caller<'_, Host>| {
        load(&mut c).map(|b| f32::from_bits(b as u32))
    })?;
    linker.func_wrap(
        PAUSE_MODULE,
        "save_f64",
        |mut c: Caller<'_, Host>, v: f64| save(&mut c, u128::from(canonical_f64(v.to_bits()))),
    )?;
    linker.func_wrap(PAUSE_MODULE, "load_f64", |mut c: Caller<'_, Host>| {
        load(&mut c).map(|b| f64::from_bits(b as u64))
    })?;
    linker.func_wrap(
        PAUSE_MODULE,
        "save_v128",
        |mut c: Caller<'_, Host>, v: V128| save(&mut c, v.as_u128()),
    )?;
    linker.func_wrap(PAUSE_MODULE, "load_v128", |mut c: Caller<'_, Host>| {
        load(&mut c).map(V128::from)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_rewrite_cannot_pause_is_refused_with_the_reason() {
        let cases = [
            (
                r#"(module (func $f (result i32) (return_call $f)) (func (export "_start")))"#,
                "ReturnCall",
            ),
            (
                r#"(module (func (export "_start") (loop $l (br $l)))
                           (func (export "cairn_step") (result i32) (i32.const 0)))"#,
                "steps of its own",
            ),
            (
                r#"(module (func (export "_start") (local externref)
                     (loop $l (br_if $l (ref.is_null (local.get 0))))))"#,
                "reference value",
            ),
        ];
        for (wat, reason) in cases {
            let wasm = wat::parse_str(wat).unwrap();
            let refused = make_pausable(&wasm, Variant::Stopping)
                .expect_err(wat)
                .to_string();
            assert!(refused.contains(reason), "{wat}: {refused}");
        }
    }

    #[test]
    fn recursion_is_found_through_cycles_of_any_length() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 -> 0, 5 alone, 6 -> 7 -> 5.
        let edges = vec![
            vec![1],
            vec![2],
            vec![0],
            vec![3],
            vec![0],
            vec![],
            vec![7],
            vec![5],
        ];
        assert_eq!(
            recursive(&edges),
            [true, true, true, true, false, false, false, false]
        );
    }

    #[test]
    fn a_module_without_the_sections_the_rewrite_extends_gets_them() {
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (local i32)
                   (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))))"#,
        )
        .unwrap();
        let bare = wat::parse_str(
            r#"(module (func $s (local i32)
                 (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1))))))
                 (start $s))"#,
        )
        .unwrap();
        for wasm in [wasm, bare] {
            let paused = make_pausable(&wasm, Variant::Stopping).unwrap();
            Validator::new().validate_all(&paused).unwrap();
            assert_eq!(imports_from_pause(&paused).as_deref(), Some("yield"));
        }
    }
}
