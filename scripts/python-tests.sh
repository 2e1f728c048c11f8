#!/usr/bin/env bash
# The Python binding (crates/ward-py): builds the wheel with the pinned maturin, installs
# it into a fresh venv next to the pinned test tools (tools/python-requirements.txt), and
# runs its tests (crates/ward-py/tests, pytest + hypothesis). The tests compare the
# wheel's predictions with the `ward` binary's, so the binary is built too.
#   scripts/python-tests.sh [pytest arguments...]
# PROFILE=debug builds both unoptimised (faster to build, slower to run).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib-venv.sh
source scripts/lib-venv.sh

profile=${PROFILE:-release}
target=${CARGO_TARGET_DIR:-target}
# A fresh venv each run, so the tests import what a user installs, nothing left over.
rm -rf .venv-py
pinned_venv .venv-py tools/python-requirements.txt

if [ "$profile" = release ]; then
    maturin_profile=(--release)
else
    maturin_profile=()
fi
# A `ward` binary given in WARD (CI's: the one its tests built) is used as it is: a plain
# `cargo build --bin ward` resolves features without the tests' dev-dependencies and
# rebuilt most of the workspace, 7 minutes of CI's 90.
if [ -n "${WARD:-}" ] && [ -x "$WARD" ]; then
    echo "== ward binary: $WARD"
else
    echo "== cargo build --locked --$profile --bin ward"
    if [ "$profile" = release ]; then
        cargo build --locked --release --bin ward
    else
        cargo build --locked --bin ward
    fi
    WARD="$target/$profile/ward"
fi
case "$WARD" in /*) ;; *) WARD="$PWD/$WARD" ;; esac
export WARD

echo "== maturin build (abi3 wheel for CPython 3.9+)"
rm -rf "$target/wheels"
.venv-py/bin/maturin build --locked "${maturin_profile[@]}" \
    --manifest-path crates/ward-py/Cargo.toml --out "$target/wheels"
wheel=$(ls "$target"/wheels/ward-*-abi3-*.whl)
echo "== pip install $(basename "$wheel")"
.venv-py/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
    --no-index --no-deps "$wheel"

echo "== pytest crates/ward-py/tests"
# From outside the source tree, so `import ward` is the installed wheel.
cd crates/ward-py/tests
../../../.venv-py/bin/python -m pytest -q -p no:cacheprovider . "$@"
