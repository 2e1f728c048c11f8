#!/usr/bin/env bash
# Checkpoint benchmark: writing and loading a ward checkpoint of ResNet-18 (weights and SGD
# momentum: encoded, age-encrypted, signed, written and synced atomically; verified,
# decrypted and parsed) against the floors measured in the same run over the same bytes
# (age's stream cipher, the age crate's and ring's ChaCha20-Poly1305 over age's chunks on
# one thread, SHA-256, a plain write + fsync or read), and against MXNet 1.9.1's own
# Module.save_checkpoint(save_optimizer_states=True) and its load, which write and read
# plaintext with no fsync. Needs the MXNet venv (DEVELOPERS.md) and bench/out's ResNet-18
# export (bench/run.sh makes it). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${MXNET_PYTHON:-.venv-mx/bin/python}
rounds=${ROUNDS:-7}
out=bench/out
model=$out/resnet18_v1_b1
[ -f "$model/model-symbol.json" ] || "$py" bench/mxnet_models.py export "$out"
cargo build --locked --release --bin ward-bench-checkpoint
scratch=$out/checkpoint
mkdir -p "$scratch"
w=$(target/release/ward-bench-checkpoint "$model/model-0000.params" "$scratch" "$rounds")
m=$("$py" bench/checkpoint/mxnet_checkpoint.py "$model" "$scratch/mxnet" "$rounds" 2>/dev/null)
rm -rf "$scratch"
"$py" - "$w" "$m" <<'PY'
import json, sys
w, m = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ms = lambda s: f"{s * 1e3:.0f}"
write_floor = w["encrypt_s"] + w["sha256_s"] + w["write_fsync_s"]
load_floor = w["read_s"] + w["sha256_s"] + w["decrypt_s"]
ring_write_floor = w["encrypt_ring_s"] + w["sha256_s"] + w["write_fsync_s"]
ring_load_floor = w["read_s"] + w["sha256_s"] + w["decrypt_ring_s"]
print(f"ResNet-18 weights + momentum: {w['plaintext_bytes'] / 2**20:.1f} MiB state, "
      f"{w['sealed_bytes'] / 2**20:.1f} MiB encrypted; MXNet's files {m['bytes'] / 2**20:.1f} MiB")
print()
print("| | ward ms | floor ms (age crate's cipher + SHA-256 + I/O) | ward / floor | floor with ring's cipher | ward / that floor | MXNet ms (plaintext, no fsync) | ward / MXNet |")
print("|---|---|---|---|---|---|---|---|")
for what, t, floor, cipher, ring_floor, ring_cipher, io, mx in [
    ("write", w["write_s"], write_floor, w["encrypt_s"], ring_write_floor, w["encrypt_ring_s"], w["write_fsync_s"], m["save_s"]),
    ("load", w["load_s"], load_floor, w["decrypt_s"], ring_load_floor, w["decrypt_ring_s"], w["read_s"], m["load_s"]),
]:
    print(f"| {what} | {ms(t)} | {ms(floor)} ({ms(cipher)} + {ms(w['sha256_s'])} + {ms(io)}) | {t / floor:.2f}x "
          f"| {ms(ring_floor)} ({ms(ring_cipher)} + {ms(w['sha256_s'])} + {ms(io)}) | {t / ring_floor:.2f}x "
          f"| {ms(mx)} | {t / mx:.2f}x |")
print()
print(f"Ward's sealing alone, with the file's SHA-256 (in memory, no file): {ms(w['seal_and_hash_s'])} ms.")
PY
