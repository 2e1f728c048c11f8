#!/usr/bin/env python3
"""Record MXNet 1.9.1's evaluation metrics (`mx.metric`) over several batches, for
ward-train's metric checks (crates/ward-train/tests/it/metrics.rs).

Run with the MXNet virtual environment from the repository root:

    .venv-mx/bin/python tools/make_metric_fixtures.py

and it writes `tests/fixtures/metrics/metrics.json` (about 60 KB): for each case, the
metric as ward's `MetricSpec` spells it, and its batches (unequal sizes, so that MXNet's
two accumulation rules, per-instance sums and per-batch means, give different values);
each batch has its predictions and labels (float32 values, written as the doubles that
hold them exactly; NaN as null) with their shapes, and what MXNet's metric object holds after that
update: `get()`, `num_inst`, `sum_metric`. One metric object sees every batch of a case
in order, through `update([label], [pred])`, as Module's `update_metric` calls it.

Predictions are softmax rows for the classification metrics, with a few exact zeros
(so `eps` and the 1e-10 floor matter); labels include, per case, fractional values
(truncated), out-of-range values (clipped by `pick`), the ignored label, and rows whose
prediction ties or holds NaN (MXNet's argmax takes the first maximum, NaN above all).

Deterministic: fixed seed, NaiveEngine, one thread.
"""
import json
import os

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402

assert mx.__version__ == "1.9.1", mx.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "metrics")
SIZES = [5, 3, 8, 1, 7]
rng = np.random.RandomState(1909)


def softmax_rows(n, c, zeros=True):
    x = rng.randn(n, c).astype(np.float32) * 2
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    if zeros and n > 2:
        p[1, rng.randint(c)] = 0.0
    return p


def classes(n, c):
    return rng.randint(0, c, size=n).astype(np.float32)


def batches_classify(c, tweak=None):
    out = []
    for n in SIZES:
        pred, label = softmax_rows(n, c), classes(n, c)
        if tweak:
            tweak(pred, label)
        out.append((pred, label))
    return out


def accuracy_ties(pred, label):
    if pred.shape[0] > 2:
        pred[0, :] = 0.25
        label[0] = 0.0
        pred[2, 1] = np.nan
        label[2] = 1.0


def fractional(pred, label):
    label[0] = label[0] + 0.7


def perplexity_odd(pred, label):
    label[0] = 0.0  # the ignored label in the ignore case
    if label.shape[0] > 2:
        label[1] = float(pred.shape[1]) + 0.5  # clipped to the last class
        label[2] = -1.0  # clipped to 0


def regression(shape_of, label_shape_of):
    out = []
    for n in SIZES:
        pred = rng.randn(*shape_of(n)).astype(np.float32)
        label = rng.randn(*label_shape_of(n)).astype(np.float32)
        out.append((pred, label))
    return out


def accuracy_axis():
    # (n, 3 classes, 4 positions), class axis 1, labels (n, 4).
    out = []
    for n in SIZES:
        pred = rng.rand(n, 3, 4).astype(np.float32)
        out.append((pred, rng.randint(0, 3, size=(n, 4)).astype(np.float32)))
    return out


def accuracy_last_axis():
    # (n, 4 positions, 3 classes), axis -1.
    out = []
    for n in SIZES:
        pred = rng.rand(n, 4, 3).astype(np.float32)
        out.append((pred, rng.randint(0, 3, size=(n, 4)).astype(np.float32)))
    return out


def accuracy_labels():
    # Predictions that are already labels (same shape): cast to int32 as the labels.
    out = []
    for n in SIZES:
        pred = (rng.randint(0, 4, size=n) + rng.choice([0.0, 0.4, 0.9], size=n))
        out.append((pred.astype(np.float32), rng.randint(0, 4, size=n).astype(np.float32)))
    return out


def column_labels():
    # Labels of shape (n, 1) against (n, c) predictions.
    return [(p, l.reshape(-1, 1)) for p, l in batches_classify(6)]


CASES = [
    ("accuracy", {"name": "accuracy"}, lambda: mx.metric.Accuracy(),
     lambda: batches_classify(10, accuracy_ties)),
    ("accuracy_fractional_labels", {"name": "acc"}, lambda: mx.metric.create("acc"),
     lambda: batches_classify(5, fractional)),
    ("accuracy_column_labels", {"name": "accuracy"}, lambda: mx.metric.Accuracy(),
     column_labels),
    ("accuracy_axis1_3d", {"name": "accuracy", "axis": 1},
     lambda: mx.metric.Accuracy(axis=1), accuracy_axis),
    ("accuracy_axis_last", {"name": "accuracy", "axis": -1},
     lambda: mx.metric.Accuracy(axis=-1), accuracy_last_axis),
    ("accuracy_pred_labels", {"name": "accuracy"}, lambda: mx.metric.Accuracy(),
     accuracy_labels),
    ("top_k_3", {"name": "top_k_accuracy", "top_k": 3},
     lambda: mx.metric.TopKAccuracy(top_k=3), lambda: batches_classify(10)),
    ("top_k_5", {"name": "top_k_acc", "top_k": 5},
     lambda: mx.metric.create("top_k_acc", top_k=5), lambda: batches_classify(10)),
    # top_k above the class count: NumPy's argpartition raises, so the case is k = classes.
    ("top_k_all_classes", {"name": "top_k_accuracy", "top_k": 10},
     lambda: mx.metric.TopKAccuracy(top_k=10), lambda: batches_classify(10)),
    ("cross_entropy", {"name": "cross_entropy"}, lambda: mx.metric.CrossEntropy(),
     lambda: batches_classify(10)),
    ("cross_entropy_eps", {"name": "ce", "eps": 1e-3}, lambda: mx.metric.create("ce", eps=1e-3),
     lambda: batches_classify(4, fractional)),
    ("nll_loss", {"name": "nll_loss"}, lambda: mx.metric.NegativeLogLikelihood(),
     lambda: batches_classify(7)),
    ("mse", {"name": "mse"}, lambda: mx.metric.MSE(),
     lambda: regression(lambda n: (n,), lambda n: (n,))),
    ("mse_column_pred", {"name": "mse"}, lambda: mx.metric.MSE(),
     lambda: regression(lambda n: (n, 1), lambda n: (n,))),
    ("mse_broadcast_label", {"name": "mse"}, lambda: mx.metric.MSE(),
     lambda: regression(lambda n: (n, 3), lambda n: (n,))),
    ("mae", {"name": "mae"}, lambda: mx.metric.MAE(),
     lambda: regression(lambda n: (n, 3), lambda n: (n, 3))),
    ("rmse", {"name": "rmse"}, lambda: mx.metric.RMSE(),
     lambda: regression(lambda n: (n, 2), lambda n: (n, 2))),
    ("rmse_1d", {"name": "rmse"}, lambda: mx.metric.RMSE(),
     lambda: regression(lambda n: (n,), lambda n: (n,))),
    ("perplexity", {"name": "perplexity"}, lambda: mx.metric.Perplexity(None),
     lambda: batches_classify(10, perplexity_odd)),
    ("perplexity_ignore", {"name": "perplexity", "ignore_label": 0},
     lambda: mx.metric.Perplexity(ignore_label=0), lambda: batches_classify(10, perplexity_odd)),
]


def values(a):
    """Float32 values as JSON numbers; NaN (not JSON) as null."""
    return [None if np.isnan(v) else float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def main():
    cases = []
    for name, spec, make, data in CASES:
        metric = make()
        batches = []
        for pred, label in data():
            metric.update([mx.nd.array(label)], [mx.nd.array(pred)])
            got = metric.get()[1]
            batches.append({
                "pred": values(pred), "pred_shape": list(pred.shape),
                "label": values(label), "label_shape": list(label.shape),
                "get": float(got), "num_inst": float(metric.num_inst),
                "sum_metric": float(metric.sum_metric),
            })
        cases.append({"case": name, "spec": spec, "mxnet_name": metric.get()[0],
                      "batches": batches})
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "metrics.json")
    with open(path, "w") as f:
        json.dump({"mxnet_version": mx.__version__, "cases": cases}, f, sort_keys=True)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")
    for c in cases:
        print(f"  {c['case']:28} {c['mxnet_name']:20} "
              f"{[round(b['get'], 4) for b in c['batches']]}")


if __name__ == "__main__":
    main()
