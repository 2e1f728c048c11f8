#!/usr/bin/env bash
# fuzz/ is a workspace of its own (cargo-fuzz wants it so), with its own Cargo.lock. This
# keeps that lock in step with the workspace's: every crate both use is pinned at the
# workspace's version, and only the fuzzing crates (libfuzzer-sys and what it needs) are
# resolved on their own. scripts/update-deps.sh runs it after `cargo update`; CI runs it
# with --check (scripts/fuzz-replay.sh), which changes nothing and fails on a difference.
#
#   scripts/sync-fuzz-lock.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[[ "${1:-}" == "--check" ]] && check=1

if (( check )); then
    # Consistent with fuzz/Cargo.toml, and no crate pinned differently from Cargo.lock.
    cargo metadata --quiet --locked --offline --format-version 1 \
        --manifest-path fuzz/Cargo.toml >/dev/null
    python3 - <<'PY'
import sys, tomllib
def pins(path):
    with open(path, "rb") as f:
        return {(p["name"], p["version"]) for p in tomllib.load(f)["package"]}
workspace, fuzz = pins("Cargo.lock"), pins("fuzz/Cargo.lock")
names = {name for name, _ in workspace}
apart = sorted(f"{n} {v}" for n, v in fuzz - workspace if n in names)
if apart:
    print("error: fuzz/Cargo.lock pins differently from Cargo.lock: " + ", ".join(apart)
          + "; run scripts/sync-fuzz-lock.sh", file=sys.stderr)
    sys.exit(1)
print(f"ok: fuzz/Cargo.lock pins what Cargo.lock pins ({len(fuzz)} packages)")
PY
    exit 0
fi

# The fuzz workspace resolved from the workspace's lock: cargo keeps every pinned version
# and resolves only what the workspace does not use (libfuzzer-sys and its dependencies).
cp Cargo.lock fuzz/Cargo.lock
cargo metadata --quiet --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
echo "fuzz/Cargo.lock synced with Cargo.lock"
