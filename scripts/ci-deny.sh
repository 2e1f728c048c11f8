#!/usr/bin/env bash
# CI's supply-chain gate (DESIGN T13): `cargo deny check` (advisories, bans, licences,
# sources; see deny.toml) offline, against the RustSec advisory snapshot.
#
#   scripts/ci-deny.sh [cargo-deny check arguments...]
#
# The snapshot is ../shared/advisory-db (beside the repository, as CI has it) or the
# directory in WARD_ADVISORY_DB: a directory holding the advisory-db's crates/ folder.
# Without one the script fails: a supply-chain check that silently skips its advisories
# would pass exactly when it should not.
#
# cargo-deny reads its database from a git checkout under deny.toml's db-path
# (target/advisory-dbs); these machines cannot fetch it, so the script builds that checkout
# from the snapshot: a fresh `git init` holding one commit, made each run.
#
# Environment: WARD_ADVISORY_DB (the snapshot), WARD_DENY_MANIFEST (the Cargo.toml to
# check; default the workspace's).
#
# cargo-deny is installed (`cargo install --locked`, the pinned version below) when it is
# missing, so a fresh machine passes.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION="0.20.2"
# Where cargo-deny 0.20 looks for the default database (github.com/rustsec/advisory-db)
# under db-path; asked from cargo-deny itself below, this is the fallback.
DEFAULT_DB_DIR="advisory-db-3157b0e258782691"
DB_ROOT="target/advisory-dbs"

snapshot="${WARD_ADVISORY_DB:-../shared/advisory-db}"
if [[ ! -d "$snapshot/crates" ]]; then
    echo "error: no RustSec advisory snapshot at $snapshot (a directory holding crates/)." >&2
    echo "       CI has one in ../shared/advisory-db; elsewhere set WARD_ADVISORY_DB to a" >&2
    echo "       checkout of https://github.com/rustsec/advisory-db. See docs/MAINTAINING.md." >&2
    exit 1
fi

if ! cargo deny --version >/dev/null 2>&1; then
    echo "== installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked)"
    cargo install --locked "cargo-deny@$CARGO_DENY_VERSION"
fi
echo "== $(cargo deny --version)"

# cargo-deny reads `cargo metadata` offline, which needs the sources of every platform's
# dependencies (windows-sys, ...), not only those a Linux build downloads.
cargo fetch --locked --manifest-path "${WARD_DENY_MANIFEST:-Cargo.toml}" >/dev/null

# Where does this cargo-deny expect the database? Its debug log says.
db_dir="$(cargo deny --log-level debug --offline --locked check advisories 2>&1 \
    | sed -n "s|.*Opening advisory database at '\\(.*\\)'.*|\\1|p" | head -n 1 || true)"
if [[ -z "$db_dir" ]]; then
    db_dir="$DB_ROOT/$DEFAULT_DB_DIR"
fi
case "$db_dir" in
    "$DB_ROOT"/*) ;;
    *)
        echo "error: cargo-deny expects its database at $db_dir, outside $DB_ROOT: check deny.toml's db-path" >&2
        exit 1
        ;;
esac

# The snapshot as a one-commit git checkout, dated as the snapshot says when it can tell.
rm -rf "$db_dir"
mkdir -p "$db_dir"
cp -R "$snapshot/." "$db_dir/"
rm -rf "$db_dir/.git"
snapshot_date="$(sed -n 's/.* of \([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}\).*/\1/p' "$snapshot/SNAPSHOT.md" 2>/dev/null | head -n 1 || true)"
(
    cd "$db_dir"
    if [[ -n "$snapshot_date" ]]; then
        export GIT_AUTHOR_DATE="${snapshot_date}T00:00:00Z" GIT_COMMITTER_DATE="${snapshot_date}T00:00:00Z"
    fi
    git init --quiet
    git -c core.hooksPath=/dev/null add --all
    git -c user.name="ward ci" -c user.email="ci@ward.invalid" \
        -c commit.gpgsign=false -c core.hooksPath=/dev/null \
        commit --quiet --message "RustSec advisory snapshot from $snapshot"
)
count="$(find "$db_dir/crates" -name '*.md' | wc -l | tr -d ' ')"
if [[ -n "$snapshot_date" ]]; then
    age_days=$(( ( $(date -u +%s) - $(date -u -d "$snapshot_date" +%s 2>/dev/null || date -u +%s) ) / 86400 ))
    echo "== advisory snapshot: $count advisories, dated $snapshot_date ($age_days days old)"
    if (( age_days > 90 )); then
        echo "warning: the advisory snapshot is more than 90 days old; advisories published since are not checked" >&2
    fi
else
    echo "== advisory snapshot: $count advisories (undated)"
fi

# cargo-deny's own staleness check sees a fresh checkout; the age is reported above.
# WARD_DENY_MANIFEST checks another manifest with this configuration (the test that shows
# this step fails on a crate with an advisory uses it).
cargo deny --offline --locked --manifest-path "${WARD_DENY_MANIFEST:-Cargo.toml}" \
    --config deny.toml check "$@"
