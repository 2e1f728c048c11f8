#!/usr/bin/env bash
# The main job, end to end on bundled files: build ward, import a bundled MXNet model
# (a narrow ResNet-18 exported by MXNet 1.9.1), run it on a bundled input, print the result.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --release --bin ward
ward=target/release/ward
model=tests/fixtures/models/resnet18_v1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$ward" import mxnet \
    --symbol "$model/model-symbol.json" --params "$model/model-0000.params" \
    --input data:float32:-1,3,64,64 --range data:-10:10 \
    --name resnet18_v1 --out "$work/resnet18.ward"
"$ward" inspect "$work/resnet18.ward"
"$ward" predict "$work/resnet18.ward" --input "data=$model/input-data.npy" --out "$work/out"
"$ward" export onnx "$work/resnet18.ward" --out "$work/resnet18.onnx"
