#!/usr/bin/env bash
# Interop test of ward's model signing against the OpenSSF reference implementation
# (PyPI model-signing 1.1.1, pinned with its dependencies in
# tools/model-signing-requirements.txt and installed into .venv-ms on first use).
#   a. ward signs (keygen, import --sign-key, sign): model_signing verifies; a changed
#      byte makes it fail.
#   b. model_signing signs (CLI, P-256 key from ward keygen and the P-384 fixture key):
#      ward verify accepts; a changed byte or another key is refused with exit 3.
#   c. Shard signatures: the Python API signs in shards mode and ward verifies; ward signs
#      with --shard-size and the Python API verifies.
# Needs python3 and PyPI. WARD=path/to/ward to test a given binary; by default
# target/release/ward, built when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib-model-signing-venv.sh
source scripts/lib-model-signing-venv.sh

ms_venv_setup
ward_binary_setup

mlp=tests/fixtures/models/mlp
vectors=tests/fixtures/model-signing
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "interop: FAIL: $*" >&2; exit 1; }

# Runs a command that must exit with status $1; $2 says what is checked. Its output goes
# to $work/last.out and is shown when the status is not the expected one. A refusal
# (3) must say why on stderr.
expect() {
    local want=$1 what=$2 rc=0
    shift 2
    "$@" > "$work/last.out" 2> "$work/last.err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        cat "$work/last.out" "$work/last.err" >&2
        fail "$what: exit $rc, expected $want: $*"
    fi
    if [ "$want" -eq 3 ] && [ ! -s "$work/last.err" ]; then
        fail "$what: exit 3 with nothing on stderr: $*"
    fi
    echo "  ok ($rc): $what"
}

# Like expect, for a command that must fail with some non-zero status (model_signing
# exits 1 for every failure) and print the given text.
expect_fail() {
    local what=$1 text=$2 rc=0
    shift 2
    "$@" > "$work/last.out" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        cat "$work/last.out" >&2
        fail "$what: succeeded, expected a failure: $*"
    fi
    grep -qF -- "$text" "$work/last.out" || {
        cat "$work/last.out" >&2
        fail "$what: failed (exit $rc) without saying '$text': $*"
    }
    echo "  ok ($rc): $what"
}

# Inverts every bit of the byte in the middle of a file (running it twice restores it).
flip_byte() {
    "$MS_PY" - "$1" <<'PY'
import os, sys
path = sys.argv[1]
size = os.path.getsize(path)
assert size > 0, f"{path} is empty"
with open(path, "r+b") as f:
    f.seek(size // 2)
    b = f.read(1)
    f.seek(size // 2)
    f.write(bytes([b[0] ^ 0xFF]))
PY
}

# A fresh copy of the MLP's MXNet export (what `ward import` and the user start from).
mxnet_copy() {
    mkdir -p "$1"
    cp "$mlp/model-symbol.json" "$mlp/model-0000.params" "$1/"
}

ms_verify() { "$MS_CLI" verify key "$1" --signature "$1/model.sig" --public_key "$2"; }
ms_sign() { "$MS_CLI" sign key "$1" --signature "$1/model.sig" --private_key "$2"; }

# The Python API, for what the 1.1.1 CLI cannot do (shards). The verifier needs the
# hashing config passed explicitly: the signed shard_size is a float and 1.1.1's guess
# from it crashes (format doc D2). The signature file, when inside the model, is ignored
# as the CLI does.
cat > "$work/ms_api.py" <<'PY'
import pathlib, sys
import model_signing

def hashing_config(model, sig, shard_size):
    model, sig = pathlib.Path(model).resolve(), pathlib.Path(sig).resolve()
    ignored = [sig.relative_to(model)] if sig.is_relative_to(model) else []
    return (model_signing.hashing.Config()
            .set_ignored_paths(paths=ignored)
            .use_shard_serialization(shard_size=shard_size))

op, model, sig, key, shard_size = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
if op == "sign-shards":
    (model_signing.signing.Config()
        .use_elliptic_key_signer(private_key=key)
        .set_hashing_config(hashing_config(model, sig, shard_size))
        .sign(model, sig))
elif op == "verify-shards":
    (model_signing.verifying.Config()
        .use_elliptic_key_verifier(public_key=key)
        .set_hashing_config(hashing_config(model, sig, shard_size))
        .verify(model, sig))
else:
    sys.exit(f"unknown op {op}")
print(f"{op}: ok")
PY
ms_api() { "$MS_PY" "$work/ms_api.py" "$@"; }

echo "== ward: $WARD"
echo "== model_signing: $("$MS_PY" -c 'import importlib.metadata as m; print(m.version("model-signing"))')"

echo "== keys: ward keygen (P-256), the P-384 fixture key"
"$WARD" keygen --out "$work/keys"
"$WARD" keygen --out "$work/keys" --name other
for k in ward other; do
    for f in "$work/keys/$k.key" "$work/keys/$k.pub"; do
        [ -f "$f" ] || fail "ward keygen did not write $f"
    done
    mode=$(stat -c %a "$work/keys/$k.key")
    [ "$mode" = 600 ] || fail "ward keygen wrote $k.key with mode $mode, expected 600"
done
grep -q -- '-----BEGIN PRIVATE KEY-----' "$work/keys/ward.key" || fail "ward.key is not PKCS#8 PEM"
grep -q -- '-----BEGIN PUBLIC KEY-----' "$work/keys/ward.pub" || fail "ward.pub is not SPKI PEM"
cp "$vectors/keys/p384.key.pem" "$work/keys/p384.key"
cp "$vectors/keys/p384.pub.pem" "$work/keys/p384.pub"
chmod 600 "$work/keys/p384.key"
echo "  ok: keys in place"

echo "== a1. ward import --sign-key -> model_signing verify key"
mkdir -p "$work/a"
pkg="$work/a/mlp.ward"
"$WARD" import mxnet --symbol "$mlp/model-symbol.json" --params "$mlp/model-0000.params" \
    --input data:float32:-1,784 --name mlp --out "$pkg" --sign-key "$work/keys/ward.key"
[ -f "$pkg/model.sig" ] || fail "ward import --sign-key wrote no $pkg/model.sig"
expect 0 "model_signing accepts the signed ward package" ms_verify "$pkg" "$work/keys/ward.pub"
expect 0 "ward verify accepts its own package" "$WARD" verify "$pkg" --trust "$work/keys/ward.pub"
flip_byte "$pkg/weights.safetensors"
expect_fail "model_signing refuses the package with one byte changed" "Signature mismatch" \
    ms_verify "$pkg" "$work/keys/ward.pub"

echo "== a2. ward sign (MXNet export) -> model_signing verify key"
dir="$work/a/export"
mxnet_copy "$dir"
"$WARD" sign "$dir" --key "$work/keys/ward.key"
[ -f "$dir/model.sig" ] || fail "ward sign wrote no $dir/model.sig"
expect 0 "model_signing accepts ward's signature" ms_verify "$dir" "$work/keys/ward.pub"
expect_fail "model_signing refuses it with another key" "Key mismatch" \
    ms_verify "$dir" "$work/keys/other.pub"
flip_byte "$dir/model-0000.params"
expect_fail "model_signing refuses the export with one byte changed" "Signature mismatch" \
    ms_verify "$dir" "$work/keys/ward.pub"
flip_byte "$dir/model-0000.params"
expect 0 "model_signing accepts it again once the byte is restored" ms_verify "$dir" "$work/keys/ward.pub"

echo "== a3. ward sign refuses a key file readable by others"
cp "$work/keys/ward.key" "$work/keys/loose.key"
chmod 644 "$work/keys/loose.key"
dir="$work/a/loose"
mxnet_copy "$dir"
rc=0
"$WARD" sign "$dir" --key "$work/keys/loose.key" > "$work/last.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "ward sign accepted a key file with mode 644"
[ ! -e "$dir/model.sig" ] || fail "ward sign refused a mode-644 key but still wrote model.sig"
echo "  ok ($rc): refused: $(head -n1 "$work/last.out")"

for k in ward p384; do
    echo "== b. model_signing sign key ($k key) -> ward verify"
    dir="$work/b/$k"
    mxnet_copy "$dir"
    ms_sign "$dir" "$work/keys/$k.key" > /dev/null
    expect 0 "model_signing accepts its own signature" ms_verify "$dir" "$work/keys/$k.pub"
    expect 0 "ward verify accepts model_signing's signature" \
        "$WARD" --audit-log "$work/audit-$k.jsonl" verify "$dir" --trust "$work/keys/$k.pub"
    expect 3 "ward verify refuses it with another key as trust" \
        "$WARD" verify "$dir" --trust "$work/keys/other.pub"
    flip_byte "$dir/model-symbol.json"
    expect 3 "ward verify refuses the export with one byte changed" \
        "$WARD" verify "$dir" --trust "$work/keys/$k.pub"
    flip_byte "$dir/model-symbol.json"
    expect 0 "ward verify accepts it again once the byte is restored" \
        "$WARD" verify "$dir" --trust "$work/keys/$k.pub"
    # The audit log: at least one line, every line a JSON value.
    [ -s "$work/audit-$k.jsonl" ] || fail "--audit-log wrote nothing to $work/audit-$k.jsonl"
    "$MS_PY" -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1]) if l.strip()]' \
        "$work/audit-$k.jsonl" || fail "--audit-log wrote a line that is not JSON"
    echo "  ok: --audit-log wrote $(wc -l < "$work/audit-$k.jsonl") JSON line(s)"
done

echo "== b2. ward verify of the reference tool's conformance signatures"
for s in p256-cli p521-cli p384-api; do
    key=${s%%-*}
    expect 0 "ward verify accepts $s.sig" "$WARD" verify "$vectors/model" \
        --signature "$vectors/signatures/$s.sig" --trust "$vectors/keys/$key.pub.pem"
done
expect 0 "ward verify accepts p256-shards16.sig" "$WARD" verify "$vectors/model" \
    --signature "$vectors/signatures/p256-shards16.sig" --trust "$vectors/keys/p256.pub.pem"

echo "== c1. model_signing Python API, shards mode -> ward verify"
for k in ward p384; do
    dir="$work/c/$k"
    mxnet_copy "$dir"
    # 64 KiB shards: the 428 KiB params file makes 7 shards, the last one short.
    ms_api sign-shards "$dir" "$dir/model.sig" "$work/keys/$k.key" 65536 > /dev/null
    grep -q . "$dir/model.sig" || fail "the Python API wrote no signature"
    expect 0 "model_signing API accepts its own shards signature ($k key)" \
        ms_api verify-shards "$dir" "$dir/model.sig" "$work/keys/$k.pub" 65536
    expect 0 "ward verify accepts the API's shards signature ($k key)" \
        "$WARD" verify "$dir" --trust "$work/keys/$k.pub"
    flip_byte "$dir/model-0000.params"
    expect 3 "ward verify refuses it with one byte changed ($k key)" \
        "$WARD" verify "$dir" --trust "$work/keys/$k.pub"
done

echo "== c2. ward sign --shard-size -> model_signing Python API verify"
dir="$work/c/ward-shards"
mxnet_copy "$dir"
"$WARD" sign "$dir" --key "$work/keys/ward.key" --shard-size 65536
expect 0 "ward verify accepts its own shards signature" "$WARD" verify "$dir" --trust "$work/keys/ward.pub"
expect 0 "model_signing API accepts ward's shards signature" \
    ms_api verify-shards "$dir" "$dir/model.sig" "$work/keys/ward.pub" 65536
flip_byte "$dir/model-0000.params"
expect_fail "model_signing API refuses it with one byte changed" "Signature mismatch" \
    ms_api verify-shards "$dir" "$dir/model.sig" "$work/keys/ward.pub" 65536

echo "interop: all checks passed"
