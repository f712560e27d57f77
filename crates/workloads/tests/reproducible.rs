//! The committed built-in modules are exactly what their sources build to.
//!
//! A built-in module's content id is part of every job that names it
//! (`module = "cairn:render"`), so every node must carry the same bytes. They
//! are committed under `crates/workloads/wasm/` and this test rebuilds them
//! from `workloads/` with the pinned toolchain and path-independent flags,
//! then compares byte for byte. After changing a guest's source, run
//!
//! ```sh
//! CAIRN_BLESS=1 cargo test -p cairn-workloads --test reproducible
//! ```
//!
//! to write the new bytes (see `docs/runtime.md`, "Built-in modules").

use std::path::{Path, PathBuf};
use std::process::Command;

/// The toolchain the committed bytes were built with. Another compiler
/// builds other bytes, which would be another `cairn:render`.
const RUSTC_VERSION: &str = "rustc 1.95.0 (59807616e 2026-04-14)";

const TARGET: &str = "wasm32-wasip1";

/// The packages of the built-in modules.
const GUESTS: [&str; 5] = [
    "cairn-render",
    "hashsearch",
    "hostile",
    "cairn-embed",
    "cairn-train",
];

#[test]
fn committed_modules_rebuild_from_source_byte_for_byte() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/workloads sits two levels below the workspace")
        .to_path_buf();
    let rustc = rustc_version();
    assert_eq!(
        rustc, RUSTC_VERSION,
        "the built-in modules are pinned to {RUSTC_VERSION}; rust-toolchain.toml selects it"
    );
    assert_eq!(
        GUESTS.len(),
        cairn_workloads::ALL.len(),
        "every built-in workload's package is in GUESTS"
    );
    ensure_target();

    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guests");
    let built = build_guests(&workspace, &target_dir);
    let bless = std::env::var("CAIRN_BLESS").as_deref() == Ok("1");
    let mut differing = Vec::new();
    for workload in cairn_workloads::ALL {
        let fresh = std::fs::read(built.join(format!("{}.wasm", workload.name)))
            .unwrap_or_else(|e| panic!("reading the rebuilt {}: {e}", workload.name));
        let committed = workspace
            .join("crates/workloads/wasm")
            .join(format!("{}.wasm", workload.name));
        println!(
            "{}: committed {} bytes ({}), rebuilt {} bytes ({})",
            workload.name,
            workload.wasm.len(),
            blake3::hash(workload.wasm),
            fresh.len(),
            blake3::hash(&fresh),
        );
        if fresh != workload.wasm {
            if bless {
                std::fs::write(&committed, &fresh)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", committed.display()));
            }
            differing.push(workload.name);
        }
    }
    if bless && !differing.is_empty() {
        println!("wrote new bytes for {differing:?}; rebuild cairn to embed them");
    } else {
        assert!(
            differing.is_empty(),
            "the committed modules {differing:?} differ from a rebuild of their sources; \
             if the sources changed on purpose, run \
             `CAIRN_BLESS=1 cargo test -p cairn-workloads --test reproducible` and commit the result"
        );
    }
}

/// Builds every guest and returns the folder holding the `.wasm` files.
fn build_guests(workspace: &Path, target_dir: &Path) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    // Paths end up in the module (panic locations): map the checkout and the
    // registry to fixed names so any clone anywhere builds the same bytes.
    let rustflags = [
        format!("--remap-path-prefix={}=/cairn", workspace.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        // 128-bit SIMD everywhere, not only in the kernels that ask for it:
        // its lanes compute what scalar code does, bit for bit (no fused
        // multiply-add; NaNs are made canonical by the runtime).
        "-Ctarget-feature=+simd128".to_string(),
    ]
    .join("\x1f");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // One build per guest: built together, cargo would unify the features of
    // their shared dependencies, and a new guest's dependencies could change
    // another's bytes (and so its identity).
    for package in GUESTS {
        let mut command = Command::new(&cargo);
        command
            .current_dir(workspace)
            .args([
                "build",
                "--locked",
                "--profile",
                "guest",
                "--target",
                TARGET,
                "--bins",
                "-p",
                package,
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .env("CARGO_ENCODED_RUSTFLAGS", &rustflags);
        // The host build's settings must not reach the guest build.
        for var in [
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_LLVM_COV",
            "CARGO_INCREMENTAL",
        ] {
            command.env_remove(var);
        }
        let status = command.status().expect("running cargo for the guests");
        assert!(
            status.success(),
            "building the guest {package} failed (see above)"
        );
    }
    target_dir.join(TARGET).join("guest")
}

/// The compiler cargo uses.
fn rustc() -> Command {
    Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
}

fn rustc_version() -> String {
    let output = rustc().arg("-V").output().expect("running rustc -V");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Installs the wasm32-wasip1 standard library if this toolchain lacks it:
/// only this test needs it (`cairn` itself embeds the committed modules).
fn ensure_target() {
    let output = rustc()
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .expect("running rustc --print target-libdir");
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success() && libdir.is_dir() {
        return;
    }
    println!("installing the {TARGET} target with rustup, to rebuild the built-in modules");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .expect("running rustup (needed once, to add the wasm32-wasip1 target)");
    assert!(status.success(), "rustup target add {TARGET} failed");
}
