#!/usr/bin/env bash
# Checkpoint benchmark: writing and loading a ward checkpoint of ResNet-18 (weights and SGD
# momentum: encoded, age-encrypted, signed, written and synced atomically; verified,
# decrypted and parsed) against the floors measured in the same run over the same bytes
# (age's cipher, SHA-256, a plain write + fsync or read), and against MXNet 1.9.1's own
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
print(f"ResNet-18 weights + momentum: {w['plaintext_bytes'] / 2**20:.1f} MiB state, "
      f"{w['sealed_bytes'] / 2**20:.1f} MiB encrypted; MXNet's files {m['bytes'] / 2**20:.1f} MiB")
print()
print("| | ward ms | floor ms (age + SHA-256 + I/O) | ward / floor | MXNet ms (plaintext, no fsync) | ward / MXNet |")
print("|---|---|---|---|---|---|")
print(f"| write | {ms(w['write_s'])} | {ms(write_floor)} ({ms(w['encrypt_s'])} + {ms(w['sha256_s'])} + {ms(w['write_fsync_s'])}) "
      f"| {w['write_s'] / write_floor:.2f}x | {ms(m['save_s'])} | {w['write_s'] / m['save_s']:.2f}x |")
print(f"| load | {ms(w['load_s'])} | {ms(load_floor)} ({ms(w['decrypt_s'])} + {ms(w['sha256_s'])} + {ms(w['read_s'])}) "
      f"| {w['load_s'] / load_floor:.2f}x | {ms(m['load_s'])} | {w['load_s'] / m['load_s']:.2f}x |")
PY
