//! Everything a guest can learn from the WASI host is a function of the task
//! alone: the same task gives the same bytes on every run, on tmpfs and on
//! ext4, and every call that creates something is counted against a limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_exec::{Limits, Outcome, Runtime, Task, TaskResult, WasmConfig, WasmRuntime};
use cairn_wire::ContentId;

/// Creates files, folders and links in /output and writes every answer the
/// host gives about them to stdout (see the fixture's header).
const HOST_STATE_PROBER: &str = include_str!("fixtures/host_state_prober.wat");

/// The prober's records, in the order it writes them. The small-buffer
/// listing of /output follows, one record per call.
const RECORDS: [&str; 43] = [
    "prestat 3",
    "prestat 4",
    "symlink",
    "link",
    "fstat /output",
    "fstat m",
    "fdstat m",
    "seek end m",
    "tell m",
    "seek set m",
    "tell again m",
    "allocate m",
    "set times m",
    "fstat m after set times",
    "set times now m",
    "fstat m after now",
    "sync m",
    "advise m",
    "grow m",
    "fstat m grown",
    "fstat sub",
    "fdstat sub",
    "listing sub",
    "stat link",
    "stat link followed",
    "stat hard",
    "stat m",
    "stat sub",
    "stat sub/inner",
    "stat emptydir",
    "stat a",
    "set times emptydir",
    "stat emptydir after set times",
    "readlink link",
    "listing /output",
    "listing past the end",
    "listing /input",
    "stat ok.txt",
    "fstat /input",
    "fstat stdout",
    "fdstat /input",
    "fdstat /output",
    "fdstat stdout",
];

/// What a task may create, and the most descriptors it may hold open.
const ENTRIES_MAX: u64 = 10_000;
const OPEN_FILES_MAX: u32 = 128;

/// 2000-01-01T00:00:00Z, where the virtual clock starts.
const EPOCH_2000_NS: u64 = 946_684_800 * 1_000_000_000;

/// WASI preview 1 errno values.
const ERRNO_MFILE: u32 = 33;
const ERRNO_NOBUFS: u32 = 42;
const ERRNO_NOTSUP: u32 = 58;

/// WASI preview 1 file types.
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;
const FILETYPE_SYMBOLIC_LINK: u8 = 7;

fn limits() -> Limits {
    Limits {
        fuel: 500_000_000,
        memory_bytes: 32 << 20,
        wall_time: Duration::from_secs(120),
        output_bytes: 1 << 20,
        stdout_bytes: 64 << 10,
        gpus: 0,
        gpu_memory_mib: 0,
    }
}

/// A folder on ext4 (or whatever holds the build), and one on tmpfs where
/// this machine has one: two filesystems that list, number and time their
/// entries differently.
fn filesystems() -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR"))];
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        found.push(shm.to_path_buf());
    } else {
        eprintln!("no /dev/shm here: comparing runs on one filesystem only");
    }
    found
}

/// Runs `module` once in fresh folders under `base`, with `/input/ok.txt`.
/// Returns the result and how many entries the task left in /output.
fn run_in(rt: &WasmRuntime, module: ContentId, base: &Path, limits: Limits) -> (TaskResult, usize) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let input = dir.path().join("input");
    let output = dir.path().join("output");
    std::fs::create_dir(&input).unwrap();
    std::fs::create_dir(&output).unwrap();
    std::fs::write(input.join("ok.txt"), "readable").unwrap();
    let result = rt
        .run(&Task {
            module,
            args: &[],
            seed: [9; 32],
            input_dir: Some(&input),
            output_dir: &output,
            expected_outputs: &[],
            limits,
        })
        .unwrap();
    let entries = std::fs::read_dir(&output).unwrap().count();
    (result, entries)
}

fn load(rt: &WasmRuntime, wat: &str) -> ContentId {
    rt.load(&wat::parse_str(wat).unwrap()).unwrap()
}

/// One answer of the prober: the errno and the bytes the host wrote.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    errno: u32,
    bytes: Vec<u8>,
}

fn records(stdout: &[u8]) -> Vec<Record> {
    let mut found = Vec::new();
    let mut rest = stdout;
    while !rest.is_empty() {
        let errno = u32::from_le_bytes(rest[0..4].try_into().unwrap());
        let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        found.push(Record {
            errno,
            bytes: rest[8..8 + len].to_vec(),
        });
        rest = &rest[8 + len..];
    }
    found
}

fn label(index: usize) -> String {
    match RECORDS.get(index) {
        Some(name) => name.to_string(),
        None => format!("small listing call {}", index - RECORDS.len()),
    }
}

/// The record named `name`, which must have succeeded.
fn record<'r>(all: &'r [Record], name: &str) -> &'r [u8] {
    let index = RECORDS.iter().position(|r| *r == name).unwrap();
    let found = &all[index];
    assert_eq!(found.errno, 0, "{name} failed");
    &found.bytes
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// A WASI `filestat`.
#[derive(Debug)]
struct Filestat {
    dev: u64,
    ino: u64,
    filetype: u8,
    nlink: u64,
    size: u64,
    times: [u64; 3],
}

fn filestat(bytes: &[u8]) -> Filestat {
    assert_eq!(bytes.len(), 64);
    Filestat {
        dev: u64_at(bytes, 0),
        ino: u64_at(bytes, 8),
        filetype: bytes[16],
        nlink: u64_at(bytes, 24),
        size: u64_at(bytes, 32),
        times: [u64_at(bytes, 40), u64_at(bytes, 48), u64_at(bytes, 56)],
    }
}

/// A WASI `dirent` and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dirent {
    next: u64,
    ino: u64,
    kind: u8,
    name: String,
}

/// The whole entries at the start of a listing buffer, and how many bytes
/// of a truncated entry follow them.
fn dirents(bytes: &[u8]) -> (Vec<Dirent>, usize) {
    let mut found = Vec::new();
    let mut at = 0;
    while at + 24 <= bytes.len() {
        let namlen = u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
        if at + 24 + namlen > bytes.len() {
            break;
        }
        assert_eq!(&bytes[at + 21..at + 24], [0, 0, 0], "padding is zero");
        found.push(Dirent {
            next: u64_at(bytes, at),
            ino: u64_at(bytes, at + 8),
            kind: bytes[at + 20],
            name: String::from_utf8(bytes[at + 24..at + 24 + namlen].to_vec()).unwrap(),
        });
        at += 24 + namlen;
    }
    (found, bytes.len() - at)
}

fn names_of(entries: &[Dirent]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

fn probe(rt: &WasmRuntime, base: &Path) -> TaskResult {
    let module = load(rt, HOST_STATE_PROBER);
    let (result, _) = run_in(rt, module, base, limits());
    assert_eq!(
        result.outcome,
        Outcome::Exited(0),
        "the prober failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    result
}

#[test]
fn host_state_prober_reads_the_same_bytes_every_run_on_tmpfs_and_ext4() {
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    let mut runs = Vec::new();
    for base in filesystems() {
        for _ in 0..3 {
            runs.push((base.clone(), probe(&rt, &base)));
        }
    }
    let (first_base, first) = &runs[0];
    let expected = records(&first.stdout);
    assert!(
        expected.len() > RECORDS.len(),
        "the prober answered everything"
    );
    for (base, run) in &runs[1..] {
        let found = records(&run.stdout);
        for (index, (a, b)) in expected.iter().zip(&found).enumerate() {
            assert_eq!(
                a,
                b,
                "'{}' differs between a run in {} and one in {}",
                label(index),
                first_base.display(),
                base.display()
            );
        }
        assert_eq!(expected.len(), found.len(), "a run in {}", base.display());
        assert_eq!(run.digest, first.digest);
        assert_eq!(run.fuel_used, first.fuel_used);
    }
}

#[test]
fn host_state_prober_sees_virtual_metadata() {
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    let result = probe(&rt, Path::new(env!("CARGO_TARGET_TMPDIR")));
    let all = records(&result.stdout);

    assert_eq!(record(&all, "prestat 3"), b"/input");
    assert_eq!(record(&all, "prestat 4"), b"/output");
    for (index, found) in all.iter().enumerate().take(RECORDS.len()) {
        let name = RECORDS[index];
        if !name.starts_with("stat ") && !name.starts_with("fstat ") {
            continue;
        }
        assert_eq!(found.errno, 0, "{name} failed");
        let stat = filestat(&found.bytes);
        assert_eq!(stat.dev, 0, "{name}: {stat:?}");
        assert_eq!(stat.nlink, 1, "{name}: {stat:?}");
        assert_eq!(stat.times, [EPOCH_2000_NS; 3], "{name}: {stat:?}");
        if stat.filetype == FILETYPE_DIRECTORY {
            assert_eq!(stat.size, 0, "{name}: {stat:?}");
        }
    }

    // Sizes of files and links are the task's own.
    let stat = |name| filestat(record(&all, name));
    assert_eq!(
        (stat("fstat m").filetype, stat("fstat m").size),
        (FILETYPE_REGULAR_FILE, 13)
    );
    assert_eq!(stat("fstat m grown").size, 20);
    assert_eq!(stat("stat hard").size, 20);
    assert_eq!(stat("stat a").size, 100);
    assert_eq!(stat("stat sub/inner").size, 21);
    assert_eq!(stat("stat ok.txt").size, 8);
    assert_eq!(
        (stat("stat link").filetype, stat("stat link").size),
        (FILETYPE_SYMBOLIC_LINK, 1)
    );
    assert_eq!(stat("stat link followed").filetype, FILETYPE_REGULAR_FILE);
    assert_eq!(stat("stat sub").filetype, FILETYPE_DIRECTORY);

    // Identity is by name: one name, one number, whether asked by path or
    // through an open descriptor; different names, different numbers.
    assert_eq!(stat("fstat m").ino, stat("stat m").ino);
    assert_eq!(stat("fstat sub").ino, stat("stat sub").ino);
    let inos = [
        "stat m",
        "stat hard",
        "stat a",
        "stat sub",
        "stat link",
        "fstat /output",
    ]
    .map(|name| stat(name).ino);
    for (i, a) in inos.iter().enumerate() {
        assert_ne!(*a, 0);
        assert!(!inos[i + 1..].contains(a), "{inos:?}");
    }

    let at = |name| u64_at(record(&all, name), 0);
    assert_eq!([at("seek end m"), at("tell m")], [13, 13]);
    assert_eq!([at("seek set m"), at("tell again m")], [3, 3]);
    let index = |name| RECORDS.iter().position(|r| *r == name).unwrap();
    assert_eq!(all[index("allocate m")].errno, ERRNO_NOTSUP);
    for name in [
        "set times m",
        "set times now m",
        "sync m",
        "advise m",
        "grow m",
    ] {
        assert_eq!(all[index(name)].errno, 0, "{name}");
    }
    assert_eq!(record(&all, "readlink link"), b"m");
}

#[test]
fn directory_listings_are_sorted_and_resume_from_cookies() {
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    let result = probe(&rt, Path::new(env!("CARGO_TARGET_TMPDIR")));
    let all = records(&result.stdout);

    let (listing, partial) = dirents(record(&all, "listing /output"));
    assert_eq!(partial, 0, "the large buffer holds the whole listing");
    let mut created = vec![
        "m", "c", "x", "a", "k", "b", "zeta", "delta", "q", "Echo", "_u", "0", "h", "yy", "f", "n",
        "sub", "emptydir", "link", "hard",
    ];
    created.sort_unstable();
    let expected: Vec<&str> = [".", ".."].into_iter().chain(created).collect();
    assert_eq!(names_of(&listing), expected);
    for (position, entry) in listing.iter().enumerate() {
        assert_eq!(entry.next, position as u64 + 1, "{entry:?}");
    }
    let entry = |name| listing.iter().find(|e| e.name == name).unwrap();
    assert_eq!(entry("sub").kind, FILETYPE_DIRECTORY);
    assert_eq!(entry("link").kind, FILETYPE_SYMBOLIC_LINK);
    assert_eq!(entry("m").kind, FILETYPE_REGULAR_FILE);
    // A listing's numbers are the ones a stat of the same name gives.
    for name in ["m", "hard", "sub", "link", "a"] {
        let stat = filestat(record(&all, &format!("stat {name}")));
        assert_eq!(entry(name).ino, stat.ino, "{name}");
    }
    assert_eq!(entry(".").ino, filestat(record(&all, "fstat /output")).ino);

    assert!(record(&all, "listing past the end").is_empty());
    assert_eq!(
        names_of(&dirents(record(&all, "listing sub")).0),
        [".", "..", "inner"]
    );
    assert_eq!(
        names_of(&dirents(record(&all, "listing /input")).0),
        [".", "..", "ok.txt"]
    );

    // Resuming 64 bytes at a time gives the same entries, each buffer
    // filled to the last byte (a truncated entry at its end) until the end.
    let small = &all[RECORDS.len()..];
    let mut resumed = Vec::new();
    let mut truncated = 0;
    for (call, found) in small.iter().enumerate() {
        assert_eq!(found.errno, 0);
        let (whole, partial) = dirents(&found.bytes);
        if call + 1 < small.len() {
            assert_eq!(found.bytes.len(), 64, "call {call} filled its buffer");
        } else {
            assert!(found.bytes.len() < 64, "the last call ends the listing");
        }
        truncated += usize::from(partial > 0);
        resumed.extend(whole);
    }
    assert!(truncated > 0, "some entry was cut at a buffer's end");
    assert_eq!(resumed, listing);
}

/// A guest that makes one file and then `count` links to it, each with its
/// own name, with `link` (a call that leaves the status on the stack).
fn link_flooder(link: &str, count: u32) -> String {
    format!(
        r#"(module
          (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_link" (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "t")
          (data (i32.const 16) "l")
          (func (export "_start")
            (local $i i32) (local $e i32)
            (local.set $e (call $open (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 1)
              (i32.const 1) (i64.const 64) (i64.const 64) (i32.const 0) (i32.const 64)))
            (if (local.get $e) (then (call $exit (local.get $e))))
            (loop $more
              ;; the name: "l" and three letters, base 26
              (i32.store8 (i32.const 17) (i32.add (i32.const 97) (i32.rem_u (local.get $i) (i32.const 26))))
              (i32.store8 (i32.const 18) (i32.add (i32.const 97)
                (i32.rem_u (i32.div_u (local.get $i) (i32.const 26)) (i32.const 26))))
              (i32.store8 (i32.const 19) (i32.add (i32.const 97)
                (i32.rem_u (i32.div_u (local.get $i) (i32.const 676)) (i32.const 26))))
              (local.set $e {link})
              (if (local.get $e) (then (call $exit (local.get $e))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $more (i32.lt_u (local.get $i) (i32.const {count}))))))"#
    )
}

#[test]
fn link_flooder_is_stopped_at_the_entries_limit() {
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let symlink =
        "(call $symlink (i32.const 0) (i32.const 1) (i32.const 4) (i32.const 16) (i32.const 4))";
    let hard_link = "(call $link (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 4) (i32.const 16) (i32.const 4))";
    for (kind, call) in [("symlinks", symlink), ("hard links", hard_link)] {
        let module = load(&rt, &link_flooder(call, 12_000));
        let (result, entries) = run_in(&rt, module, &base, limits());
        assert_eq!(
            result.outcome,
            Outcome::EntriesLimit { limit: ENTRIES_MAX },
            "a flood of {kind}"
        );
        assert!(
            entries as u64 <= ENTRIES_MAX,
            "{entries} entries were created with {kind}"
        );
    }
    // Under the limit, links are allowed.
    let module = load(&rt, &link_flooder(hard_link, 100));
    let (result, entries) = run_in(&rt, module, &base, limits());
    assert_eq!(result.outcome, Outcome::Exited(0));
    assert_eq!(entries, 101);
}

/// A guest that opens `/output/big` and runs `grow` with its descriptor in
/// `$fd`, then truncates every file it made back to nothing, so that only
/// the growing itself can be held against it.
fn sparse_file_grower(grow: &str) -> String {
    format!(
        r#"(module
          (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $set_size (param i32 i64) (result i32)))
          (import "wasi_snapshot_preview1" "fd_pwrite" (func $pwrite (param i32 i32 i32 i64 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_allocate" (func $allocate (param i32 i64 i64) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "big")
          (data (i32.const 16) "other")
          (data (i32.const 32) "\28\00\00\00\01\00\00\00x")
          (func $check (param $e i32)
            (if (local.get $e) (then (call $exit (local.get $e)))))
          (func $create (param $name i32) (param $len i32) (result i32)
            (call $check (call $open (i32.const 4) (i32.const 0) (local.get $name) (local.get $len)
              (i32.const 1) (i64.const 102) (i64.const 102) (i32.const 0) (i32.const 64)))
            (i32.load (i32.const 64)))
          (func (export "_start")
            (local $fd i32) (local $other i32)
            (local.set $fd (call $create (i32.const 0) (i32.const 3)))
            (local.set $other (call $create (i32.const 16) (i32.const 5)))
            {grow}
            (call $check (call $set_size (local.get $fd) (i64.const 0)))
            (call $check (call $set_size (local.get $other) (i64.const 0)))))"#
    )
}

#[test]
fn sparse_file_grower_is_stopped_by_the_output_limit() {
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    let terabyte = 1u64 << 40;
    let growers = [
        (
            "ftruncate to 1 TB",
            format!("(call $check (call $set_size (local.get $fd) (i64.const {terabyte})))"),
        ),
        (
            "pwrite at 1 TB",
            format!(
                "(call $check (call $pwrite (local.get $fd) (i32.const 32) (i32.const 1) (i64.const {terabyte}) (i32.const 48)))"
            ),
        ),
        (
            "seek to 1 TB and write",
            format!(
                "(call $check (call $seek (local.get $fd) (i64.const {terabyte}) (i32.const 0) (i32.const 48)))
                 (call $check (call $write (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 48)))"
            ),
        ),
        (
            // Each under the limit, together over it: growth is charged.
            "ftruncate two files to 768 KiB",
            "(call $check (call $set_size (local.get $fd) (i64.const 786432)))
             (call $check (call $set_size (local.get $other) (i64.const 786432)))"
                .to_string(),
        ),
    ];
    for base in filesystems() {
        for (name, grow) in &growers {
            let module = load(&rt, &sparse_file_grower(grow));
            let (result, _) = run_in(&rt, module, &base, limits());
            assert_eq!(
                result.outcome,
                Outcome::OutputLimit {
                    stream: "output",
                    limit: limits().output_bytes
                },
                "{name} in {}",
                base.display()
            );
        }
    }

    // Growing within the budget is allowed.
    let module = load(
        &rt,
        &sparse_file_grower("(call $check (call $set_size (local.get $fd) (i64.const 4096)))"),
    );
    let (result, _) = run_in(
        &rt,
        module,
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        limits(),
    );
    assert_eq!(result.outcome, Outcome::Exited(0));

    // Reserving space is refused outright, the same way everywhere.
    let module = load(
        &rt,
        &sparse_file_grower(&format!(
            "(call $exit (call $allocate (local.get $fd) (i64.const 0) (i64.const {terabyte})))"
        )),
    );
    let (result, _) = run_in(
        &rt,
        module,
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        limits(),
    );
    assert_eq!(result.outcome, Outcome::Exited(ERRNO_NOTSUP as i32));
}

/// Opens `/output/f` again and again without closing it, then writes how
/// many opens succeeded and the errno of the first that failed (u32 LE
/// each) to stdout.
const DESCRIPTOR_HOARDER: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (data (i32.const 16) "\20\00\00\00\08\00\00\00")
  (func (export "_start")
    (local $opened i32) (local $e i32)
    (loop $more
      (local.set $e (call $open (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 1)
        (i32.const 1) (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 64)))
      (if (i32.eqz (local.get $e))
        (then
          (local.set $opened (i32.add (local.get $opened) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $opened) (i32.const 300))))))
    (i32.store (i32.const 32) (local.get $opened))
    (i32.store (i32.const 36) (local.get $e))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 48)))))"#;

#[test]
fn descriptor_hoarder_is_refused_at_the_same_count_everywhere() {
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    let module = load(&rt, DESCRIPTOR_HOARDER);
    for base in filesystems() {
        let (result, _) = run_in(&rt, module, &base, limits());
        assert_eq!(result.outcome, Outcome::Exited(0));
        let opened = u32::from_le_bytes(result.stdout[0..4].try_into().unwrap());
        let errno = u32::from_le_bytes(result.stdout[4..8].try_into().unwrap());
        assert_eq!(
            (opened, errno),
            (OPEN_FILES_MAX, ERRNO_MFILE),
            "opened, and why the next open failed, in {}",
            base.display()
        );
    }
}

/// Lists `/input` into a 2 MiB buffer and writes one record (as the
/// prober does) with what it got.
const INPUT_LISTER: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 48)
  (func (export "_start")
    (local $e i32)
    (local.set $e (call $readdir (i32.const 3) (i32.const 65536) (i32.const 2097152) (i64.const 0) (i32.const 1028)))
    (if (local.get $e) (then (i32.store (i32.const 1028) (i32.const 0))))
    (i32.store (i32.const 1024) (local.get $e))
    ;; iovec: the record header, then the listing in place
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.load (i32.const 1028)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#;

/// Lists an input folder of `count` files named `prefix` and a number.
fn list_input(rt: &WasmRuntime, count: usize, prefix: &str) -> (Record, Vec<String>) {
    let module = load(rt, INPUT_LISTER);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let input = dir.path().join("input");
    let output = dir.path().join("output");
    std::fs::create_dir(&input).unwrap();
    std::fs::create_dir(&output).unwrap();
    // Created in an order that is not the sorted one.
    let mut names: Vec<String> = (0..count)
        .map(|i| format!("{prefix}{}", (i * 7919) % count))
        .collect();
    for name in &names {
        std::fs::write(input.join(name), "").unwrap();
    }
    let mut generous = limits();
    generous.stdout_bytes = 4 << 20;
    generous.memory_bytes = 64 << 20;
    let result = rt
        .run(&Task {
            module,
            args: &[],
            seed: [9; 32],
            input_dir: Some(&input),
            output_dir: &output,
            expected_outputs: &[],
            limits: generous,
        })
        .unwrap();
    assert_eq!(result.outcome, Outcome::Exited(0));
    let mut all = records(&result.stdout);
    assert_eq!(all.len(), 1);
    names.sort_unstable();
    (all.remove(0), names)
}

#[test]
fn crowded_input_folder_is_listed_whole_or_refused() {
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    // Over a mebibyte of listing: read in growing host buffers, up to the
    // largest one.
    let long = "n".repeat(110);
    let (found, names) = list_input(&rt, 9_000, &long);
    assert_eq!(found.errno, 0);
    let (entries, partial) = dirents(&found.bytes);
    assert_eq!(partial, 0);
    assert!(found.bytes.len() > 1 << 20, "{}", found.bytes.len());
    let expected: Vec<&str> = [".", ".."]
        .into_iter()
        .chain(names.iter().map(String::as_str))
        .collect();
    let found = names_of(&entries);
    let first_difference = found.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        (found.len(), first_difference),
        (expected.len(), None),
        "listed in another order or short"
    );

    // More entries than a task may create: refused, the same everywhere.
    let (found, _) = list_input(&rt, ENTRIES_MAX as usize + 1, "f");
    assert_eq!(found.errno, ERRNO_NOBUFS);
}

/// A stepped guest that creates a file each step and reads the next
/// 40 bytes of the /output listing from the cookie where the last step
/// stopped: a listing that spans steps.
const STEPPED_LISTER: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (global $cookie (mut i64) (i64.const 0))
  (data (i32.const 0) "f?")
  (func (export "_start"))
  (func (export "cairn_step") (result i32)
    (local $used i32) (local $pos i32) (local $namlen i32)
    (i32.store8 (i32.const 1) (i32.add (i32.const 65) (global.get $n)))
    (drop (call $open (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 2)
      (i32.const 1) (i64.const 64) (i64.const 64) (i32.const 0) (i32.const 16)))
    (drop (call $close (i32.load (i32.const 16))))
    (drop (call $readdir (i32.const 4) (i32.const 1024) (i32.const 40) (global.get $cookie) (i32.const 20)))
    (local.set $used (i32.load (i32.const 20)))
    (i32.store (i32.const 32) (i32.const 1024))
    (i32.store (i32.const 36) (local.get $used))
    (drop (call $write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 24)))
    (block $whole
      (loop $entries
        (br_if $whole (i32.gt_u (i32.add (local.get $pos) (i32.const 24)) (local.get $used)))
        (local.set $namlen (i32.load (i32.add (i32.const 1040) (local.get $pos))))
        (br_if $whole
          (i32.gt_u (i32.add (i32.add (local.get $pos) (i32.const 24)) (local.get $namlen)) (local.get $used)))
        (global.set $cookie (i64.load (i32.add (i32.const 1024) (local.get $pos))))
        (local.set $pos (i32.add (i32.add (local.get $pos) (i32.const 24)) (local.get $namlen)))
        (br $entries)))
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.lt_u (global.get $n) (i32.const 8))))"#;

/// Runs `f` on `module`'s task with an output folder no run used before,
/// as on another machine.
fn in_fresh_output<T>(
    module: ContentId,
    dir: &Path,
    runs: &mut u32,
    f: impl FnOnce(&Task<'_>) -> T,
) -> T {
    *runs += 1;
    let input = dir.join("input");
    let output = dir.join(runs.to_string());
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir(&output).unwrap();
    f(&Task {
        module,
        args: &[],
        seed: [9; 32],
        input_dir: Some(&input),
        output_dir: &output,
        expected_outputs: &[],
        limits: limits(),
    })
}

#[test]
fn a_listing_that_spans_steps_replays_the_same_from_a_snapshot() {
    let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
    let module = load(&rt, STEPPED_LISTER);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runs = &mut 0;
    let trace = in_fresh_output(module, dir.path(), runs, |task| rt.trace(task).unwrap());
    assert!(trace.positions() > 8, "{} positions", trace.positions());
    for position in 1..trace.positions() - 1 {
        let snapshot = in_fresh_output(module, dir.path(), runs, |task| {
            rt.snapshot_at(task, position).unwrap()
        });
        let next = in_fresh_output(module, dir.path(), runs, |task| {
            rt.referee(task, Some(&snapshot)).unwrap()
        });
        assert_eq!(
            Some(next.hash),
            trace.hash_at(position + 1),
            "one step from {position} reaches the next position"
        );
    }
}
