#!/usr/bin/env bash
# Makes tests/fixtures/packages/: two packages exactly as ward wrote them before manifest
# format 2 and graph IR version 2 (commit 9b21843), signed with a throwaway key whose
# public half is kept, and that ward's outputs for the bundled inputs. Tests check that
# today's ward still verifies, loads and predicts them identically.
#
#   OLD_WARD=/path/to/ward-built-at-9b21843 tools/make_v1_packages.sh
#
# (git worktree add /tmp/old-ward 9b21843 && cd /tmp/old-ward && cargo build --bin ward)
set -euo pipefail
cd "$(dirname "$0")/.."
old=${OLD_WARD:?set OLD_WARD to a ward binary built at commit 9b21843}
out=tests/fixtures/packages
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
mkdir -p "$out"
"$old" keygen --out "$work" --name v1
cp "$work/v1.pub" "$out/v1.pub"
import() {
    local name=$1 dims=$2
    local model=tests/fixtures/models/$name
    "$old" import mxnet --symbol "$model/model-symbol.json" --params "$model/model-0000.params" \
        --input "data:float32:$dims" --name "$name" --out "$out/$name" --sign-key "$work/v1.key"
    "$old" predict "$out/$name" --trust "$out/v1.pub" --input "data=$model/input-data.npy" \
        --out "$work/out-$name" > /dev/null
    cp "$work/out-$name"/*.npy "$out/$name-output.npy"
}
import lenet_module -1,1,28,28
import text_lstm -1,12
ls -l "$out"
