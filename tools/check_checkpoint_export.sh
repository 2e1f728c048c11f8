#!/usr/bin/env bash
# Checks that MXNet 1.9.1 resumes from a ward checkpoint exported with
# `ward checkpoint export-mxnet` with the next step ward computes: for the Module fixtures
# of tests/fixtures/mxnet-states (SGD with momentum, Adam), ward continues MXNet's
# checkpoint for one step and checkpoints; the checkpoint is exported; then MXNet
# (Module.load(..., load_optimizer_states=True)) and ward (the exported files as its
# model) each take one more step on the same batch, and their weights must agree within
# 1e-5. Needs .venv-mx (DEVELOPERS.md) and the age tool (age-keygen).
# Run by hand; the Rust tests need neither MXNet nor Python.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${MXNET_PYTHON:-$PWD/.venv-mx/bin/python}
ward=${WARD:-$PWD/target/debug/ward}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$ward" keygen --out "$work/signer" > /dev/null
age-keygen -o "$work/key.txt" 2> /dev/null
chmod 600 "$work/key.txt"
for case in module_sgd module_adam; do
    fx=$PWD/tests/fixtures/mxnet-states/$case
    d=$work/$case
    mkdir -p "$d"
    "$py" - "$fx" "$d" <<'PY'
import json, sys
import numpy as np
fx, d = sys.argv[1:]
n = json.load(open(f"{fx}/next.json"))
np.save(f"{d}/x.npy", np.array(n["data"]["values"], np.float32).reshape(n["data"]["shape"]))
np.save(f"{d}/y.npy", np.array(n["label"], np.float32))
opt = "".join(f"{k} = {json.dumps(v)}\n" for k, v in n["optimizer_params"].items())
spec = lambda sym, params, states: f"""
[model]
symbol = "{sym}"
params = "{params}"
states = "{states}"
[data]
batch_size = {n['batch_size']}
shuffle = false
threads = 0
[data.train]
format = "npy"
data = "x.npy"
labels = "y.npy"
[optimizer]
name = "{n['optimizer']}"
{opt}rescale_grad = {1 / n['batch_size']}
[run]
epochs = 1
seed = "1"
threads = 1
"""
open(f"{d}/first.toml", "w").write(spec(f"{fx}/model-symbol.json", f"{fx}/model-0001.params", f"{fx}/model-0001.states"))
open(f"{d}/second.toml", "w").write(spec(f"{d}/mx/model-symbol.json", f"{d}/mx/model-0001.params", f"{d}/mx/model-0001.states"))
json.dump(n, open(f"{d}/next.json", "w"))
PY
    recipient=$(age-keygen -y "$work/key.txt")
    "$ward" train --config "$d/first.toml" --out "$d/one" --sign-key "$work/signer/ward.key" \
        --recipient "$recipient" > /dev/null 2>&1
    "$ward" checkpoint export-mxnet "$d/one/checkpoints/step-000000000001" \
        --trust "$work/signer/ward.pub" --identity "$work/key.txt" \
        --symbol "$fx/model-symbol.json" --out "$d/mx/model" > /dev/null
    "$ward" train --config "$d/second.toml" --out "$d/two" > /dev/null 2>&1
    "$py" - "$d" <<'PY' 2>/dev/null
import json, sys
import mxnet as mx
import numpy as np
d = sys.argv[1]
n = json.load(open(f"{d}/next.json"))
mod = mx.mod.Module.load(f"{d}/mx/model", 1, load_optimizer_states=True)
x = np.load(f"{d}/x.npy"); y = np.load(f"{d}/y.npy")
mod.bind(data_shapes=[("data", x.shape)], label_shapes=[("softmax_label", y.shape)])
mod.init_optimizer(optimizer=n["optimizer"], optimizer_params=n["optimizer_params"])
mod.forward_backward(mx.io.DataBatch([mx.nd.array(x)], [mx.nd.array(y)]))
mod.update()
args, _ = mod.get_params()
import struct
raw = open(f"{d}/two/package/weights.safetensors", "rb").read()
hlen = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + hlen])
worst = 0.0
for name, arr in args.items():
    e = header[name]; b, end = e["data_offsets"]
    ward_w = np.frombuffer(raw[8 + hlen + b:8 + hlen + end], np.float32).reshape(e["shape"])
    mx_w = arr.asnumpy()
    worst = max(worst, float(np.max(np.abs(ward_w - mx_w) / np.maximum(np.abs(mx_w), 1.0))))
print(f"{d.rsplit('/', 1)[1]}: MXNet resumed from ward's exported checkpoint; next step within {worst:.2e} of ward's")
assert worst <= 1e-5, worst
PY
done
echo "check_checkpoint_export: ok"
