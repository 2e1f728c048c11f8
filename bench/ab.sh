#!/usr/bin/env bash
# Two builds of ward against each other and against MXNet 1.9.1, in one run, alternating:
# for each model, threads and round, the old build, the new build and MXNet are timed one
# after the other, so a machine that drifts during the run moves all three alike. Each
# build imports the model itself (an old build writes the package format it knows) and
# signs it with the same key. Used to show a refactoring changed no speed (docs/BENCHMARKS.md).
#
#   OLD=/path/to/old/target/release NEW=target/release bench/ab.sh
#
# OLD and NEW are directories holding `ward` and `ward-bench`. ROUNDS [3] rounds of
# ITERATIONS [50] passes; the table reports the median of the rounds' medians. Needs the
# MXNet venv (DEVELOPERS.md) and the models bench/run.sh exports.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${MXNET_PYTHON:-.venv-mx/bin/python}
iters=${ITERATIONS:-50}
rounds=${ROUNDS:-3}
old=${OLD:?OLD=directory of the old build (ward, ward-bench)}
new=${NEW:-target/release}
out=bench/out
models=${MODELS:-resnet18_v1_b1 resnet18_v1_b8 mobilenet1_0_b1 squeezenet1_1_b1 mlp_b1}

[ -f "$out/resnet18_v1_b1/model-symbol.json" ] || "$py" bench/mxnet_models.py export "$out"
[ -f "$out/keys/bench.key" ] || "$new/ward" keygen --out "$out/keys" --name bench > /dev/null

results="$out/ab.jsonl"
: > "$results"
for name in $models; do
    d="$out/$name"
    shape=$("$py" -c "import numpy as np; print(','.join(map(str, np.load('$d/input.npy').shape)))")
    for side in old new; do
        bin=$old; [ "$side" = new ] && bin=$new
        rm -rf "$d/pkg-$side"
        "$bin/ward" import mxnet --symbol "$d/model-symbol.json" --params "$d/model-0000.params" \
            --input "data:float32:$shape" --out "$d/pkg-$side" --sign-key "$out/keys/bench.key" > /dev/null
    done
    for round in $(seq "$rounds"); do
        for threads in 1 2; do
            o=$("$old/ward-bench" "$d/pkg-old" "$d/input.npy" "$threads" "$iters" "$out/keys/bench.pub")
            n=$("$new/ward-bench" "$d/pkg-new" "$d/input.npy" "$threads" "$iters" "$out/keys/bench.pub")
            m=$(OMP_NUM_THREADS=$threads MXNET_CPU_WORKER_NTHREADS=$threads "$py" bench/mxnet_models.py time "$out" "$name" x "$iters" 2>/dev/null)
            echo "{\"model\": \"$name\", \"threads\": $threads, \"round\": $round, \"old\": $o, \"new\": $n, \"mxnet\": $m}" >> "$results"
        done
    done
done

"$py" - "$results" <<'PY'
import json, statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["model"], r["threads"])].append(r)
print("| model | threads | old ms | new ms | new / old | MXNet ms | old / MXNet | new / MXNet | load ms old → new (open + plan) |")
print("|---|---|---|---|---|---|---|---|---|")
for (model, threads), rs in rows.items():
    med = lambda side, key="median_s": statistics.median(r[side][key] for r in rs)
    o, n, m = med("old"), med("new"), med("mxnet")
    print(f"| {model} | {threads} | {o*1e3:.2f} | {n*1e3:.2f} | {n/o:.2f}× | {m*1e3:.2f} | "
          f"{o/m:.2f}× | {n/m:.2f}× | {med('old','open_s')*1e3:.0f} + {med('old','plan_s')*1e3:.0f} → "
          f"{med('new','open_s')*1e3:.0f} + {med('new','plan_s')*1e3:.0f} |")
PY
