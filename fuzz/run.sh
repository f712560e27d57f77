#!/usr/bin/env bash
# Fuzzes every decoder that reads bytes from outside a node (signed
# envelopes, market messages, ledger transactions, task snapshots, job
# files), each for a bounded time from its committed seeds in corpus/.
# Any crash fails the run; libFuzzer prints the input and cargo fuzz
# leaves it under fuzz/artifacts/<target>/. A crash becomes a unit test in
# the decoder's crate, with the crashing bytes.
#
#   bash fuzz/run.sh                  # each target for 20 s
#   FUZZ_SECONDS=60 bash fuzz/run.sh  # longer
#
# The committed corpus is only read: what a run discovers goes to a scratch
# folder that is removed afterwards (regenerate the seeds with the
# seed_corpus example, see examples/seed_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")"

cargo_fuzz_version=0.13.1
seconds="${FUZZ_SECONDS:-20}"

# Without a sanitizer, libFuzzer's instrumentation needs no nightly
# feature: the project's pinned toolchain builds the targets, so CI needs
# no second toolchain. Safe Rust gains little from AddressSanitizer; for a
# longer local hunt: FUZZ_TOOLCHAIN=nightly FUZZ_SANITIZER=address.
# Debug assertions and overflow checks are on either way.
toolchain="${FUZZ_TOOLCHAIN:-$(sed -n 's/^channel *= *"\(.*\)"/\1/p' ../rust-toolchain.toml)}"
flags=(--sanitizer "${FUZZ_SANITIZER:-none}")

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $cargo_fuzz_version"; then
    cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

cargo "+$toolchain" fuzz build "${flags[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo "+$toolchain" fuzz list); do
    echo "fuzz: $target for ${seconds}s"
    mkdir -p "$scratch/$target"
    # The first folder receives new inputs; the committed seeds are read.
    # -timeout: an input that takes seconds is a bug (a peer could send it
    # in a loop); -rss_limit_mb: so is one that allocates without bound.
    log="$scratch/$target.log"
    if ! cargo "+$toolchain" fuzz run "${flags[@]}" "$target" \
        "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 80 "$log" >&2
        echo "fuzz: $target crashed; the input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
done
echo "fuzz: every target ran ${seconds}s without a crash"
