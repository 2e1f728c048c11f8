#!/usr/bin/env bash
# Times ward against MXNet 1.9.1 on the same models and inputs, in one run, at 1 and 2
# threads: compute with the model already loaded, and load time (for ward: read, verify the
# signature, parse, plan). Needs the MXNet venv
# (DEVELOPERS.md). Results: bench/out/results.jsonl and a Markdown table on stdout.
# MODELS="name ..." times only those (default: every model of bench/mxnet_models.py);
# ITERATIONS (default 50) runs per timing.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${MXNET_PYTHON:-.venv-mx/bin/python}
iters=${ITERATIONS:-50}
out=bench/out
mkdir -p "$out"

cargo build --locked --release --bin ward --bin ward-bench
# Exports only the models not yet in $out.
"$py" bench/mxnet_models.py export "$out"

: > "$out/results.jsonl"
[ -f "$out/keys/bench.key" ] || target/release/ward keygen --out "$out/keys" --name bench > /dev/null
models=${MODELS:-"resnet18_v1_b1 resnet18_v1_b8 mobilenet1_0_b1 mobilenet1_0_b8 mobilenetv2_1_0_b1 mobilenetv2_1_0_b8 squeezenet1_1_b1 squeezenet1_1_b8 densenet121_b1 densenet121_b8 inceptionv3_b1 inceptionv3_b8 mlp_b1"}
for name in $models; do
    d="$out/$name"
    shape=$("$py" -c "import numpy as np; print(','.join(map(str, np.load('$d/input.npy').shape)))")
    rm -rf "$d/pkg"
    target/release/ward import mxnet --symbol "$d/model-symbol.json" --params "$d/model-0000.params" \
        --input "data:float32:$shape" --out "$d/pkg" --sign-key "$out/keys/bench.key" > /dev/null
    for threads in 1 2; do
        w=$(target/release/ward-bench "$d/pkg" "$d/input.npy" "$threads" "$iters" "$out/keys/bench.pub")
        m=$(OMP_NUM_THREADS=$threads MXNET_CPU_WORKER_NTHREADS=$threads "$py" bench/mxnet_models.py time "$out" "$name" x "$iters" 2>/dev/null)
        echo "{\"model\": \"$name\", \"threads\": $threads, \"ward\": $w, \"mxnet\": $m}" >> "$out/results.jsonl"
    done
done

"$py" - "$out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| model | threads | ward ms | MXNet ms | ward / MXNet | ward load ms (open + plan) | MXNet imports ms (+ first forward) |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    w, m = r["ward"], r["mxnet"]
    print(f"| {r['model']} | {r['threads']} | {w['median_s']*1e3:.2f} | {m['median_s']*1e3:.2f} | "
          f"{w['median_s']/m['median_s']:.2f}x | {w['open_s']*1e3:.0f} + {w['plan_s']*1e3:.0f} | "
          f"{m['imports_s']*1e3:.0f} (+ {m['first_forward_s']*1e3:.0f}) |")
PY
