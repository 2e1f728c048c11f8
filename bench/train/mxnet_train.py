"""MXNet 1.9.1 side of the training-step benchmark (bench/train/run.sh).

export OUT: writes each workload's symbol (ending in SoftmaxOutput), its Xavier-initialised
parameters (Module.save_checkpoint: arg:/aux: keys) and one batch (data.npy, label.npy)
under OUT/NAME, for ward to load exactly what MXNet trains.
time OUT NAME ITERS: times MXNet's training step (Module forward_backward + SGD update with
momentum and weight decay, then waitall) on that batch; prints one JSON line.
"""
import json
import os
import resource
import sys
import time

import mxnet as mx
import numpy as np

WORKLOADS = {
    # name: (batch, data shape without batch, classes)
    "lenet_b64": (64, (1, 28, 28), 10),
    "resnet18_v1_b16_112": (16, (3, 112, 112), 1000),
}


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


def symbol(name):
    return lenet() if name.startswith("lenet") else resnet18(WORKLOADS[name][2])


def module(name, out):
    batch, shape, classes = WORKLOADS[name]
    d = os.path.join(out, name)
    sym, args, auxs = mx.model.load_checkpoint(os.path.join(d, "model"), 0)
    mod = mx.mod.Module(sym, data_names=["data"], label_names=["softmax_label"], context=mx.cpu())
    mod.bind(data_shapes=[("data", (batch,) + shape)], label_shapes=[("softmax_label", (batch,))])
    mod.set_params(args, auxs)
    mod.init_optimizer(optimizer="sgd", optimizer_params={
        "learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4, "rescale_grad": 1.0 / batch})
    data = mx.nd.array(np.load(os.path.join(d, "data.npy")))
    label = mx.nd.array(np.load(os.path.join(d, "label.npy")))
    return mod, mx.io.DataBatch(data=[data], label=[label])


def export(out):
    rng = np.random.default_rng(0)
    for name, (batch, shape, classes) in WORKLOADS.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        sym = symbol(name)
        mod = mx.mod.Module(sym, data_names=["data"], label_names=["softmax_label"])
        mod.bind(data_shapes=[("data", (batch,) + shape)], label_shapes=[("softmax_label", (batch,))])
        mx.random.seed(1)
        mod.init_params(initializer=mx.init.Xavier(magnitude=2.0))
        mod.save_checkpoint(os.path.join(d, "model"), 0)
        np.save(os.path.join(d, "data.npy"), rng.standard_normal((batch,) + shape).astype(np.float32))
        np.save(os.path.join(d, "label.npy"), rng.integers(0, classes, batch).astype(np.float32))


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
        np.arange(WORKLOADS[name][0]), batch.label[0].asnumpy().astype(int)], 1e-30)).mean())
    print(json.dumps({
        "median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1],
        "setup_s": setup, "loss": loss,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
    else:
        timed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
