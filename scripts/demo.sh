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

# Serve it: a model repository holding the signed package, a development TLS certificate,
# a bearer token; query it with a standard-library client; shut it down with SIGTERM.
mkdir -p "$work/repo/resnet18_v1"
cp -r "$work/resnet18.ward" "$work/repo/resnet18_v1/1"
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
