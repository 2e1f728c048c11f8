"""MXNet 1.9.1's own checkpoint of ResNet-18 with SGD momentum, timed: the baseline of
bench/checkpoint/run.sh. Module.save_checkpoint(save_optimizer_states=True) writes the
symbol, the .params and the pickled .states in clear (no fsync); loading is
mx.model.load_checkpoint + Module.set_params + load_optimizer_states.

Usage: python mxnet_checkpoint.py EXPORT_DIR SCRATCH_DIR ROUNDS  (EXPORT_DIR holds
model-symbol.json and model-0000.params). Prints one JSON line of best-of-ROUNDS seconds.
"""
import json
import os
import sys
import time

import mxnet as mx
import numpy as np


def best(rounds, f):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    export, scratch, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(scratch, exist_ok=True)
    sym, args, auxs = mx.model.load_checkpoint(os.path.join(export, "model"), 0)
    sym = mx.sym.SoftmaxOutput(sym, name="softmax")
    mod = mx.mod.Module(sym, data_names=["data"], label_names=["softmax_label"])
    mod.bind(data_shapes=[("data", (1, 3, 224, 224))], label_shapes=[("softmax_label", (1,))])
    mod.set_params(args, auxs)
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.01, "momentum": 0.9})
    batch = mx.io.DataBatch([mx.nd.array(np.random.rand(1, 3, 224, 224))], [mx.nd.array([1])])
    mod.forward_backward(batch)
    mod.update()
    prefix = os.path.join(scratch, "resnet18")

    def save():
        mod.save_checkpoint(prefix, 1, save_optimizer_states=True)

    def load():
        _, a, x = mx.model.load_checkpoint(prefix, 1)
        mod.set_params(a, x)
        mod.load_optimizer_states(prefix + "-0001.states")
        mx.nd.waitall()

    save_s = best(rounds, save)
    load_s = best(rounds, load)
    size = sum(os.path.getsize(prefix + s) for s in ["-symbol.json", "-0001.params", "-0001.states"])
    print(json.dumps({"save_s": save_s, "load_s": load_s, "bytes": size}))


if __name__ == "__main__":
    main()
