#!/usr/bin/env bash
# The dependency update routine (docs/MAINTAINING.md):
#   1. cargo update (every crate, or those named: `scripts/update-deps.sh -p tract-onnx`),
#      preferring versions whose rust-version fits the workspace's;
#   2. prints what changed in Cargo.lock;
#   3. fuzz/Cargo.lock brought in step (scripts/sync-fuzz-lock.sh), then the supply-chain
#      gate: scripts/ci-deny.sh (advisories, licences, bans, sources) on both locks, and
#      the minimum Rust version (scripts/check-msrv.py);
#   4. clippy and the tests, --locked;
#   5. the benchmarks (bench/run.sh; needs the MXNet venv, see DEVELOPERS.md) unless
#      --no-bench is given.
# Stops at the first failure; Cargo.lock stays updated so the failure can be looked at
# (`git checkout Cargo.lock` undoes the update).
#
#   scripts/update-deps.sh [--no-bench] [cargo update arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C  # sort, comm and join must agree on the order

bench=1
args=()
for arg in "$@"; do
    case "$arg" in
        --no-bench) bench=0 ;;
        *) args+=("$arg") ;;
    esac
done

before="$(mktemp)"
after="$(mktemp)"
trap 'rm -f "$before" "$after"' EXIT

# "name version" for each [[package]] of a Cargo.lock, sorted.
lock_packages() {
    awk '
        /^\[\[package\]\]/ { if (name != "") print name, version; name = ""; version = "" }
        /^name = "/    { name = $3; gsub(/"/, "", name) }
        /^version = "/ { version = $3; gsub(/"/, "", version) }
        END { if (name != "") print name, version }
    ' "$1" | sort
}

lock_packages Cargo.lock > "$before"

echo "== cargo update ${args[*]:-}"
CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo update "${args[@]}"

lock_packages Cargo.lock > "$after"

changes="$(
    join -a 1 -a 2 -e '-' -o 0,1.2,2.2 \
        <(comm -23 "$before" "$after") <(comm -13 "$before" "$after") \
        | awk '{
            if ($2 == "-") print "  added    " $1 " " $3;
            else if ($3 == "-") print "  removed  " $1 " " $2;
            else print "  updated  " $1 " " $2 " -> " $3
        }'
)"
if [[ -z "$changes" ]]; then
    changes="  (none: Cargo.lock is unchanged)"
fi
echo "== changes in Cargo.lock"
echo "$changes"

echo "== fuzz/Cargo.lock in step (scripts/sync-fuzz-lock.sh)"
scripts/sync-fuzz-lock.sh

echo "== supply-chain gate (scripts/ci-deny.sh), the workspace and the fuzz targets"
scripts/ci-deny.sh
WARD_DENY_MANIFEST=fuzz/Cargo.toml scripts/ci-deny.sh

echo "== minimum Rust version (scripts/check-msrv.py)"
scripts/check-msrv.py

echo "== cargo clippy --locked"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "== cargo test --locked --workspace"
cargo test --locked --workspace

if [[ "$bench" == 1 ]]; then
    py="${MXNET_PYTHON:-.venv-mx/bin/python}"
    if [[ -x "$py" ]]; then
        echo "== benchmarks (bench/run.sh)"
        bench/run.sh
        bench_note="compare the table above with docs/BENCHMARKS.md; record it there if it moved"
    else
        bench_note="NOT RUN: no MXNet python at $py (DEVELOPERS.md); run bench/run.sh before committing an update of tract"
    fi
else
    bench_note="not run (--no-bench)"
fi

echo
echo "== summary"
echo "Cargo.lock changes:"
echo "$changes"
echo "checks: cargo deny, clippy and tests passed"
echo "benchmarks: $bench_note"
echo "next: review the changes (changelogs of updated crates), then commit Cargo.lock with this list."
