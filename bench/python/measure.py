"""Times one engine from Python on the repository's fixture models and prints JSON.

    measure.py ward|onnxruntime|mxnet WORKDIR

WORKDIR holds what bench/python/run.sh prepared: ward packages (`NAME.ward`), ONNX files
ward exported from them (`NAME-bB.onnx`) and the trust key (`keys/bench.pub`). Each
engine runs with one compute thread per call. Every figure is a median over rounds, so
one stall of the machine does not decide it.

- overhead: the MLP fixture at batch 1, microseconds per predict call (what the caller
  pays beyond the model's arithmetic, which is a few microseconds here);
- models: resnet18_v1, mobilenet0_25, squeezenet1_1 at batch 1 and 8, milliseconds;
- threads (ward, onnxruntime): ResNet-18 at batch 1, calls per second with two Python
  threads calling at once over one, the GIL released or not;
- memory (ward): the process's RSS after 1,000 and after 11,000 MLP calls.
"""

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "models"
MODELS = ["resnet18_v1", "mobilenet0_25", "squeezenet1_1"]
BATCHES = [1, 8]


def input_shape(name):
    meta = json.loads((FIXTURES / name / "meta.json").read_text())
    (i,) = meta["inputs"]
    return i["name"], list(i["shape"][1:])


def batch_of(name, batch):
    input_name, rest = input_shape(name)
    x = np.random.default_rng(0).standard_normal([batch, *rest]).astype(np.float32)
    return input_name, x


def ward_engine(work):
    import ward

    trust = work / "keys" / "bench.pub"

    def load(name, batch):
        model = ward.Package.open(work / f"{name}.ward", trust=trust, threads=1)
        input_name, x = batch_of(name, batch)
        return lambda: model.predict({input_name: x})

    return load


def onnxruntime_engine(work):
    import onnxruntime as ort

    def load(name, batch):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(work / f"{name}-b{batch}.onnx"), options, providers=["CPUExecutionProvider"]
        )
        input_name, x = batch_of(name, batch)
        return lambda: session.run(None, {input_name: x})

    return load


def mxnet_engine(work):
    import mxnet as mx

    def load(name, batch):
        sym, args, aux = mx.model.load_checkpoint(str(FIXTURES / name / "model"), 0)
        input_name, x = batch_of(name, batch)
        module = mx.mod.Module(sym, data_names=[input_name], label_names=None, context=mx.cpu())
        module.bind(data_shapes=[(input_name, x.shape)], for_training=False)
        module.set_params(args, aux, allow_missing=False)
        data = mx.io.DataBatch([mx.nd.array(x)])

        def predict():
            module.forward(data, is_train=False)
            return [o.asnumpy() for o in module.get_outputs()]

        return predict

    return load


def median_of_rounds(fn, rounds, calls):
    """Median over rounds of the seconds per call."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def rss_bytes():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def throughput(predict, threads, calls):
    """Calls per second with `threads` Python threads each making `calls` calls."""
    barrier = threading.Barrier(threads + 1)

    def work():
        barrier.wait()
        for _ in range(calls):
            predict()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return threads * calls / (time.perf_counter() - start)


def main():
    engine, work = sys.argv[1], Path(sys.argv[2])
    load = {"ward": ward_engine, "onnxruntime": onnxruntime_engine, "mxnet": mxnet_engine}[engine](work)
    result = {"engine": engine}

    mlp = load("mlp", 1)
    for _ in range(300):
        mlp()
    result["overhead_us"] = median_of_rounds(mlp, rounds=7, calls=2000) * 1e6

    result["models_ms"] = {}
    for name in MODELS:
        for batch in BATCHES:
            predict = load(name, batch)
            for _ in range(3):
                predict()
            result["models_ms"][f"{name} b{batch}"] = median_of_rounds(predict, rounds=15, calls=1) * 1e3

    if engine != "mxnet":
        # MXNet's Module is not meant to be called from two threads at once.
        predict = load("resnet18_v1", 1)
        predict()
        # Rounds of a few hundred milliseconds: 20 calls (35 ms) let one stall of the VM
        # decide the speedup.
        one = statistics.median(throughput(predict, 1, 200) for _ in range(5))
        two = statistics.median(throughput(predict, 2, 200) for _ in range(5))
        result["threads"] = {"one_per_s": one, "two_per_s": two, "speedup": two / one}

    if engine == "ward":
        for _ in range(1000):
            mlp()
        before = rss_bytes()
        for _ in range(10000):
            mlp()
        result["memory"] = {"rss_after_1000": before, "rss_after_11000": rss_bytes()}

    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
