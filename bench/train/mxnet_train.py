"""MXNet 1.9.1 side of the training-step benchmark (bench/train/run.sh).

export OUT [NAME...]: writes each workload's symbol (ending in SoftmaxOutput), its
Xavier-initialised parameters (Module.save_checkpoint: arg:/aux: keys) and one batch
(data.npy, label.npy) under OUT/NAME, for ward to load exactly what MXNet trains (all
workloads, or those named).
time OUT NAME ITERS: times MXNet's training step (Module forward_backward + SGD update with
momentum and weight decay, rescale_grad = 1/label rows, then waitall) on that batch;
prints one JSON line.
"""
import json
import os
import resource
import sys
import time

import mxnet as mx
import numpy as np

WORKLOADS = {
    # name: (data shape, label shape, classes)
    "lenet_b64": ((64, 1, 28, 28), (64,), 10),
    "resnet18_v1_b16_112": ((16, 3, 112, 112), (16,), 1000),
    # The word language model of MXNet's example/rnn/word_lm (PTB: vocabulary 10000,
    # bptt 35, batch 32) at 256 embedding and hidden units: tokens (T=35, N=32), labels
    # the next tokens (T*N,).
    "lstm_lm_b32": ((35, 32), (35 * 32,), 10000),
}
LSTM = dict(embed=256, hidden=256, layers=2)


def lenet():
    data = mx.sym.var("data")
    x = mx.sym.Convolution(data, kernel=(5, 5), num_filter=20, name="conv1")
    x = mx.sym.Activation(x, act_type="relu", name="relu1")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")
    x = mx.sym.Convolution(x, kernel=(5, 5), num_filter=50, name="conv2")
    x = mx.sym.Activation(x, act_type="relu", name="relu2")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool2")
    x = mx.sym.Flatten(x, name="flatten")
    x = mx.sym.FullyConnected(x, num_hidden=500, name="fc1")
    x = mx.sym.Activation(x, act_type="relu", name="relu3")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc2")
    return mx.sym.SoftmaxOutput(x, mx.sym.var("softmax_label"), name="softmax")


def resnet18(classes):
    net = mx.gluon.model_zoo.vision.resnet18_v1(classes=classes)
    x = net(mx.sym.var("data"))
    return mx.sym.SoftmaxOutput(x, mx.sym.var("softmax_label"), name="softmax")


def lstm_lm(shape, vocab):
    """Embedding -> fused RNN (lstm, TNC, packed parameters, zero initial states) ->
    Reshape(-1, hidden) -> FullyConnected(vocab) -> SoftmaxOutput, as word_lm's model."""
    t, n = shape
    h, layers = LSTM["hidden"], LSTM["layers"]
    x = mx.sym.Embedding(mx.sym.var("data"), input_dim=vocab, output_dim=LSTM["embed"],
                         name="embed")
    x = mx.sym.RNN(x, mx.sym.var("lstm_parameters"),
                   mx.sym.zeros((layers, n, h)), mx.sym.zeros((layers, n, h)),
                   state_size=h, num_layers=layers, mode="lstm", name="lstm")
    x = mx.sym.Reshape(x, shape=(-1, h), name="reshape")
    x = mx.sym.FullyConnected(x, num_hidden=vocab, name="decoder")
    return mx.sym.SoftmaxOutput(x, mx.sym.var("softmax_label"), name="softmax")


def symbol(name):
    shape, _, classes = WORKLOADS[name]
    if name.startswith("lenet"):
        return lenet()
    if name.startswith("lstm"):
        return lstm_lm(shape, classes)
    return resnet18(classes)


def descs(name):
    """Module's data and label descriptions. Tokens (T, N) and labels (T*N,) share no
    batch axis: "TN" puts it on axis 1, "X" marks none."""
    shape, lshape, _ = WORKLOADS[name]
    tokens = name.startswith("lstm")
    return ([mx.io.DataDesc("data", shape, layout="TN" if tokens else "NCHW")],
            [mx.io.DataDesc("softmax_label", lshape, layout="X" if tokens else "N")])


def module(name, out):
    rows = WORKLOADS[name][1][0]
    d = os.path.join(out, name)
    sym, args, auxs = mx.model.load_checkpoint(os.path.join(d, "model"), 0)
    mod = mx.mod.Module(sym, data_names=["data"], label_names=["softmax_label"], context=mx.cpu())
    data_shapes, label_shapes = descs(name)
    mod.bind(data_shapes=data_shapes, label_shapes=label_shapes)
    mod.set_params(args, auxs)
    mod.init_optimizer(optimizer="sgd", optimizer_params={
        "learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4, "rescale_grad": 1.0 / rows})
    data = mx.nd.array(np.load(os.path.join(d, "data.npy")))
    label = mx.nd.array(np.load(os.path.join(d, "label.npy")))
    return mod, mx.io.DataBatch(data=[data], label=[label])


def export(out, names):
    # LeNet's and ResNet's batches come from one stream, drawn in this order whichever
    # are written (the figures in docs/BENCHMARKS.md were measured on them); the LSTM's
    # from its own.
    images = np.random.default_rng(0)
    for name, (shape, lshape, classes) in WORKLOADS.items():
        tokens = name.startswith("lstm")
        rng = np.random.default_rng(sum(map(ord, name))) if tokens else images
        if tokens:
            seq = rng.integers(0, classes, (shape[0] + 1, shape[1]))
            data, label = seq[:-1], seq[1:].reshape(-1)
        else:
            data, label = rng.standard_normal(shape), rng.integers(0, classes, lshape)
        if names and name not in names:
            continue
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        sym = symbol(name)
        mod = mx.mod.Module(sym, data_names=["data"], label_names=["softmax_label"])
        data_shapes, label_shapes = descs(name)
        mod.bind(data_shapes=data_shapes, label_shapes=label_shapes)
        mx.random.seed(1)
        given = {}
        if tokens:
            # Xavier has no rule for the RNN's packed vector: U(-0.1, 0.1), as word_lm.
            arg_shapes, _, _ = sym.infer_shape(data=shape)
            packed = dict(zip(sym.list_arguments(), arg_shapes))["lstm_parameters"]
            given["lstm_parameters"] = mx.nd.array(
                rng.uniform(-0.1, 0.1, packed).astype(np.float32))
        mod.init_params(initializer=mx.init.Xavier(magnitude=2.0), arg_params=given,
                        allow_missing=True)
        mod.save_checkpoint(os.path.join(d, "model"), 0)
        np.save(os.path.join(d, "data.npy"), data.astype(np.float32))
        np.save(os.path.join(d, "label.npy"), label.astype(np.float32))


def timed(out, name, iters):
    t0 = time.perf_counter()
    mod, batch = module(name, out)
    setup = time.perf_counter() - t0
    for _ in range(3):
        mod.forward_backward(batch)
        mod.update()
    mx.nd.waitall()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        mod.forward_backward(batch)
        mod.update()
        mx.nd.waitall()
        times.append(time.perf_counter() - t)
    times.sort()
    loss = -float(np.log(np.maximum(mod.get_outputs()[0].asnumpy()[
        np.arange(WORKLOADS[name][1][0]), batch.label[0].asnumpy().astype(int)], 1e-30)).mean())
    print(json.dumps({
        "median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1],
        "setup_s": setup, "loss": loss,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3:])
    else:
        timed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
