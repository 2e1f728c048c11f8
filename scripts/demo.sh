#!/usr/bin/env bash
# The main job, end to end on bundled files: build ward, make a signing key, import a
# bundled MXNet model (a narrow ResNet-18 exported by MXNet 1.9.1) into a signed package,
# verify it, run it on a bundled input through the verified loader, show that a tampered
# copy is refused, and export it to ONNX; train a LeNet on the bundled MNIST digits into a
# signed package; serve both.
set -euo pipefail
cd "$(dirname "$0")/.."

# WARD=path/to/ward runs the demo with a binary already built (CI passes the one its
# tests built); otherwise the release build.
if [[ -n "${WARD:-}" ]]; then
    ward=$WARD
else
    cargo build --locked --release --bin ward
    ward=${CARGO_TARGET_DIR:-target}/release/ward
fi
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

# Train: the Module-API LeNet on the bundled MNIST digits (4,000 real images) for one
# epoch, with a declared optimizer, signed; then run the trained package.
mnist=$PWD/tests/fixtures/mnist
lenet=$PWD/tests/fixtures/models/lenet_module
cat > "$work/train.toml" <<EOF
[model]
symbol = "$lenet/model-symbol.json"
params = "$lenet/model-0000.params"
name = "lenet"

[data]
batch_size = 64

[data.train]
format = "mnist"
images = "$mnist/train-images-idx3-ubyte.gz"
labels = "$mnist/train-labels-idx1-ubyte.gz"

[data.val]
format = "recordio"
rec = "$mnist/t10k.rec"
idx = "$mnist/t10k.idx"
data_shape = [1, 28, 28]
scale = 0.00392156862745098

[optimizer]
name = "sgd"
learning_rate = 0.1
momentum = 0.9
wd = 0.0001
rescale_grad = 0.015625

[run]
epochs = 1
EOF
"$ward" train --config "$work/train.toml" --out "$work/lenet-run" --sign-key "$work/keys/release.key"
"$ward" eval "$work/lenet-run/package" --trust "$work/keys/release.pub" --data "$work/train.toml"
"$ward" predict "$work/lenet-run/package" --trust "$work/keys/release.pub" \
    --input "data=$lenet/input-data.npy" --out "$work/lenet-out"

# Serve it: a model repository holding the signed package, a development TLS certificate,
# a bearer token; query it with a standard-library client; shut it down with SIGTERM.
mkdir -p "$work/repo/resnet18_v1"
cp -r "$work/resnet18.ward" "$work/repo/resnet18_v1/1"
mkdir -p "$work/repo/lenet"
cp -r "$work/lenet-run/package" "$work/repo/lenet/1"
"$ward" tls-cert --out "$work/tls" --host localhost --host 127.0.0.1
WARD_TOKEN=$("$ward" token --tokens "$work/tokens.toml" --principal demo --scopes infer,metadata,health)
export WARD_TOKEN
serve_flags=()
if [ "$(id -u)" -eq 0 ]; then
    # ward serve refuses to run as root (CI containers run as root): say so explicitly.
    serve_flags+=(--allow-root)
fi
"$ward" --audit-log "$work/audit.log" serve --models "$work/repo" --trust "$work/keys/release.pub" \
    --tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key" --tokens "$work/tokens.toml" \
    --listen 127.0.0.1:0 "${serve_flags[@]}" > "$work/serve.out" &
server=$!
for _ in $(seq 100); do
    [ -s "$work/serve.out" ] && break
    sleep 0.2
done
url=$(sed -n 's/^listening on //p' "$work/serve.out")
[ -n "$url" ] || { echo "demo: ward serve did not start" >&2; exit 1; }
python3 scripts/oip_client.py --url "$url" --ca "$work/tls/ca.pem" --model resnet18_v1 \
    --input "data=$model/input-data.npy" --expect "$work/out/$(ls "$work/out")"
python3 scripts/oip_client.py --url "$url" --ca "$work/tls/ca.pem" --model lenet \
    --input "data=$lenet/input-data.npy" --expect "$work/lenet-out/softmax_output.npy"
kill -TERM "$server"
wait "$server"
echo "ward serve stopped"

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
