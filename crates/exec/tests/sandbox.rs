//! The Wasm sandbox against hostile guests, and the determinism that lets
//! results be compared across machines.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use cairn_exec::local::{self, LocalJob};
use cairn_exec::{ExecError, Limits, Outcome, Runtime, Task, TaskResult, WasmConfig, WasmRuntime};
use cairn_job::TaskSpec;
use cairn_wire::ContentId;

fn runtime() -> WasmRuntime {
    WasmRuntime::new(WasmConfig::default()).unwrap()
}

fn limits() -> Limits {
    Limits {
        fuel: 500_000_000,
        memory_bytes: 32 << 20,
        wall_time: Duration::from_secs(60),
        output_bytes: 1 << 20,
        stdout_bytes: 16 << 10,
        gpus: 0,
        gpu_memory_mib: 0,
    }
}

/// Runs one task of `module` in fresh folders (with `/input/ok.txt`).
fn run_with(
    rt: &WasmRuntime,
    module: ContentId,
    args: &[&str],
    limits: Limits,
    expected: &[&str],
) -> Result<TaskResult, ExecError> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let output = dir.path().join("output");
    std::fs::create_dir(&input).unwrap();
    std::fs::create_dir(&output).unwrap();
    std::fs::write(input.join("ok.txt"), "readable").unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    rt.run(&Task {
        module,
        args: &args,
        seed: [5; 32],
        input_dir: Some(&input),
        output_dir: &output,
        expected_outputs: &expected,
        limits,
    })
}

fn hostile(rt: &WasmRuntime, args: &[&str]) -> Result<TaskResult, ExecError> {
    let module = rt.load(cairn_workloads::HOSTILE.wasm).unwrap();
    run_with(rt, module, args, limits(), &[])
}

fn stdout(result: &TaskResult) -> String {
    String::from_utf8_lossy(&result.stdout).into_owned()
}

#[test]
fn same_task_twice_gives_same_digest_and_fuel() {
    let rt = runtime();
    let module = rt.load(cairn_workloads::HASHSEARCH.wasm).unwrap();
    let args = [
        "--prefix",
        "cairn",
        "--start",
        "0",
        "--count",
        "3000",
        "--bits",
        "8",
        "--out",
        "/output/hits.txt",
    ];
    let a = run_with(&rt, module, &args, limits(), &["hits.txt"]).unwrap();
    let b = run_with(&rt, module, &args, limits(), &["hits.txt"]).unwrap();
    assert!(
        a.outcome.is_success(),
        "{}: {}",
        a.outcome,
        String::from_utf8_lossy(&a.stderr)
    );
    assert!(
        a.fuel_used > 1_000_000,
        "real work was done: {}",
        a.fuel_used
    );
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.fuel_used, b.fuel_used);
    assert_eq!(a.outputs, b.outputs);
    // A different task gives a different digest: the digest is not constant.
    let c = run_with(
        &rt,
        module,
        &[
            "--prefix",
            "cairn",
            "--start",
            "1",
            "--count",
            "3000",
            "--bits",
            "8",
            "--out",
            "/output/hits.txt",
        ],
        limits(),
        &["hits.txt"],
    )
    .unwrap();
    assert_ne!(a.digest, c.digest);
}

#[test]
fn one_and_two_workers_give_identical_results() {
    let rt = runtime();
    let module = rt.load(cairn_workloads::HASHSEARCH.wasm).unwrap();
    let tasks: Vec<TaskSpec> = (0..6u64)
        .map(|value| TaskSpec {
            index: value as u32,
            value,
            args: [
                "--prefix",
                "pool",
                "--start",
                &(value * 1000).to_string(),
                "--count",
                "1000",
                "--bits",
                "6",
                "--out",
                "/output/hits.txt",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            outputs: vec!["hits.txt".into()],
            seed: [value as u8; 32],
            fuel: None,
            inputs: Vec::new(),
        })
        .collect();
    let digests = |workers: usize| {
        let work = tempfile::tempdir().unwrap();
        let job = LocalJob {
            module,
            tasks: &tasks,
            input_dir: None,
            work_dir: work.path(),
            limits: limits(),
        };
        let mut seen = 0;
        let done = local::run(&rt, &job, workers, &AtomicBool::new(false), |_| seen += 1);
        assert_eq!(seen, tasks.len());
        done.into_iter()
            .map(|f| {
                let r = f.result.unwrap();
                assert!(r.outcome.is_success());
                (f.task.index, r.digest, r.fuel_used)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(1), digests(2));
}

#[test]
fn nans_are_canonical_and_stable() {
    let rt = runtime();
    let a = hostile(&rt, &["nan"]).unwrap();
    let b = hostile(&rt, &["nan"]).unwrap();
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.digest, b.digest);
    let lines: Vec<String> = stdout(&a).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    // Every NaN an operation produced is the canonical one, whatever the
    // CPU's native NaN (x86 produces the negative 0xfff8… for 0/0).
    for line in &lines[..5] {
        assert_eq!(line, "7ff8000000000000", "{lines:?}");
    }
    assert_eq!(lines[5], "7fc00000");
}

/// A module whose exit status is the sign bit of a NaN that `body` computes
/// and makes observable (the x86 default NaN is negative, the canonical
/// one positive).
fn nan_sign_exit_status(body: &str) -> Outcome {
    let wat = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func $zero (result f64) f64.const 0)
            (func (export "_start") {body} call $exit))"#
    );
    let rt = runtime();
    let module = rt.load(&wat::parse_str(wat).unwrap()).unwrap();
    let a = run_with(&rt, module, &[], limits(), &[]).unwrap();
    let b = run_with(&rt, module, &[], limits(), &[]).unwrap();
    assert_eq!((a.digest, a.fuel_used), (b.digest, b.fuel_used));
    a.outcome
}

#[test]
fn nan_bits_are_canonical_wherever_they_can_be_observed() {
    // Stored to memory, then read back as an integer.
    let stored = "i32.const 0 call $zero call $zero f64.div f64.store
        i32.const 0 i64.load i64.const 63 i64.shr_u i32.wrap_i64";
    assert_eq!(nan_sign_exit_status(stored), Outcome::Exited(0));
    // Reinterpreted as an integer.
    let reinterpreted = "call $zero call $zero f64.div i64.reinterpret_f64
        i64.const 63 i64.shr_u i32.wrap_i64";
    assert_eq!(nan_sign_exit_status(reinterpreted), Outcome::Exited(0));
    // Its sign copied onto an ordinary number.
    let copysign = "f64.const 1 call $zero call $zero f64.div f64.copysign
        f64.const 0 f64.lt";
    assert_eq!(nan_sign_exit_status(copysign), Outcome::Exited(0));
    // Made by a vector operation and stored.
    let vector = "i32.const 0
        call $zero f32.demote_f64 f32x4.splat call $zero f32.demote_f64 f32x4.splat
        f32x4.div v128.store
        i32.const 0 i32.load i32.const 31 i32.shr_u";
    assert_eq!(nan_sign_exit_status(vector), Outcome::Exited(0));
    // Moved from a scalar into a vector.
    let splat = "i32.const 0 call $zero call $zero f64.div f64x2.splat v128.store
        i32.const 0 i64.load i64.const 63 i64.shr_u i32.wrap_i64";
    assert_eq!(nan_sign_exit_status(splat), Outcome::Exited(0));
    // A negated canonical NaN is still deterministic: it is the negative one.
    let negated = "call $zero call $zero f64.div f64.neg i64.reinterpret_f64
        i64.const 63 i64.shr_u i32.wrap_i64";
    assert_eq!(nan_sign_exit_status(negated), Outcome::Exited(0));
}

#[test]
fn nan_payloads_in_integers_are_left_alone() {
    // Only floats are canonicalised: integer bits that spell a NaN survive.
    let boxed = "i32.const 0 i64.const 0xfff8000000000abc i64.store
        i32.const 0 i64.load i64.const 0xfff8000000000abc i64.eq";
    assert_eq!(nan_sign_exit_status(boxed), Outcome::Exited(1));
}

#[test]
fn infinite_loop_ends_with_fuel_exhausted() {
    let rt = runtime();
    let result = hostile(&rt, &["loop"]).unwrap();
    assert_eq!(
        result.outcome,
        Outcome::FuelExhausted {
            limit: limits().fuel
        }
    );
    assert_eq!(result.fuel_used, limits().fuel);
    assert!(result.outcome.to_string().contains("fuel exhausted"));
}

#[test]
fn memory_bomb_ends_with_memory_limit() {
    let rt = runtime();
    let result = hostile(&rt, &["membomb"]).unwrap();
    match &result.outcome {
        Outcome::MemoryLimit { limit, requested } => {
            assert_eq!(*limit, limits().memory_bytes);
            assert!(requested > limit);
        }
        other => panic!("expected a memory limit, got {other}"),
    }
    assert!(result.outcome.to_string().contains("memory limit exceeded"));
}

#[test]
fn paths_outside_the_task_folders_are_denied() {
    let rt = runtime();
    let escapes = [
        "/etc/passwd",
        "/input/../../../etc/passwd",
        "/output/../input/../../etc/passwd",
        "../etc/passwd",
        "/proc/self/environ",
    ];
    let mut args = vec!["escape", "/input/ok.txt"];
    args.extend(escapes);
    let result = hostile(&rt, &args).unwrap();
    let out = stdout(&result);
    // The control: the input folder itself is readable.
    assert!(out.contains("READ /input/ok.txt"), "{out}");
    for path in escapes {
        assert!(
            out.contains(&format!("denied {path}")),
            "{path} was not denied:\n{out}"
        );
    }
    assert_eq!(out.matches("READ").count(), 1, "{out}");
}

#[test]
fn input_folder_is_read_only() {
    let rt = runtime();
    let module = rt.load(cairn_workloads::HASHSEARCH.wasm).unwrap();
    let result = run_with(
        &rt,
        module,
        &["--count", "1", "--out", "/input/ok.txt"],
        limits(),
        &[],
    )
    .unwrap();
    assert_eq!(result.outcome, Outcome::Exited(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("cannot write /input/ok.txt"));
}

#[test]
fn output_larger_than_the_limit_is_refused() {
    let rt = runtime();
    let small = hostile(&rt, &["write", "100000"]).unwrap();
    assert!(small.outcome.is_success(), "{}", small.outcome);
    assert_eq!(small.outputs[0].path, "big.bin");
    assert_eq!(small.outputs[0].size_bytes, 100_000);
    let big = hostile(&rt, &["write", &(2u64 << 20).to_string()]).unwrap();
    assert_eq!(
        big.outcome,
        Outcome::OutputLimit {
            stream: "output",
            limit: 1 << 20
        }
    );
    assert!(big.outcome.to_string().contains("limits.output_mib"));
}

#[test]
fn stdout_flood_is_refused() {
    let rt = runtime();
    let result = hostile(&rt, &["stdout", "100000"]).unwrap();
    assert_eq!(
        result.outcome,
        Outcome::OutputLimit {
            stream: "stdout",
            limit: 16 << 10
        }
    );
    assert!(result.stdout.len() <= 16 << 10);
}

#[test]
fn file_flood_is_refused() {
    let rt = runtime();
    let result = hostile(&rt, &["files", "20000"]).unwrap();
    assert!(
        matches!(result.outcome, Outcome::EntriesLimit { .. }),
        "{}",
        result.outcome
    );
}

#[test]
fn time_randomness_and_environment_are_virtual() {
    let rt = runtime();
    let a = hostile(&rt, &["entropy"]).unwrap();
    let b = hostile(&rt, &["entropy"]).unwrap();
    assert_eq!(
        a.stdout, b.stdout,
        "two runs saw different time or randomness"
    );
    assert_eq!(a.fuel_used, b.fuel_used);
    let out = stdout(&a);
    assert!(
        out.starts_with("time 946684800"),
        "the clock starts in 2000: {out}"
    );
    assert!(
        out.trim_end().ends_with("env []"),
        "no environment leaks in: {out}"
    );
}

#[test]
fn sleeping_fails_fast_instead_of_blocking() {
    let rt = runtime();
    let result = hostile(&rt, &["sleep"]).unwrap();
    assert!(!result.outcome.is_success());
    assert!(result.wall_time < Duration::from_secs(3600));
}

#[test]
fn exit_codes_and_panics_are_results() {
    let rt = runtime();
    assert_eq!(
        hostile(&rt, &["exit", "3"]).unwrap().outcome,
        Outcome::Exited(3)
    );
    let panic = hostile(&rt, &["panic"]).unwrap();
    assert!(
        matches!(panic.outcome, Outcome::Trap(_)),
        "{}",
        panic.outcome
    );
    assert!(String::from_utf8_lossy(&panic.stderr).contains("asked to panic"));
}

#[test]
fn shadow_stack_overflow_is_a_deterministic_trap() {
    // Rust keeps its stack frames in linear memory: running out of that is
    // the same on every machine, so it is a result like any other trap.
    let rt = runtime();
    let a = hostile(&rt, &["recurse"]).unwrap();
    let b = hostile(&rt, &["recurse"]).unwrap();
    assert!(matches!(a.outcome, Outcome::Trap(_)), "{}", a.outcome);
    assert_eq!((a.digest, a.fuel_used), (b.digest, b.fuel_used));
}

#[test]
fn native_stack_exhaustion_is_not_a_result() {
    // Wasm call depth is bounded by the host's native stack, which differs
    // between machines: never a result.
    let bytes = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func $f (export "_start") (call $f)))"#,
    )
    .unwrap();
    let rt = runtime();
    let module = rt.load(&bytes).unwrap();
    let err = run_with(&rt, module, &[], limits(), &[]).unwrap_err();
    assert!(matches!(err, ExecError::StackExhausted), "{err}");
}

/// The watchdog looks at the clock at fuel yields where work is metered,
/// and at epoch checks where it is not (a runtime measuring what metering
/// costs): both stop an endless loop.
#[test]
fn watchdog_stops_a_task_that_outlives_its_wall_time() {
    for metered in [true, false] {
        let rt = WasmRuntime::new(WasmConfig {
            metered,
            ..WasmConfig::default()
        })
        .unwrap();
        let module = rt.load(cairn_workloads::HOSTILE.wasm).unwrap();
        let mut generous = limits();
        generous.fuel = u64::MAX / 2;
        generous.wall_time = Duration::from_secs(1);
        let err = run_with(&rt, module, &["loop"], generous, &[]).unwrap_err();
        assert!(
            matches!(err, ExecError::WallTimeExceeded { seconds: 1 }),
            "metered: {metered}: {err}"
        );
    }
}

#[test]
fn missing_required_output_fails_the_task() {
    let rt = runtime();
    let module = rt.load(cairn_workloads::HOSTILE.wasm).unwrap();
    let result = run_with(&rt, module, &["exit", "0"], limits(), &["frame.png"]).unwrap();
    assert_eq!(result.outcome, Outcome::MissingOutput("frame.png".into()));
}

#[test]
fn non_wasm_is_rejected_before_running() {
    let err = runtime().load(b"#!/bin/sh\nrm -rf /\n").unwrap_err();
    assert!(matches!(err, ExecError::NotWasm(_)));
    assert!(
        err.to_string().contains("not a WebAssembly module"),
        "{err}"
    );
    let err = runtime().load(b"\0asm\x01\0\0\0\xff\xff").unwrap_err();
    assert!(matches!(err, ExecError::InvalidModule(_)), "{err}");
}

#[test]
fn unknown_imports_are_rejected_before_running() {
    let wat = r#"(module
        (import "env" "evil" (func))
        (memory (export "memory") 1)
        (func (export "_start")))"#;
    let err = runtime().load(wat.as_bytes()).unwrap_err();
    // Text is not a binary module either; compile it first.
    assert!(matches!(err, ExecError::NotWasm(_)));
    let bytes = wat::parse_str(wat).unwrap();
    let err = runtime().load(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("imports `env::evil`, which the host does not provide"),
        "{err}"
    );
    let sockets = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "sock_open" (func)) (func (export "_start")))"#,
    )
    .unwrap();
    assert!(matches!(
        runtime().load(&sockets),
        Err(ExecError::UnknownImport { .. })
    ));
}

#[test]
fn modules_without_start_are_rejected() {
    let bytes = wat::parse_str("(module (func (export \"main\")))").unwrap();
    assert!(matches!(
        runtime().load(&bytes),
        Err(ExecError::NoEntryPoint)
    ));
}

#[test]
fn shared_memory_threads_do_not_validate() {
    let bytes = wat::parse_str("(module (memory 1 1 shared) (func (export \"_start\")))");
    // Either the text is refused or the engine refuses it: threads are out.
    if let Ok(bytes) = bytes {
        assert!(runtime().load(&bytes).is_err());
    }
}

#[test]
fn hostile_tasks_do_not_affect_their_neighbours() {
    let rt = runtime();
    let module = rt.load(cairn_workloads::HOSTILE.wasm).unwrap();
    let modes: Vec<Vec<&str>> = vec![
        vec!["loop"],
        vec!["write", "1000"],
        vec!["membomb"],
        vec!["write", "2000"],
        vec!["stdout", "1000000"],
        vec!["escape", "/etc/passwd"],
        vec!["panic"],
        vec!["write", "3000"],
    ];
    let tasks: Vec<TaskSpec> = modes
        .iter()
        .enumerate()
        .map(|(i, mode)| TaskSpec {
            index: i as u32,
            value: i as u64,
            args: mode.iter().map(|s| s.to_string()).collect(),
            outputs: vec![],
            seed: [0; 32],
            fuel: None,
            inputs: Vec::new(),
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let job = LocalJob {
        module,
        tasks: &tasks,
        input_dir: None,
        work_dir: work.path(),
        limits: limits(),
    };
    let done = local::run(&rt, &job, 2, &AtomicBool::new(false), |_| {});
    assert_eq!(done.len(), tasks.len());
    for (finished, expected_size) in [(&done[1], 1000), (&done[3], 2000), (&done[7], 3000)] {
        let result = finished.result.as_ref().unwrap();
        assert!(result.outcome.is_success(), "{}", result.outcome);
        assert_eq!(result.outputs[0].size_bytes, expected_size);
        assert!(Path::new(&finished.output_dir).join("big.bin").exists());
    }
    assert!(!done[0].result.as_ref().unwrap().outcome.is_success());
    assert!(!done[2].result.as_ref().unwrap().outcome.is_success());
}
