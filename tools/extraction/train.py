#!/usr/bin/env python3
"""Train the victim model of the extraction test and export it with real MXNet 1.9.1.

    python3 -m venv .venv-mx && .venv-mx/bin/pip install mxnet==1.9.1 numpy==1.23.5   # once
    .venv-mx/bin/python tools/extraction/train.py

Model: softmax regression (multinomial logistic regression) on
tests/fixtures/extraction/gmm5.csv, trained with plain numpy full-batch gradient
descent (float64, zero initialisation, fixed step count, small L2 penalty), so
the result is deterministic.

Export (tests/fixtures/extraction/softmax/):
* model-symbol.json, model-0000.params: `Module.save_checkpoint` of
  data(-1, D) -> FullyConnected(num_hidden=K, name=fc) -> softmax(name=softmax);
* input-data.npy (float32, the test rows then 8 uniform points of the feature box)
  and output-0.npy: what MXNet computes for it from the RELOADED checkpoint;
* true-weight.npy (K, D) and true-bias.npy (K,), float32: the same weights, so
  that the attack can compute the true model with numpy alone;
* meta.json: shapes, per-feature min/max of the data set (the box the attack
  draws uniform queries from), accuracies, versions.

The script fails unless the reloaded MXNet model reproduces the numpy model
(float32 weights) within 1e-6 and the .params hold exactly the .npy weights.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA_CSV, MODEL_DIR, ROOT, load_csv, softmax  # noqa: E402

STEPS = 3000
LR = 0.5
L2 = 1e-2
TOL = 1e-6


def train(x, y, k):
    n, d = x.shape
    onehot = np.eye(k)[y]
    w = np.zeros((k, d))
    b = np.zeros(k)
    for _ in range(STEPS):
        p = softmax(x @ w.T + b)
        g = (p - onehot) / n
        w -= LR * (g.T @ x + L2 * w)
        b -= LR * g.sum(axis=0)
    p = softmax(x @ w.T + b)
    loss = -np.log(p[np.arange(n), y]).mean() + 0.5 * L2 * (w * w).sum()
    return w, b, loss


def main():
    import mxnet as mx

    data = load_csv()
    xtr, ytr = data["train"]
    xte, yte = data["test"]
    k = int(max(ytr.max(), yte.max())) + 1
    d = xtr.shape[1]
    allx = np.concatenate([xtr, xte])
    fmin, fmax = allx.min(axis=0), allx.max(axis=0)

    w, b, loss = train(xtr, ytr, k)
    w32, b32 = w.astype(np.float32), b.astype(np.float32)

    def numpy_model(x):  # the exported model: float32 weights, float64 arithmetic
        return softmax(np.asarray(x, np.float64) @ w32.T.astype(np.float64) + b32.astype(np.float64))

    acc_train = float((numpy_model(xtr).argmax(1) == ytr).mean())
    acc_test = float((numpy_model(xte).argmax(1) == yte).mean())

    rng = np.random.default_rng(7)
    uniform = fmin + (fmax - fmin) * rng.random((8, d))
    x_in = np.concatenate([xte, uniform]).astype(np.float32)

    os.makedirs(MODEL_DIR, exist_ok=True)
    prefix = os.path.join(MODEL_DIR, "model")
    sym_data = mx.sym.var("data")
    fc = mx.sym.FullyConnected(sym_data, num_hidden=k, name="fc")
    out = mx.sym.softmax(fc, axis=-1, name="softmax")
    mod = mx.mod.Module(out, data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", (1, d))], for_training=False)
    mod.set_params({"fc_weight": mx.nd.array(w32), "fc_bias": mx.nd.array(b32)}, {}, allow_missing=False)
    mod.save_checkpoint(prefix, 0)

    # Reload from disk and run the probe input through MXNet.
    sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    if sorted(arg_params) != ["fc_bias", "fc_weight"] or aux_params:
        sys.exit(f"unexpected params: {sorted(arg_params)} {sorted(aux_params)}")
    if not (np.array_equal(arg_params["fc_weight"].asnumpy(), w32) and np.array_equal(arg_params["fc_bias"].asnumpy(), b32)):
        sys.exit("the .params do not hold the trained weights")
    mod2 = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    mod2.bind(data_shapes=[("data", x_in.shape)], for_training=False)
    mod2.set_params(arg_params, aux_params)
    mod2.forward(mx.io.DataBatch([mx.nd.array(x_in)]), is_train=False)
    y_mx = mod2.get_outputs()[0].asnumpy()
    diff = float(np.abs(y_mx - numpy_model(x_in)).max())
    if y_mx.dtype != np.float32 or y_mx.shape != (x_in.shape[0], k) or diff > TOL:
        sys.exit(f"MXNet output differs from the numpy model: max |diff| = {diff:.3g}")

    np.save(os.path.join(MODEL_DIR, "input-data.npy"), x_in)
    np.save(os.path.join(MODEL_DIR, "output-0.npy"), y_mx)
    np.save(os.path.join(MODEL_DIR, "true-weight.npy"), w32)
    np.save(os.path.join(MODEL_DIR, "true-bias.npy"), b32)
    meta = {
        "model": "softmax regression: data(-1, D) -> FullyConnected(num_hidden=K) -> softmax",
        "dataset": os.path.relpath(DATA_CSV, ROOT),
        "classes": k,
        "features": d,
        "inputs": [{"name": "data", "dtype": "float32", "shape": [-1, d]}],
        "outputs": sym.list_outputs(),
        "feature_min": [round(float(v), 3) for v in fmin],
        "feature_max": [round(float(v), 3) for v in fmax],
        "training": {"steps": STEPS, "lr": LR, "l2": L2, "final_loss": round(float(loss), 6)},
        "accuracy": {"train": acc_train, "test": acc_test},
        "mxnet_check": {"rows": int(x_in.shape[0]), "max_abs_diff_vs_numpy": diff},
        "mxnet_version": mx.__version__,
        "numpy_version": np.__version__,
    }
    with open(os.path.join(MODEL_DIR, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(json.dumps({k_: meta[k_] for k_ in ("classes", "features", "accuracy", "mxnet_check", "training")}))
    logits = np.concatenate([xte, uniform]) @ w.T + b
    print(f"|w| max {np.abs(w).max():.3f}, logit spread (max-min per row) on test+uniform rows: "
          f"median {np.median(np.ptp(logits, axis=1)):.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
