#!/usr/bin/env bash
# Builds every fuzz target on the stable toolchain (libFuzzer links without coverage
# instrumentation) and runs each over its committed corpus (fuzz/corpus/<target>/seed-*,
# plus any local finds), so a parser change that panics, hangs or aborts on a known input
# fails CI without nightly or cargo-fuzz. Fuzzing itself is `cargo +nightly fuzz run
# <target>` (DEVELOPERS.md).
#
# The targets build in the workspace's target directory, in fuzz/Cargo.toml's dev
# profile, which matches the workspace's so the dependencies built for the tests are
# reused where their features agree.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

# fuzz/Cargo.lock must pin what Cargo.lock pins (scripts/sync-fuzz-lock.sh).
scripts/sync-fuzz-lock.sh --check

CARGO_TARGET_DIR="$target_dir" cargo build --locked --manifest-path fuzz/Cargo.toml --bins

targets="$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^ward-fuzz$')"
failed=0
for target in $targets; do
    corpus="fuzz/corpus/$target"
    files=()
    if [[ -d "$corpus" ]]; then
        while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$corpus" -type f -print0 | sort -z)
    fi
    if (( ${#files[@]} == 0 )); then
        echo "error: fuzz target $target has no corpus in $corpus" >&2
        failed=1
        continue
    fi
    # libFuzzer runs each file once given files (not directories); -rss_limit_mb and
    # -timeout turn a blow-up or a hang into a failure.
    if "$target_dir/debug/$target" -rss_limit_mb=2048 -timeout=60 "${files[@]}" \
        >"$target_dir/fuzz-replay-$target.log" 2>&1; then
        echo "ok: $target replayed ${#files[@]} inputs"
    else
        echo "FAILED: $target (log: $target_dir/fuzz-replay-$target.log)" >&2
        tail -n 30 "$target_dir/fuzz-replay-$target.log" >&2
        failed=1
    fi
done
exit "$failed"
