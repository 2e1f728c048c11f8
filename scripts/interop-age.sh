#!/usr/bin/env bash
# Interop of ward's checkpoints with the stock age tool (Debian's `age` 1.1.1, the Go
# reference implementation) and another safetensors reader (PyPI safetensors):
#   a. ward trains with checkpoints encrypted to a recipient age-keygen made; `age -d -i`
#      decrypts a checkpoint's state.age, and safetensors.numpy reads the weights: the
#      last checkpoint's weights are the trained package's, value for value.
#   b. the reverse: a state encrypted by `age -r` from the documented layout (the
#      decrypted safetensors, checkpoint.json's state_bytes updated, re-signed with
#      `ward sign`) resumes, and the run ends bit for bit where the original ended.
#   c. a state.age encrypted to another recipient, re-signed: ward verifies it, then
#      refuses it at decryption (exit 3).
# Installs Debian's age when it is missing (see below).
# WARD=path/to/ward to test a given binary; by default target/release/ward.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib-venv.sh
source scripts/lib-venv.sh

# The age tool: on PATH; else Debian's package (apt-get as root or with sudo -n; or, as
# any user, `apt-get download` unpacked into .age-tool); else, last, rage from crates.io
# (str4d's implementation of the same format and command line), said so loudly.
AGE=age
AGE_KEYGEN=age-keygen
if ! command -v age >/dev/null || ! command -v age-keygen >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    fi
    if { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; } && command -v apt-get >/dev/null; then
        echo "== apt-get install age"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age >/dev/null \
            || { $sudo apt-get update -qq >/dev/null \
                 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq age >/dev/null; } \
            || true
    fi
fi
if ! command -v age >/dev/null || ! command -v age-keygen >/dev/null; then
    tool=$PWD/.age-tool
    if [ ! -x "$tool/usr/bin/age" ] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
        echo "== apt-get download age (unpacked into .age-tool)"
        mkdir -p "$tool"
        (cd "$tool" && apt-get download age >/dev/null 2>&1 && dpkg-deb -x age_*.deb .) || true
    fi
    if [ -x "$tool/usr/bin/age" ]; then
        AGE=$tool/usr/bin/age
        AGE_KEYGEN=$tool/usr/bin/age-keygen
    else
        echo "WARNING: Debian's age is not installable here; using rage (crates.io), another implementation of the age format" >&2
        cargo install --locked --quiet --root "$tool" rage --version 0.11.1
        AGE=$tool/bin/rage
        AGE_KEYGEN=$tool/bin/rage-keygen
    fi
fi
if [ "$AGE" = age ]; then
    AGE=$(command -v age)
    AGE_KEYGEN=$(command -v age-keygen)
fi
age() { "$AGE" "$@"; }
age-keygen() { "$AGE_KEYGEN" "$@"; }
echo "age $(age --version)"
pinned_venv .venv-age tools/age-interop-requirements.txt
PY="$PWD/.venv-age/bin/python"
ward_binary_setup

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "interop-age: FAIL: $*" >&2; exit 1; }

age-keygen -o "$work/key.txt" 2>/dev/null
chmod 600 "$work/key.txt"
recipient=$(age-keygen -y "$work/key.txt")
"$WARD" keygen --out "$work/signer" >/dev/null
mnist=$PWD/tests/fixtures/mnist
model=$PWD/tests/fixtures/models/lenet_module
cat > "$work/train.toml" <<TOML
[model]
symbol = "$model/model-symbol.json"
params = "$model/model-0000.params"
name = "lenet"
[data]
batch_size = 64
[data.train]
format = "mnist"
images = "$mnist/train-images-idx3-ubyte.gz"
labels = "$mnist/train-labels-idx1-ubyte.gz"
[optimizer]
name = "sgd"
learning_rate = 0.1
momentum = 0.9
rescale_grad = 0.015625
[run]
epochs = 1
seed = "4"
threads = 1
TOML
train() {
    "$WARD" train --config "$work/train.toml" --sign-key "$work/signer/ward.key" \
        --checkpoint-every 20 "$@"
}
train --out "$work/run" --recipient "$recipient" > /dev/null 2>&1 || fail "ward train"

echo "a. the age tool decrypts a ward checkpoint; safetensors.numpy reads it"
last="$work/run/checkpoints/step-000000000063"
age -d -i "$work/key.txt" -o "$work/state.safetensors" "$last/state.age" || fail "age -d"
"$PY" - "$work/state.safetensors" "$work/run/package/weights.safetensors" <<'PY' || fail "a"
import json, sys
import numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open
state, package = load_file(sys.argv[1]), load_file(sys.argv[2])
for name, value in package.items():
    assert np.array_equal(state[name], value), name
assert state["optimizer/fc1_weight/momentum"].shape == package["fc1_weight"].shape
with safe_open(sys.argv[1], "np") as f:
    header = json.loads(f.metadata()["ward.state"])
assert header["info"]["position"] == {"step": 63, "epoch": 1, "batch": 0}, header["info"]
print(f"   {len(package)} weights equal the package's; {len(state) - len(package)} optimizer tensors")
PY

echo "b. a state encrypted by the age tool resumes, and ends where the original run ended"
cp -a "$work/run" "$work/again"
rm -rf "$work/again/package" "$work/again/checkpoints/step-000000000060" \
    "$work/again/checkpoints/step-000000000063"
mid="$work/again/checkpoints/step-000000000040"
age -d -i "$work/key.txt" -o "$work/mid.safetensors" "$mid/state.age" || fail "age -d (mid)"
reseal() {  # reseal CHECKPOINT RECIPIENT: encrypt with the age tool, update the index, sign
    rm "$1/state.age" "$1/model.sig"
    age -r "$2" -o "$1/state.age" "$work/mid.safetensors"
    "$PY" - "$1" <<'PY'
import json, os, sys
path = os.path.join(sys.argv[1], "checkpoint.json")
index = json.load(open(path))
index["state_bytes"] = os.path.getsize(os.path.join(sys.argv[1], "state.age"))
json.dump(index, open(path, "w"), indent=2)
PY
    "$WARD" sign "$1" --key "$work/signer/ward.key" --name lenet > /dev/null 2>&1
}
reseal "$mid" "$recipient" || fail "reseal"
train --resume "$work/again" --trust "$work/signer/ward.pub" --identity "$work/key.txt" \
    > /dev/null 2> "$work/resume.err" || { cat "$work/resume.err" >&2; fail "resume"; }
cmp "$work/run/package/weights.safetensors" "$work/again/package/weights.safetensors" \
    || fail "the resumed run's weights differ"
echo "   resumed from the age tool's file; the trained weights are identical"

echo "c. a state encrypted to another recipient is verified, then refused at decryption"
cp -a "$work/run" "$work/other"
rm -rf "$work/other/package" "$work/other/checkpoints/step-000000000060" \
    "$work/other/checkpoints/step-000000000063"
age-keygen -o "$work/other-key.txt" 2>/dev/null
reseal "$work/other/checkpoints/step-000000000040" "$(age-keygen -y "$work/other-key.txt")"
rc=0
train --resume "$work/other" --trust "$work/signer/ward.pub" --identity "$work/key.txt" \
    > /dev/null 2> "$work/other.err" || rc=$?
[ "$rc" -eq 3 ] && grep -q "^refused: cannot decrypt state.age" "$work/other.err" \
    || { cat "$work/other.err" >&2; fail "expected exit 3 and a decryption refusal, got $rc"; }
echo "   exit 3: $(grep '^refused' "$work/other.err")"
echo "interop-age: ok"
