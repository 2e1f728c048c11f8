#!/usr/bin/env bash
# The main job, end to end on bundled files: build ward, make a signing key, import a
# bundled MXNet model (a narrow ResNet-18 exported by MXNet 1.9.1) into a signed package,
# verify it, run it on a bundled input through the verified loader, show that a tampered
# copy is refused, and export it to ONNX.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --release --bin ward
ward=${CARGO_TARGET_DIR:-target}/release/ward
model=tests/fixtures/models/resnet18_v1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$ward" keygen --out "$work/keys" --name release
"$ward" import mxnet \
    --symbol "$model/model-symbol.json" --params "$model/model-0000.params" \
    --input data:float32:-1,3,64,64 --range data:-10:10 \
    --name resnet18_v1 --out "$work/resnet18.ward" --sign-key "$work/keys/release.key"
"$ward" verify "$work/resnet18.ward" --trust "$work/keys/release.pub"
"$ward" inspect "$work/resnet18.ward" --trust "$work/keys/release.pub"
"$ward" --audit-log "$work/audit.log" predict "$work/resnet18.ward" --trust "$work/keys/release.pub" \
    --input "data=$model/input-data.npy" --out "$work/out"
"$ward" export onnx "$work/resnet18.ward" --trust "$work/keys/release.pub" --out "$work/resnet18.onnx"

# A copy with one changed byte in its weights must be refused (exit 3) before it is parsed.
cp -r "$work/resnet18.ward" "$work/tampered.ward"
printf '\x01' | dd of="$work/tampered.ward/weights.safetensors" bs=1 seek=4096 conv=notrunc status=none
status=0
"$ward" --audit-log "$work/audit.log" predict "$work/tampered.ward" --trust "$work/keys/release.pub" \
    --input "data=$model/input-data.npy" --out "$work/out2" || status=$?
if [ "$status" -ne 3 ]; then
    echo "demo: the tampered package was not refused (exit $status)" >&2
    exit 1
fi
echo "audit log:"
cat "$work/audit.log"
