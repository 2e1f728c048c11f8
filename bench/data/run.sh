#!/usr/bin/env bash
# The data pipeline alone: ward's RecordIO reader + Loader against MXNet 1.9.1's
# ImageRecordIter on the same 1,000 JPEG records (decode, resize 256, random crop 224,
# random mirror, mean/std), at 1 and 2 threads, in interleaved rounds. Needs the MXNet
# venv and cv2 (bench/data/mxnet_pipeline.py). Results: bench/out/data/results.jsonl and a
# Markdown table on stdout (best and range over the rounds).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${MXNET_PYTHON:-.venv-mx/bin/python}
rounds=${ROUNDS:-3}
out=bench/out/data
mkdir -p "$out"

cargo build --locked --release --bin ward-bench-data
[ -f "$out/images.rec" ] || "$py" bench/data/mxnet_pipeline.py make "$out"

: > "$out/results.jsonl"
for round in $(seq "$rounds"); do
    for threads in 1 2; do
        r=$(target/release/ward-bench-data "$out" "$threads")
        echo "{\"round\": $round, \"threads\": $threads, \"engine\": \"ward\", \"result\": $r}" >> "$out/results.jsonl"
        r=$(OMP_NUM_THREADS=$threads "$py" bench/data/mxnet_pipeline.py time "$out" "$threads" 2>/dev/null)
        echo "{\"round\": $round, \"threads\": $threads, \"engine\": \"mxnet\", \"result\": $r}" >> "$out/results.jsonl"
    done
done

"$py" - "$out/results.jsonl" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in rows:
    by[(r["threads"], r["engine"])].append(r["result"]["images_per_s"])
print("| threads | engine | images/s (best) | [range] | vs MXNet |")
print("|---|---|---|---|---|")
for (t, e), v in sorted(by.items()):
    mx = max(by[(t, "mxnet")])
    print(f"| {t} | {e} | {max(v):.0f} | [{min(v):.0f}–{max(v):.0f}] | {max(v)/mx:.2f}× |")
PY
