#!/usr/bin/env bash
# Seeds for the `graph` fuzz target in IR version 2: every importer fixture model
# (tests/fixtures/models) imported with `ward import mxnet`, its graph.json copied to
# fuzz/corpus/graph/seed-v2-<model>. The version-1 seeds (seed-<model>) stay: they drive
# the upgrade path. Needs a built ward (WARD, default target/debug/ward) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ward="${WARD:-target/debug/ward}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for dir in tests/fixtures/models/*/; do
    model="$(basename "$dir")"
    inputs=()
    while read -r spec; do inputs+=(--input "$spec"); done < <(
        python3 -c 'import json,sys
for i in json.load(open(sys.argv[1]))["inputs"]:
    print("%s:%s:%s" % (i["name"], i["dtype"], ",".join(map(str, i["shape"]))))' "$dir/meta.json"
    )
    "$ward" import mxnet --symbol "$dir/model-symbol.json" --params "$dir/model-0000.params" \
        "${inputs[@]}" --out "$out/$model" --audit-log /dev/null >/dev/null
    cp "$out/$model/graph.json" "fuzz/corpus/graph/seed-v2-$model"
    echo "fuzz/corpus/graph/seed-v2-$model"
done
