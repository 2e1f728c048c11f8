#!/usr/bin/env python3
"""Record 20 steps of MXNet 1.9.1 Module training, for ward-train's trajectory check
(crates/ward-train/tests/it/trajectories.rs).

Run with the MXNet virtual environment from the repository root:

    .venv-mx/bin/python tools/make_trajectory_fixtures.py            # all five models
    .venv-mx/bin/python tools/make_trajectory_fixtures.py mlp lstm_lm  # only these

It writes `tests/fixtures/trajectories/<model>/` for five models, each a symbol ending
in `SoftmaxOutput` (label `softmax_label`) trained by `mx.mod.Module`:

| file | content |
|---|---|
| `model-symbol.json`, `model-0000.params` | `Module.save_checkpoint` of the initial weights |
| `data-<k>.npy`, `label-<k>.npy` | the fixed batches; step s (1-based) trains on batch (s-1) % batches |
| `weights-<s>.npy` | every arg and aux parameter after step s (MXNet's `get_params`), flattened and concatenated in the order `meta.json` lists them |
| `meta.json` | the inputs, the optimizer (ward's `OptimizerSpec` keys; MXNet gets the same keyword arguments), `steps`, `batches`, `recorded` (the steps with a `weights-<s>.npy`), `params` (name, shape, aux), `losses` (the mean cross-entropy of each step's forward pass, from `get_outputs()` after `forward_backward`, before the update), notes |

Initial weights: Xavier (MXNet's default: uniform, `avg` fan, magnitude 3) for every
tensor of two or more dimensions, and random values for the rest (biases N(0, 0.1),
gamma U(0.5, 1.5), beta N(0, 0.2), BatchNorm running mean N(0, 0.5) and variance
U(0.5, 2), the LSTM's packed vector U(-0.1, 0.1)), so that defaults cannot hide a
mistake. No model has Dropout. BatchNorm runs in training mode, so its moving
statistics (aux) change every step and are recorded too.

Each model runs in its own subprocess (Gluon's name counters) with NaiveEngine and one
thread; two runs write identical files.
"""
import json
import os
import subprocess
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "trajectories")
STEPS = 20
RECORDED = [1, 10, 20]
MODELS = ["mlp", "lenet_gluon_bn", "lenet_module", "resnet18_v1_narrow", "lstm_lm"]


def build(name):
    import mxnet as mx
    from mxnet.gluon import nn

    data = mx.sym.var("data")
    label = mx.sym.var("softmax_label")
    if name == "mlp":
        x = mx.sym.FullyConnected(data, num_hidden=32, name="fc1")
        x = mx.sym.Activation(x, act_type="relu", name="relu1")
        x = mx.sym.FullyConnected(x, num_hidden=16, name="fc2")
        x = mx.sym.Activation(x, act_type="tanh", name="tanh2")
        x = mx.sym.FullyConnected(x, num_hidden=10, name="fc3")
        return (mx.sym.SoftmaxOutput(x, label, name="softmax"), (8, 64), 10, 4, 0.1,
                "FC(32) relu FC(16) tanh FC(10) SoftmaxOutput, symbol API")
    if name == "lenet_gluon_bn":
        net = nn.HybridSequential(prefix="lenet_")
        with net.name_scope():
            net.add(nn.Conv2D(6, 5), nn.BatchNorm(), nn.Activation("relu"), nn.MaxPool2D(2),
                    nn.Conv2D(12, 5), nn.BatchNorm(), nn.Activation("relu"), nn.MaxPool2D(2),
                    nn.Flatten(), nn.Dense(32, activation="relu"), nn.Dense(10))
        x = net(data)
        return (mx.sym.SoftmaxOutput(x, label, name="softmax"), (8, 1, 28, 28), 10, 2, 0.05,
                "Gluon LeNet: Conv(6,5) BN relu MaxPool2, Conv(12,5) BN relu MaxPool2, "
                "Dense(32, relu), Dense(10); net(sym.var('data')) wrapped in SoftmaxOutput")
    if name == "lenet_module":
        x = mx.sym.Convolution(data, kernel=(5, 5), num_filter=8, name="conv1")
        x = mx.sym.Activation(x, act_type="relu", name="relu1")
        x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")
        x = mx.sym.Convolution(x, kernel=(5, 5), num_filter=16, name="conv2")
        x = mx.sym.Activation(x, act_type="relu", name="relu2")
        x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool2")
        x = mx.sym.Flatten(x, name="flatten")
        x = mx.sym.FullyConnected(x, num_hidden=32, name="fc1")
        x = mx.sym.Activation(x, act_type="relu", name="relu3")
        x = mx.sym.FullyConnected(x, num_hidden=10, name="fc2")
        return (mx.sym.SoftmaxOutput(x, label, name="softmax"), (8, 1, 28, 28), 10, 2, 0.05,
                "Module-API LeNet (conv 8/16, FC 32/10) ending in SoftmaxOutput")
    if name == "resnet18_v1_narrow":
        from mxnet.gluon.model_zoo.vision.resnet import BasicBlockV1, ResNetV1
        # thumbnail: the model zoo's small-image stem (one 3x3 convolution). At this
        # width and batch the trajectory sits near ReLU kinks: an activation within
        # float32 rounding of zero that flips changes a gradient by up to 1e-3, and
        # momentum grows that to percents in ten steps. The ImageNet stem on 32x32 (1x1
        # maps in the last stage), and the thumbnail stem on 32x32 at rates 0.01-0.05,
        # put such an activation within ward's rounding difference from MXNet (MXNet's
        # own run moves as much from weights perturbed by 1e-6); 16x16 at rate 0.01
        # stays clear of them.
        net = ResNetV1(BasicBlockV1, [2, 2, 2, 2], [6, 6, 12, 16, 24], classes=10,
                       thumbnail=True)
        x = net(data)
        return (mx.sym.SoftmaxOutput(x, label, name="softmax"), (8, 3, 16, 16), 10, 2, 0.01,
                "ResNetV1(BasicBlockV1, [2,2,2,2], [6,6,12,16,24], classes=10, "
                "thumbnail=True): the resnet18_v1 topology (BasicBlockV1, 1x1 stride-2 "
                "downsample, BatchNorm in training mode, global average pool) narrowed, "
                "with the model zoo's small-image stem, on 16x16 at learning rate 0.01 "
                "(near-kink sensitivity: see the script)")
    if name == "lstm_lm":
        t, n, h, v, e = 10, 4, 32, 50, 16
        x = mx.sym.Embedding(data, input_dim=v, output_dim=e, name="embed")
        x = mx.sym.RNN(x, mx.sym.var("lstm_parameters"),
                       mx.sym.zeros((2, n, h)), mx.sym.zeros((2, n, h)),
                       state_size=h, num_layers=2, mode="lstm", name="lstm")
        x = mx.sym.FullyConnected(x, num_hidden=v, flatten=False, name="decoder")
        x = mx.sym.Reshape(x, shape=(-1, v), name="reshape")
        return (mx.sym.SoftmaxOutput(x, label, name="softmax"), (t, n), v, 4, 0.5,
                "LSTM language model: tokens (T=10, N=4) -> Embedding(50, 16) -> "
                "sym.RNN(lstm, 2 layers, 32 hidden, packed lstm_parameters, zero states "
                "from sym.zeros) -> FullyConnected(50, flatten=False) -> Reshape(-1, 50) -> "
                "SoftmaxOutput; labels (T*N,) are the next tokens")
    raise ValueError(name)


def initial(name, shape, aux, rng):
    if aux and name.endswith(("running_mean", "moving_mean")):
        return rng.normal(0, 0.5, shape)
    if aux and name.endswith(("running_var", "moving_var")):
        return rng.uniform(0.5, 2.0, shape)
    if name.endswith("gamma"):
        return rng.uniform(0.5, 1.5, shape)
    if name.endswith("beta"):
        return rng.normal(0, 0.2, shape)
    if name.endswith("parameters"):
        return rng.uniform(-0.1, 0.1, shape)
    if len(shape) >= 2:
        fan_out = shape[0]
        fan_in = int(__import__("numpy").prod(shape[1:]))
        scale = (3.0 / ((fan_in + fan_out) / 2.0)) ** 0.5
        return rng.uniform(-scale, scale, shape)
    return rng.normal(0, 0.1, shape)


def worker(name):
    import numpy as np
    import mxnet as mx
    assert mx.__version__ == "1.9.1", mx.__version__

    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    seed = sum(map(ord, name))
    rng = np.random.default_rng(seed)
    mx.random.seed(seed)
    sym, dshape, classes, nbatches, lr, notes = build(name)
    assert not any(n["op"] == "Dropout" for n in json.loads(sym.tojson())["nodes"])
    tokens = name == "lstm_lm"
    lshape = (dshape[0] * dshape[1],) if tokens else (dshape[0],)
    mod = mx.mod.Module(sym, data_names=["data"], label_names=["softmax_label"],
                        context=mx.cpu())
    # The LSTM's tokens are (T, N) and its labels (T*N,): no batch axis shared by both
    # for Module's slicing ("TN" puts it on axis 1; "X" marks none).
    mod.bind(data_shapes=[mx.io.DataDesc("data", dshape, layout="TN" if tokens else "NCHW")],
             label_shapes=[mx.io.DataDesc("softmax_label", lshape,
                                          layout="X" if tokens else "N")])
    arg_shapes, _, aux_shapes = sym.infer_shape(data=dshape, softmax_label=lshape)
    args, auxs, order = {}, {}, []
    for n, s in zip(sym.list_arguments(), arg_shapes):
        if n in ("data", "softmax_label"):
            continue
        args[n] = mx.nd.array(initial(n, s, False, rng).astype(np.float32))
        order.append({"name": n, "shape": list(s), "aux": False})
    for n, s in zip(sym.list_auxiliary_states(), aux_shapes):
        auxs[n] = mx.nd.array(initial(n, s, True, rng).astype(np.float32))
        order.append({"name": n, "shape": list(s), "aux": True})
    mod.init_params(arg_params=args, aux_params=auxs)
    mod.save_checkpoint(os.path.join(out, "model"), 0)

    batches = []
    patterns = rng.standard_normal((classes,) + tuple(dshape[1:]))
    for k in range(nbatches):
        if tokens:
            seq = rng.integers(0, classes, (dshape[0] + 1, dshape[1]))
            d, l = seq[:-1], seq[1:].reshape(-1)
        else:
            # Learnable batches: a fixed pattern per class plus noise. With pure noise
            # and random labels the gradients are sums of terms of random sign, which
            # one ReLU crossing zero changes by about 1/sqrt(terms): the trajectory
            # then depends on the last bits (MXNet's own, from weights perturbed by
            # 1e-7, moves by percents within a few steps).
            l = rng.integers(0, classes, dshape[0])
            d = patterns[l] + 0.5 * rng.standard_normal(dshape)
        d, l = d.astype(np.float32), l.astype(np.float32)
        np.save(os.path.join(out, f"data-{k}.npy"), d)
        np.save(os.path.join(out, f"label-{k}.npy"), l)
        batches.append(mx.io.DataBatch(data=[mx.nd.array(d)], label=[mx.nd.array(l)]))

    rows = lshape[0]
    optimizer = {"name": "sgd", "learning_rate": lr, "momentum": 0.9, "wd": 1e-4,
                 "rescale_grad": 1.0 / rows}
    mod.init_optimizer(optimizer="sgd", optimizer_params={
        k: v for k, v in optimizer.items() if k != "name"})
    losses = []
    for step in range(1, STEPS + 1):
        batch = batches[(step - 1) % nbatches]
        mod.forward_backward(batch)
        probs = mod.get_outputs()[0].asnumpy().astype(np.float64)
        lab = batch.label[0].asnumpy().astype(int)
        losses.append(float(-np.log(np.maximum(probs[np.arange(rows), lab], 1e-30)).mean()))
        mod.update()
        if step in RECORDED:
            a, x = mod.get_params()
            flat = [(x if p["aux"] else a)[p["name"]].asnumpy().reshape(-1) for p in order]
            np.save(os.path.join(out, f"weights-{step}.npy"),
                    np.concatenate(flat).astype(np.float32))
    meta = {
        "inputs": [{"name": "data", "dtype": "float32", "shape": list(dshape)}],
        "label_shape": list(lshape),
        "optimizer": optimizer,
        "steps": STEPS,
        "batches": nbatches,
        "recorded": RECORDED,
        "params": order,
        "losses": losses,
        "mxnet_version": mx.__version__,
        "notes": notes,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {size / 1024:.0f} KiB, loss {losses[0]:.4f} -> {losses[-1]:.4f}")


def main(argv):
    names = argv or MODELS
    env = dict(os.environ, MXNET_ENGINE_TYPE="NaiveEngine", OMP_NUM_THREADS="1")
    for n in names:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", n],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sys.stdout.write(p.stdout)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            sys.exit(f"{n} failed")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    else:
        main(sys.argv[1:])
