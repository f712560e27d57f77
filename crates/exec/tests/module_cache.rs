//! The on-disk cache of compiled modules: a module compiled once loads from
//! it, results do not change, and a damaged, foreign or stale entry is
//! compiled again, never loaded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_exec::{
    Limits, ModuleCache, NanCanonicalization, Runtime, Task, WasmConfig, WasmRuntime,
};
use cairn_wire::ContentId;

const CACHE_BYTES_MAX: u64 = 1 << 30;

fn cached(dir: &Path, bytes_max: u64) -> (WasmRuntime, ModuleCache) {
    cached_with(dir, bytes_max, WasmConfig::default())
}

fn cached_with(dir: &Path, bytes_max: u64, config: WasmConfig) -> (WasmRuntime, ModuleCache) {
    let cache = ModuleCache::open(dir, bytes_max).unwrap();
    let runtime = WasmRuntime::new(config).unwrap().with_cache(cache.clone());
    (runtime, cache)
}

/// The limits every task of these tests runs under.
const LIMITS: Limits = Limits {
    fuel: 1_000_000_000,
    memory_bytes: 64 << 20,
    wall_time: Duration::from_secs(120),
    output_bytes: 1 << 20,
    stdout_bytes: 16 << 10,
    gpus: 0,
    gpu_memory_mib: 0,
};

/// Runs one hashsearch task and returns its digest.
fn digest_of(runtime: &WasmRuntime, module: ContentId) -> ContentId {
    let out = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--prefix", "cache", "--start", "0", "--count", "2000", "--bits", "8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let result = runtime
        .run(&Task {
            module,
            args: &args,
            seed: [9; 32],
            input_dir: None,
            output_dir: out.path(),
            expected_outputs: &[],
            limits: LIMITS,
        })
        .unwrap();
    assert!(result.outcome.is_success(), "{}", result.outcome);
    result.digest
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm" || x == "wasm"))
        .collect();
    found.sort();
    found
}

#[test]
fn a_module_compiled_once_loads_from_the_cache_and_runs_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = cairn_workloads::HASHSEARCH.wasm;
    let (first, cache) = cached(dir.path(), CACHE_BYTES_MAX);
    let module = first.load(wasm).unwrap();
    assert_eq!(cache.counts(), (0, 1), "compiled the first time");
    assert!(first.is_compiled(&module));
    let expected = digest_of(&first, module);

    // A new runtime (a restarted node, or another node on the machine).
    let (second, cache) = cached(dir.path(), CACHE_BYTES_MAX);
    assert!(second.is_compiled(&module), "known before loading");
    assert_eq!(second.load(wasm).unwrap(), module);
    assert_eq!(cache.counts(), (1, 0), "loaded, not compiled");
    assert_eq!(digest_of(&second, module), expected);
    assert_eq!(entries(dir.path()).len(), 1);
}

/// Something that can happen to a file on disk.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
fn a_damaged_entry_is_compiled_again_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = cairn_workloads::HASHSEARCH.wasm;
    let (first, _) = cached(dir.path(), CACHE_BYTES_MAX);
    let module = first.load(wasm).unwrap();
    let expected = digest_of(&first, module);
    let entry = entries(dir.path()).remove(0);
    let sound = std::fs::read(&entry).unwrap();

    let damages: [(&str, Damage); 4] = [
        (
            "a flipped payload bit",
            Box::new(|b| *b.last_mut().unwrap() ^= 1),
        ),
        ("a torn write", Box::new(|b| b.truncate(b.len() / 2))),
        ("another format", Box::new(|b| b[0] = b'X')),
        ("an empty file", Box::new(|b| b.clear())),
    ];
    for (what, damage) in damages {
        let mut bytes = sound.clone();
        damage(&mut bytes);
        std::fs::write(&entry, &bytes).unwrap();
        let (runtime, cache) = cached(dir.path(), CACHE_BYTES_MAX);
        assert_eq!(runtime.load(wasm).unwrap(), module);
        assert_eq!(cache.counts(), (0, 1), "{what}: compiled, not loaded");
        assert_eq!(digest_of(&runtime, module), expected, "{what}");
        // The entry was replaced by a sound one, which the next node loads.
        let (next, cache) = cached(dir.path(), CACHE_BYTES_MAX);
        next.load(wasm).unwrap();
        assert_eq!(cache.counts(), (1, 0), "{what}: the entry was rewritten");
    }
}

#[test]
fn another_modules_entry_under_this_name_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, _) = cached(dir.path(), CACHE_BYTES_MAX);
    let search = runtime.load(cairn_workloads::HASHSEARCH.wasm).unwrap();
    let search_entry = entries(dir.path()).remove(0);
    runtime.load(cairn_workloads::HOSTILE.wasm).unwrap();
    let hostile_entry = entries(dir.path())
        .into_iter()
        .find(|p| *p != search_entry)
        .unwrap();
    // A foreign file, intact in itself, put where hashsearch's entry goes.
    std::fs::copy(&hostile_entry, &search_entry).unwrap();
    let (fresh, cache) = cached(dir.path(), CACHE_BYTES_MAX);
    assert_eq!(
        fresh.load(cairn_workloads::HASHSEARCH.wasm).unwrap(),
        search
    );
    assert_eq!(cache.counts(), (0, 1));
    assert_eq!(digest_of(&fresh, search), digest_of(&runtime, search));
}

#[test]
fn an_engine_configured_differently_compiles_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = cairn_workloads::HASHSEARCH.wasm;
    let (metered, _) = cached(dir.path(), CACHE_BYTES_MAX);
    let module = metered.load(wasm).unwrap();
    for config in [
        WasmConfig {
            metered: false,
            ..WasmConfig::default()
        },
        WasmConfig {
            nan_canonicalization: NanCanonicalization::EveryOperation,
            ..WasmConfig::default()
        },
        WasmConfig {
            pause: false,
            ..WasmConfig::default()
        },
    ] {
        let (other, cache) = cached_with(dir.path(), CACHE_BYTES_MAX, config);
        assert!(!other.is_compiled(&module), "{config:?}");
        other.load(wasm).unwrap();
        assert_eq!(cache.counts(), (0, 1), "{config:?}");
    }
    assert_eq!(entries(dir.path()).len(), 4, "one entry per configuration");
}

/// Loads `wasm` with `runtime` and returns the entry that appeared for it.
fn load_new(runtime: &WasmRuntime, dir: &Path, wasm: &[u8]) -> (ContentId, PathBuf) {
    let (module, added) = load_adding(runtime, dir, wasm);
    let entry = added
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .expect("a new entry");
    (module, entry)
}

/// Loads `wasm` and returns what it added to the cache: its compiled
/// entry, and its bytes if it can pause (kept to build the variant that
/// stops for a trace).
fn load_adding(runtime: &WasmRuntime, dir: &Path, wasm: &[u8]) -> (ContentId, Vec<PathBuf>) {
    let before = entries(dir);
    let module = runtime.load(wasm).unwrap();
    let added = entries(dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    (module, added)
}

fn age(entry: &Path, seconds: u64) {
    let when = std::time::SystemTime::now() - Duration::from_secs(seconds);
    std::fs::File::options()
        .write(true)
        .open(entry)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn size(entry: &Path) -> u64 {
    std::fs::metadata(entry).unwrap().len()
}

#[test]
fn the_cache_stays_within_its_bound_dropping_the_least_recently_used() {
    let probe_dir = tempfile::tempdir().unwrap();
    let (probe, _) = cached(probe_dir.path(), CACHE_BYTES_MAX);
    let sizes: Vec<u64> = [
        cairn_workloads::HASHSEARCH.wasm,
        cairn_workloads::HOSTILE.wasm,
        cairn_workloads::RENDER.wasm,
    ]
    .iter()
    .map(|wasm| {
        let (_, added) = load_adding(&probe, probe_dir.path(), wasm);
        added.iter().map(|p| size(p)).sum()
    })
    .collect();
    // Room for hashsearch and render, not for hostile as well.
    let bound = sizes[0] + sizes[2] + sizes[1] / 2;

    let dir = tempfile::tempdir().unwrap();
    let (runtime, _) = cached(dir.path(), bound);
    let (search, search_files) =
        load_adding(&runtime, dir.path(), cairn_workloads::HASHSEARCH.wasm);
    let (hostile, hostile_files) = load_adding(&runtime, dir.path(), cairn_workloads::HOSTILE.wasm);
    search_files.iter().for_each(|p| age(p, 200));
    hostile_files.iter().for_each(|p| age(p, 100));
    // Used again by another node: hashsearch is now the more recent.
    let (again, _) = cached(dir.path(), bound);
    again.load(cairn_workloads::HASHSEARCH.wasm).unwrap();
    let (render, _) = load_new(&runtime, dir.path(), cairn_workloads::RENDER.wasm);

    let total: u64 = entries(dir.path()).iter().map(|p| size(p)).sum();
    assert!(total <= bound, "{total} > {bound}");
    let (check, _) = cached(dir.path(), bound);
    assert!(check.is_compiled(&render), "the newest entry stays");
    assert!(check.is_compiled(&search), "the recently used entry stays");
    assert!(!check.is_compiled(&hostile), "the least recently used goes");
}

#[test]
fn nodes_loading_a_new_module_at_once_compile_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = cairn_workloads::RENDER.wasm;
    // Two runtimes (two nodes on one machine), two loaders each (a
    // prefetch and a lease arriving together).
    let nodes = [
        cached(dir.path(), CACHE_BYTES_MAX),
        cached(dir.path(), CACHE_BYTES_MAX),
    ];
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|scope| {
        for (runtime, _) in &nodes {
            for _ in 0..2 {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    runtime.load(wasm).unwrap();
                });
            }
        }
    });
    let (loaded, compiled) = nodes
        .iter()
        .map(|(_, cache)| cache.counts())
        .fold((0, 0), |(l, c), (dl, dc)| (l + dl, c + dc));
    assert_eq!(compiled, 1, "one compile on the machine");
    assert_eq!(
        loaded, 1,
        "the other node loaded it; its second loader waited"
    );
}

#[test]
fn a_module_compiled_before_loads_by_its_id_alone() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = cairn_workloads::HASHSEARCH.wasm;
    let id = ContentId::of(wasm);
    let (before, _) = cached(dir.path(), CACHE_BYTES_MAX);
    assert!(!before.load_compiled(&id).unwrap(), "nothing compiled yet");
    let expected = digest_of(&before, before.load(wasm).unwrap());

    // A restarted provider: the bytes need not be fetched again.
    let (after, cache) = cached(dir.path(), CACHE_BYTES_MAX);
    assert!(after.load_compiled(&id).unwrap());
    assert_eq!(cache.counts(), (1, 0));
    assert_eq!(digest_of(&after, id), expected);
    // Without a cache there is nothing to load by id.
    let plain = WasmRuntime::new(WasmConfig::default()).unwrap();
    assert!(!plain.load_compiled(&id).unwrap());
}

/// A `module_flooder` makes a provider load more modules than it keeps in
/// memory (every order it bids on loads one). Memory holds a bounded set;
/// a module set aside still runs, from the disk cache, with the same
/// result.
#[test]
fn module_flooder_cannot_evict_a_module_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, _cache) = cached(dir.path(), CACHE_BYTES_MAX);
    let search = runtime.load(cairn_workloads::HASHSEARCH.wasm).unwrap();
    let expected = digest_of(&runtime, search);
    for i in 0..80 {
        let wat = format!(
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (drop (i32.const {i}))))"#
        );
        runtime.load(&wat::parse_str(wat).unwrap()).unwrap();
    }
    assert!(!runtime.is_loaded(&search), "memory kept every module");
    assert_eq!(digest_of(&runtime, search), expected);
    assert!(
        runtime.is_loaded(&search),
        "it came back from the disk cache"
    );
}

/// A node that loaded a pausable module compiled (without its bytes) can
/// still trace it: the bytes kept beside the cache build the variant that
/// stops, and the trace ends in the plain run's result.
#[test]
fn a_module_loaded_compiled_can_still_be_traced() {
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "_start") (local i32)
               (local.set 0 (i32.const 4000000))
               (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))))"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = cached(dir.path(), CACHE_BYTES_MAX);
    let module = first.load(&wasm).unwrap();
    let (second, _) = cached(dir.path(), CACHE_BYTES_MAX);
    assert!(second.load_compiled(&module).unwrap());
    let out = tempfile::tempdir().unwrap();
    let task = Task {
        module,
        args: &[],
        seed: [9; 32],
        input_dir: None,
        output_dir: out.path(),
        expected_outputs: &[],
        limits: LIMITS,
    };
    let run = second.run(&task).unwrap();
    let trace = second.trace(&task).unwrap();
    assert!(trace.states.len() > 2, "{} states", trace.states.len());
    assert_eq!(trace.digest, run.digest);
}
