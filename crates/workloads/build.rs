//! Builds the guest programs in `workloads/` for `wasm32-wasip1` with a
//! nested cargo, so a plain `cargo build` or `cargo test` of the workspace
//! produces them with no manual step.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Guest binaries and the packages that hold them.
const GUESTS: &[(&str, &str)] = &[
    ("cairn-render", "render"),
    ("hashsearch", "hashsearch"),
    ("hostile", "hostile"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.ancestors().nth(2).unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out (or one level
    // deeper with --target); keep guests beside it under <target>/guests so
    // they survive `cargo clean -p` and are shared by every host profile.
    let target_dir = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| out_dir.ancestors().nth(4).unwrap())
        .join("guests");

    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("workloads").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip1",
            "--bins",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in GUESTS {
        command.args(["-p", package]);
    }
    // Host build settings must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("running cargo for the guest workloads");
    if !status.success() {
        panic!(
            "building the guest workloads for wasm32-wasip1 failed (see above). \
             If the target is missing, `rustup target add wasm32-wasip1` installs it \
             (rust-toolchain.toml lists it, so rustup normally does this by itself)."
        );
    }
    let built = target_dir.join("wasm32-wasip1").join("guest");
    for (_, bin) in GUESTS {
        let wasm = built.join(format!("{bin}.wasm"));
        assert!(wasm.exists(), "guest {} was not built", wasm.display());
        std::fs::copy(&wasm, out_dir.join(format!("{bin}.wasm"))).unwrap();
    }
}
