#!/usr/bin/env bash
# ResNet-18's convolution layers (batch 16, 112²) pass by pass: ward's kernels as Conv2d
# picks them on this CPU, the matrix crate's path, and MXNet 1.9.1's own convolution
# (oneDNN), at 1 and 2 threads. Needs the MXNet venv (DEVELOPERS.md). Prints a Markdown
# table (ms: forward / data gradient / weight gradient; MXNet's backward is both
# gradients together).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${MXNET_PYTHON:-.venv-mx/bin/python}
out=bench/out/train
mkdir -p "$out"
cargo build --locked --release --bin ward-bench-conv
: > "$out/conv_layers.jsonl"
for threads in 1 2; do
    target/release/ward-bench-conv "$threads" >> "$out/conv_layers.jsonl"
    OMP_NUM_THREADS=$threads MXNET_CPU_WORKER_NTHREADS=$threads \
        "$py" bench/train/mxnet_conv.py "$threads" 2>/dev/null >> "$out/conv_layers.jsonl"
done
"$py" - "$out/conv_layers.jsonl" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(dict)
for r in rows:
    by[(r["layer"], r["threads"])][r["path"]] = r
print("| layer | threads | ward: fwd / data / weight | matrix crate: fwd / data / weight | MXNet: fwd / bwd | ward vs MXNet (fwd + bwd) |")
print("|---|---|---|---|---|---|")
for (layer, threads), paths in by.items():
    w, m, x = paths["ward"], paths["matrix crate"], paths["mxnet"]
    cell = lambda r: f'{r["forward_ms"]:.2f} / {r["data_ms"]:.2f} / {r["weight_ms"]:.2f}'
    ward_total = w["forward_ms"] + w["data_ms"] + w["weight_ms"]
    mx_total = x["forward_ms"] + x["backward_ms"]
    print(f'| {layer} | {threads} | {cell(w)} | {cell(m)} | {x["forward_ms"]:.2f} / {x["backward_ms"]:.2f} | {ward_total / mx_total:.2f}× |')
PY
