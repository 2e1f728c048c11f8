#!/usr/bin/env bash
# Signing benchmark: how long verifying a signed model of >= 1 GiB takes with ward and with
# the OpenSSF reference (PyPI model-signing 1.1.1), against sha256sum of the weights as the
# floor. One run, page cache warm, best of 3 wall-clock times per row. Prints a Markdown
# table (also written to bench/out/signing.md).
#
# The model (bench/out/signing/model, git-ignored): weights.safetensors, one F32 tensor of
# random data (SIGNING_BENCH_MIB MiB of data, default 1024), and a small config.json.
# Reuses .venv-ms (scripts/lib-model-signing-venv.sh). WARD=path/to/ward to time a given
# binary; by default target/release/ward, built when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib-model-signing-venv.sh
source scripts/lib-model-signing-venv.sh

ms_venv_setup
ward_binary_setup

mib=${SIGNING_BENCH_MIB:-1024}
shard_size=268435456
out=bench/out/signing
model=$out/model
sigs=$out/sigs   # outside the model, so that neither signature is hashed into the other
mkdir -p "$model" "$sigs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() { echo "bench/signing: FAIL: $*" >&2; exit 1; }

# Writes a valid safetensors file: u64 LE header length, the JSON header padded with spaces
# to a multiple of 8, then 4N random bytes. Keeps an existing file of the right size.
# Then checks the header against the file whatever happened.
"$MS_PY" - "$model/weights.safetensors" "$mib" <<'PY'
import json, os, struct, sys
path, mib = sys.argv[1], int(sys.argv[2])
n = mib * 1024 * 1024 // 4
header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}},
                    separators=(",", ":")).encode()
header += b" " * (-len(header) % 8)
size = 8 + len(header) + 4 * n
if not os.path.exists(path) or os.path.getsize(path) != size:
    print(f"== writing {path} ({size} bytes)", flush=True)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        left = 4 * n
        while left:
            k = min(left, 64 << 20)
            f.write(os.urandom(k))
            left -= k
    os.replace(path + ".tmp", path)
with open(path, "rb") as f:
    (hlen,) = struct.unpack("<Q", f.read(8))
    raw = f.read(hlen)
assert hlen % 8 == 0 and raw[:1] == b"{", "bad header"
meta = json.loads(raw)
w = meta["w"]
assert w["dtype"] == "F32" and w["shape"] == [n] and w["data_offsets"] == [0, 4 * n], w
assert 8 + hlen + w["data_offsets"][1] == os.path.getsize(path), "size does not match the header"
assert os.path.getsize(path) >= 1 << 30 or mib < 1024, "smaller than 1 GiB"
PY
printf '{"architectures": ["BenchModel"], "hidden_size": 4096, "dtype": "float32"}\n' > "$model/config.json"

[ -f "$out/keys/bench.key" ] || "$WARD" keygen --out "$out/keys" --name bench
key=$out/keys/bench.key
pub=$out/keys/bench.pub

# The Python API verifier, with the hashing config passed explicitly (1.1.1 cannot guess
# it from a shards signature: the signed shard_size is a float, format doc D2).
cat > "$work/ms_verify_shards.py" <<'PY'
import sys
import model_signing
model, sig, pub, shard_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
(model_signing.verifying.Config()
    .use_elliptic_key_verifier(public_key=pub)
    .set_hashing_config(model_signing.hashing.Config().use_shard_serialization(shard_size=shard_size))
    .verify(model, sig))
PY

# Best of 3 wall-clock seconds of a command that must succeed; sets $best.
best_of_3() {
    local i start end ns rc min=
    for i in 1 2 3; do
        start=$(date +%s%N)
        rc=0
        "$@" > /dev/null 2> "$work/err" || rc=$?
        [ "$rc" -eq 0 ] || { cat "$work/err" >&2; fail "exit $rc: $*"; }
        end=$(date +%s%N)
        ns=$((end - start))
        if [ -z "$min" ] || [ "$ns" -lt "$min" ]; then min=$ns; fi
        echo "   run $i: $(awk -v n="$ns" 'BEGIN { printf "%.3f", n / 1e9 }') s" >&2
    done
    best=$(awk -v n="$min" 'BEGIN { printf "%.3f", n / 1e9 }')
}

rows=()
row() {  # tool, method, command...
    local tool=$1 method=$2
    shift 2
    echo "== $tool: $method" >&2
    best_of_3 "$@"
    rows+=("$tool|$method|$best")
}

echo "== signing (not timed): ward sign, files and shards ($shard_size-byte shards)"
rm -f "$sigs/files.sig" "$sigs/shards.sig"
"$WARD" sign "$model" --key "$key" --signature "$sigs/files.sig"
"$WARD" sign "$model" --key "$key" --signature "$sigs/shards.sig" --shard-size "$shard_size"

echo "== warming the page cache"
cat "$model"/* > /dev/null

row "sha256sum" "weights.safetensors only (floor)" sha256sum "$model/weights.safetensors"
# coreutils' sha256sum has no SHA-NI code; OpenSSL's (which Python's hashlib uses) does.
row "openssl dgst -sha256" "weights.safetensors only (SHA-NI floor)" \
    openssl dgst -sha256 "$model/weights.safetensors"
# ward never overwrites a signature: each timed run writes a fresh one.
sign_fresh() {  # signature path, extra flags...
    rm -f "$1"
    "$WARD" sign "$model" --key "$key" --signature "$@"
}
row "ward sign" "files, SHA-256" sign_fresh "$work/files.sig"
row "ward sign" "shards $shard_size, SHA-256" sign_fresh "$work/shards.sig" --shard-size "$shard_size"
row "ward verify" "files, SHA-256" "$WARD" verify "$model" --trust "$pub" --signature "$sigs/files.sig"
row "ward verify" "shards $shard_size, SHA-256" \
    "$WARD" verify "$model" --trust "$pub" --signature "$sigs/shards.sig"
row "model_signing 1.1.1 CLI verify key" "files, SHA-256 (ward's signature)" \
    "$MS_CLI" verify key "$model" --signature "$sigs/files.sig" --public_key "$pub"
row "model_signing 1.1.1 Python API verify" "shards $shard_size, SHA-256 (ward's signature)" \
    "$MS_PY" "$work/ms_verify_shards.py" "$model" "$sigs/shards.sig" "$pub" "$shard_size"

{
    echo
    echo "Signing benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'): $(lscpu | sed -n 's/^Model name: *//p' | head -n1)," \
        "nproc $(nproc); $(du -b "$model/weights.safetensors" | cut -f1) bytes of weights in the page cache;" \
        "best of 3, wall clock (the model_signing rows include Python start-up and imports)."
    echo
    echo "| tool | method | seconds | ratio to sha256sum |"
    echo "|---|---|---|---|"
    floor=${rows[0]##*|}
    for r in "${rows[@]}"; do
        IFS='|' read -r tool method secs <<< "$r"
        echo "| $tool | $method | $secs | $(awk -v a="$secs" -v b="$floor" 'BEGIN { printf "%.2f", a / b }') |"
    done
} | tee bench/out/signing.md
