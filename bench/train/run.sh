#!/usr/bin/env bash
# Training-step time: ward's engine and MXNet 1.9.1's
# Module, same symbol, initial weights, batch and optimizer, at 1 and 2 threads, in
# interleaved rounds. Needs the MXNet venv (DEVELOPERS.md). WORKLOADS="lstm_lm_b32"
# runs only those named (default: all three), ROUNDS the rounds (default 3). Results:
# bench/out/train/results.jsonl and a Markdown table (the lowest median over the rounds,
# and the range of medians) on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${MXNET_PYTHON:-.venv-mx/bin/python}
rounds=${ROUNDS:-3}
out=bench/out/train
mkdir -p "$out"

cargo build --locked --release --bin ward-bench-train
workloads=${WORKLOADS:-lenet_b64 resnet18_v1_b16_112 lstm_lm_b32}
missing=()
for name in $workloads; do
    [ -f "$out/$name/model-symbol.json" ] || missing+=("$name")
done
[ ${#missing[@]} -eq 0 ] || "$py" bench/train/mxnet_train.py export "$out" "${missing[@]}"

: > "$out/results.jsonl"
for round in $(seq "$rounds"); do
    for name in $workloads; do
        iters=20
        [ "$name" = lenet_b64 ] || iters=5
        for threads in 1 2; do
            r=$(target/release/ward-bench-train "$out/$name" "$threads" "$iters")
            echo "{\"round\": $round, \"workload\": \"$name\", \"threads\": $threads, \"engine\": \"ward\", \"result\": $r}" >> "$out/results.jsonl"
            r=$(OMP_NUM_THREADS=$threads MXNET_CPU_WORKER_NTHREADS=$threads "$py" bench/train/mxnet_train.py time "$out" "$name" "$iters" 2>/dev/null)
            echo "{\"round\": $round, \"workload\": \"$name\", \"threads\": $threads, \"engine\": \"mxnet\", \"result\": $r}" >> "$out/results.jsonl"
        done
    done
done

"$py" - "$out/results.jsonl" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in rows:
    by[(r["workload"], r["threads"], r["engine"])].append(r["result"])
print("| workload | threads | engine | step ms (best median) | [range of medians] | vs MXNet | peak RSS MiB | loss after the timed steps |")
print("|---|---|---|---|---|---|---|---|")
for (w, t, e), rs in sorted(by.items()):
    med = sorted(r["median_s"] for r in rs)
    mx = min(r["median_s"] for r in by[(w, t, "mxnet")])
    print(f"| {w} | {t} | {e} | {med[0]*1e3:.1f} | [{med[0]*1e3:.1f}–{med[-1]*1e3:.1f}] | "
          f"{med[0]/mx:.2f}× | {max(r['peak_rss_mib'] for r in rs):.0f} | {rs[0]['loss']:.6f} |")
PY
