"""The Markdown report of bench/python/run.sh from the three engines' JSON."""

import json
import sys

ward, ort, mxnet = (json.loads(a) for a in sys.argv[1:4])
print("Per-call overhead, MLP fixture at batch 1 (median of 7 rounds of 2,000 calls):")
print()
print("| ward µs | onnxruntime µs | MXNet µs | ward / onnxruntime |")
print("|---|---|---|---|")
print(f"| {ward['overhead_us']:.1f} | {ort['overhead_us']:.1f} | {mxnet['overhead_us']:.1f} "
      f"| {ward['overhead_us'] / ort['overhead_us']:.2f}x |")
print()
print("Whole model, one compute thread (median of 15 calls):")
print()
print("| model, batch | ward ms | onnxruntime ms | MXNet ms | ward / onnxruntime | ward / MXNet |")
print("|---|---|---|---|---|---|")
for key, w in ward["models_ms"].items():
    o, m = ort["models_ms"][key], mxnet["models_ms"][key]
    print(f"| {key} | {w:.2f} | {o:.2f} | {m:.2f} | {w / o:.2f}x | {w / m:.2f}x |")
print()
print("Two Python threads calling at once, one compute thread each, ResNet-18 at batch 1:")
print()
print("| engine | calls/s, 1 thread | calls/s, 2 threads | speedup |")
print("|---|---|---|---|")
for name, r in (("ward", ward), ("onnxruntime", ort)):
    t = r["threads"]
    print(f"| {name} | {t['one_per_s']:.1f} | {t['two_per_s']:.1f} | {t['speedup']:.2f}x |")
print()
mem = ward["memory"]
growth = mem["rss_after_11000"] - mem["rss_after_1000"]
print(f"ward RSS after 1,000 MLP calls {mem['rss_after_1000'] / 2**20:.1f} MiB, after 11,000 "
      f"{mem['rss_after_11000'] / 2**20:.1f} MiB (growth {growth / 2**10:.0f} KiB over 10,000 calls)")
