#!/usr/bin/env python3
"""The real-data reference for training: the classic LeNet trained by MXNet 1.9.1 on the
MNIST digits of tests/fixtures/mnist/, read once as IDX (MNISTIter) and once as RecordIO
(ImageRecordIter), with the spec ward's test uses (crates/ward-train/tests/it/mnist.rs).

Writes:
- tests/fixtures/mnist/{train,t10k}.rec and .idx: the same digits, each packed by MXNet's
  own writer (mx.recordio.MXIndexedRecordIO + pack_img as lossless PNG), labels in the
  header, in the IDX files' order;
- tests/fixtures/models/lenet_classic/model-symbol.json: the classic LeNet (MXNet's
  example/image-classification/symbols/lenet.py: 20 and 50 5x5 filters, tanh, max
  pooling, 500 hidden units, SoftmaxOutput), with no weights: both sides initialise it
  with MXNet's Xavier(gaussian, in, 2);
- tests/fixtures/mnist/lenet_reference.json: MXNet's held-out accuracy after each epoch,
  for several seeds, on both readers.

Run from the repository root (cv2 only for pack_img; see tools/make_data_fixtures.py):

    PYTHONPATH=.venv-data/lib/python3.11/site-packages \\
        .venv-mx/bin/python tools/make_lenet_mnist_reference.py
"""
import gzip
import json
import os
import shutil
import struct
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402
import cv2  # noqa: E402,F401  (pack_img needs it)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MNIST = os.path.join(ROOT, "tests", "fixtures", "mnist")
MODEL = os.path.join(ROOT, "tests", "fixtures", "models", "lenet_classic")

# The spec (ward's test states the same numbers).
BATCH = 64
EPOCHS = 10
LEARNING_RATE = 0.05
MOMENTUM = 0.9
WD = 1e-4
SEEDS = [1, 2, 3, 4, 5]
# The held-out digits, evaluated as one batch: no padding or dropped remainder to count.
HELD_OUT = 1000


def lenet():
    data = mx.sym.Variable("data")
    conv1 = mx.sym.Convolution(data=data, kernel=(5, 5), num_filter=20, name="conv1")
    tanh1 = mx.sym.Activation(data=conv1, act_type="tanh", name="tanh1")
    pool1 = mx.sym.Pooling(data=tanh1, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")
    conv2 = mx.sym.Convolution(data=pool1, kernel=(5, 5), num_filter=50, name="conv2")
    tanh2 = mx.sym.Activation(data=conv2, act_type="tanh", name="tanh2")
    pool2 = mx.sym.Pooling(data=tanh2, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool2")
    flat = mx.sym.Flatten(data=pool2, name="flatten")
    fc1 = mx.sym.FullyConnected(data=flat, num_hidden=500, name="fc1")
    tanh3 = mx.sym.Activation(data=fc1, act_type="tanh", name="tanh3")
    fc2 = mx.sym.FullyConnected(data=tanh3, num_hidden=10, name="fc2")
    return mx.sym.SoftmaxOutput(data=fc2, name="softmax")


def read_idx(path):
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_rec(split):
    images = read_idx(os.path.join(MNIST, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(MNIST, f"{split}-labels-idx1-ubyte.gz"))
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(MNIST, f"{split}.idx"),
                                        os.path.join(MNIST, f"{split}.rec"), "w")
    for i, (img, label) in enumerate(zip(images, labels)):
        header = mx.recordio.IRHeader(0, float(label), i, 0)
        rec.write_idx(i, mx.recordio.pack_img(header, img, img_fmt=".png"))
    rec.close()


def iterators(kind, tmp, seed):
    if kind == "idx":
        paths = {}
        for split in ["train", "t10k"]:
            for part in ["images-idx3", "labels-idx1"]:
                name = f"{split}-{part}-ubyte"
                with gzip.open(os.path.join(MNIST, name + ".gz")) as src, \
                        open(os.path.join(tmp, name), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                paths[(split, part)] = os.path.join(tmp, name)
        train = mx.io.MNISTIter(image=paths[("train", "images-idx3")],
                                label=paths[("train", "labels-idx1")],
                                batch_size=BATCH, shuffle=True, flat=False, seed=seed)
        val = mx.io.MNISTIter(image=paths[("t10k", "images-idx3")],
                              label=paths[("t10k", "labels-idx1")],
                              batch_size=HELD_OUT, shuffle=False, flat=False)
        return train, val
    common = dict(data_shape=(1, 28, 28), scale=1.0 / 255, preprocess_threads=1)
    train = mx.io.ImageRecordIter(path_imgrec=os.path.join(MNIST, "train.rec"),
                                  path_imgidx=os.path.join(MNIST, "train.idx"),
                                  batch_size=BATCH, shuffle=True, seed=seed, **common)
    val = mx.io.ImageRecordIter(path_imgrec=os.path.join(MNIST, "t10k.rec"),
                                path_imgidx=os.path.join(MNIST, "t10k.idx"),
                                batch_size=HELD_OUT, shuffle=False, **common)
    return train, val


def train(kind, seed, tmp):
    mx.random.seed(seed)
    np.random.seed(seed)
    train_iter, val_iter = iterators(kind, tmp, seed)
    mod = mx.mod.Module(lenet(), context=mx.cpu())
    mod.bind(data_shapes=train_iter.provide_data, label_shapes=train_iter.provide_label)
    mod.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    mod.init_optimizer(optimizer="sgd", optimizer_params={
        "learning_rate": LEARNING_RATE, "momentum": MOMENTUM, "wd": WD,
        "rescale_grad": 1.0 / BATCH})
    accuracies = []
    for _ in range(EPOCHS):
        train_iter.reset()
        for batch in train_iter:
            mod.forward_backward(batch)
            mod.update()
        val_iter.reset()
        batch = next(iter(val_iter))
        mod.forward(batch, is_train=False)
        predicted = mod.get_outputs()[0].asnumpy().argmax(axis=1)
        accuracies.append(float((predicted == batch.label[0].asnumpy()).mean()))
    return accuracies


def main():
    os.makedirs(MODEL, exist_ok=True)
    lenet().save(os.path.join(MODEL, "model-symbol.json"))
    for split in ["train", "t10k"]:
        write_rec(split)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ["idx", "recordio"]:
            runs[kind] = {str(s): train(kind, s, tmp) for s in SEEDS}
            finals = [r[-1] for r in runs[kind].values()]
            print(kind, "final accuracies", finals, "mean", np.mean(finals))
    out = {
        "spec": {"batch_size": BATCH, "epochs": EPOCHS, "optimizer": "sgd",
                 "learning_rate": LEARNING_RATE, "momentum": MOMENTUM, "wd": WD,
                 "rescale_grad": 1.0 / BATCH,
                 "init": "xavier(rnd_type=gaussian, factor_type=in, magnitude=2)",
                 "data": "4000 training digits shuffled each epoch, 1000 held out, /255"},
        "mxnet": "1.9.1",
        "accuracy_per_epoch": runs,
        "final_mean": {k: float(np.mean([r[-1] for r in v.values()])) for k, v in runs.items()},
    }
    with open(os.path.join(MNIST, "lenet_reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
