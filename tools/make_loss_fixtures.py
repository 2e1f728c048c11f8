#!/usr/bin/env python3
"""Record MXNet 1.9.1's Gluon losses (`gluon.loss`), values and gradients, for ward's
losses for graphs without a head (crates/ward-train/tests/it/losses.rs).

Run with the MXNet virtual environment from the repository root:

    .venv-mx/bin/python tools/make_loss_fixtures.py

and it writes `tests/fixtures/losses/losses.json` (about 40 KB): for each case, the loss
as ward's `[loss]` table spells it, the prediction and label (float32 values, written as
the doubles that hold them exactly) with their shapes, a random head gradient (one value
per example, as `loss.backward(head)` takes it), the per-example loss MXNet returns and
the gradient of `sum(head * loss)` with respect to the prediction from `mx.autograd`.

Labels cover each loss's range: class indices for softmax cross-entropy (along the last
axis, along axis 1 of a 3-D prediction, with a prediction of log-probabilities for
`from_logits`), real targets for L1 and L2 (one per output, and one per example against
an `(N, 1)` prediction, which Gluon reshapes), 0/1 and soft targets for the sigmoid
binary cross-entropy (from logits, and from probabilities with `from_sigmoid`).

Deterministic: fixed seed, NaiveEngine, one thread.
"""
import json
import os

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

assert mx.__version__ == "1.9.1", mx.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "losses")
rng = np.random.RandomState(2061)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def case(name, spec, block, pred, label):
    pred, label = f32(pred), f32(label)
    head = f32(rng.uniform(-1.5, 1.5, size=(pred.shape[0],)))
    x = mx.nd.array(pred)
    x.attach_grad()
    with autograd.record():
        loss = block(x, mx.nd.array(label))
    loss.backward(mx.nd.array(head))
    return {
        "name": name,
        "loss": spec,
        "pred": pred.astype(np.float64).ravel().tolist(),
        "pred_shape": list(pred.shape),
        "label": label.astype(np.float64).ravel().tolist(),
        "label_shape": list(label.shape),
        "head": head.astype(np.float64).tolist(),
        "value": loss.asnumpy().astype(np.float64).ravel().tolist(),
        "grad": x.grad.asnumpy().astype(np.float64).ravel().tolist(),
    }


def classes(shape, k):
    return rng.randint(0, k, size=shape)


def main():
    L = gluon.loss
    logits = lambda *s: rng.normal(0, 2.0, size=s)  # noqa: E731
    cases = [
        case("softmax_ce_2d", {"name": "softmax_cross_entropy"},
             L.SoftmaxCrossEntropyLoss(), logits(8, 10), classes((8,), 10)),
        case("softmax_ce_sequence", {"name": "softmax_cross_entropy"},
             L.SoftmaxCrossEntropyLoss(), logits(4, 5, 7), classes((4, 5), 7)),
        case("softmax_ce_axis1", {"name": "softmax_cross_entropy", "axis": 1},
             L.SoftmaxCrossEntropyLoss(axis=1), logits(4, 6, 3), classes((4, 3), 6)),
        case("softmax_ce_weight", {"name": "softmax_cross_entropy", "weight": 0.25},
             L.SoftmaxCrossEntropyLoss(weight=0.25), logits(6, 4), classes((6,), 4)),
        case("softmax_ce_from_logits", {"name": "softmax_cross_entropy", "from_logits": True},
             L.SoftmaxCrossEntropyLoss(from_logits=True),
             mx.nd.log_softmax(mx.nd.array(logits(8, 5))).asnumpy(), classes((8,), 5)),
        case("l2", {"name": "l2"}, L.L2Loss(), logits(8, 3), logits(8, 3)),
        case("l2_weight", {"name": "l2", "weight": 3.0}, L.L2Loss(weight=3.0),
             logits(5, 2, 2), logits(5, 2, 2)),
        case("l2_one_per_example", {"name": "l2"}, L.L2Loss(), logits(7, 1), logits(7)),
        case("l1", {"name": "l1"}, L.L1Loss(), logits(8, 4), logits(8, 4)),
        case("l1_weight", {"name": "l1", "weight": 0.5}, L.L1Loss(weight=0.5),
             logits(6, 3), logits(6, 3)),
        case("sigmoid_bce", {"name": "sigmoid_binary_cross_entropy"},
             L.SigmoidBinaryCrossEntropyLoss(), logits(8, 5),
             rng.randint(0, 2, size=(8, 5))),
        case("sigmoid_bce_soft", {"name": "sigmoid_binary_cross_entropy", "weight": 2.0},
             L.SigmoidBinaryCrossEntropyLoss(weight=2.0), logits(6, 3),
             rng.uniform(0, 1, size=(6, 3))),
        case("sigmoid_bce_from_sigmoid",
             {"name": "sigmoid_binary_cross_entropy", "from_sigmoid": True},
             L.SigmoidBinaryCrossEntropyLoss(from_sigmoid=True),
             rng.uniform(0.05, 0.95, size=(8, 4)), rng.randint(0, 2, size=(8, 4))),
    ]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "losses.json"), "w") as f:
        json.dump({"mxnet": mx.__version__, "cases": cases}, f, indent=None)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}/losses.json")


if __name__ == "__main__":
    main()
