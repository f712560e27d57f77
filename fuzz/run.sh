#!/usr/bin/env bash
# Fuzzes every decoder that reads bytes from outside a node (signed
# envelopes, market messages, ledger transactions, task snapshots, job
# files), each for a bounded time from its committed seeds in corpus/.
# Any crash fails the run; libFuzzer prints the input and leaves it under
# fuzz/artifacts/<target>/. A crash becomes a unit test in the decoder's
# crate, with the crashing bytes.
#
#   bash fuzz/run.sh                  # each target for 20 s
#   FUZZ_SECONDS=60 bash fuzz/run.sh  # longer
#
# The committed corpus is only read: what a run discovers goes to a scratch
# folder that is removed afterwards (regenerate the seeds with the
# seed_corpus example, see examples/seed_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
toolchain="${FUZZ_TOOLCHAIN:-$(sed -n 's/^channel *= *"\(.*\)"/\1/p' ../rust-toolchain.toml)}"
sanitizer="${FUZZ_SANITIZER:-none}"
host="$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="$PWD/target"

if [ "$sanitizer" = none ]; then
    # Without a sanitizer, libFuzzer's instrumentation needs no nightly
    # feature, and no cargo-fuzz (a minute to install on a fresh machine):
    # cargo builds the targets with the flags cargo-fuzz 0.13 passes, on
    # the project's pinned toolchain. Debug assertions and overflow checks
    # are on. Safe Rust gains little from AddressSanitizer; for a longer
    # local hunt: FUZZ_TOOLCHAIN=nightly FUZZ_SANITIZER=address (which uses
    # cargo-fuzz, installing it if missing).
    RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
-Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Ccodegen-units=1" \
        cargo "+$toolchain" build --release --target "$host" --bins
else
    cargo_fuzz_version=0.13.1
    if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $cargo_fuzz_version"; then
        cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
    fi
    cargo "+$toolchain" fuzz build --sanitizer "$sanitizer"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for source in fuzz_targets/*.rs; do
    target="$(basename "$source" .rs)"
    echo "fuzz: $target for ${seconds}s"
    mkdir -p "$scratch/$target" "artifacts/$target"
    # The first folder receives new inputs; the committed seeds are read.
    # -timeout: an input that takes seconds is a bug (a peer could send it
    # in a loop); -rss_limit_mb: so is one that allocates without bound.
    log="$scratch/$target.log"
    if ! "target/$host/release/$target" "$scratch/$target" "corpus/$target" \
        -artifact_prefix="artifacts/$target/" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 80 "$log" >&2
        echo "fuzz: $target crashed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
done
echo "fuzz: every target ran ${seconds}s without a crash"
