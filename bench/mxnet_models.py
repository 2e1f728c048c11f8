"""Benchmark models for bench/run.sh, built and timed with the real MXNet 1.9.1.

  export OUT            write each model not yet in OUT (random Xavier weights, full size,
                        1000 classes) as OUT/<name>/model-symbol.json + model-0000.params +
                        input.npy
  time OUT NAME THREADS ITERS
                        print one JSON line: SymbolBlock.imports time, first forward,
                        and the median/min of ITERS forward passes (wait_to_read each)

Thread counts must be fixed before MXNet starts (OMP_NUM_THREADS), so run.sh calls
`time` in a fresh process per thread count.
"""
import json, os, sys, time

# name: (builder, input shape)
MODELS = {
    "resnet18_v1_b1": ("resnet18_v1", (1, 3, 224, 224)),
    "resnet18_v1_b8": ("resnet18_v1", (8, 3, 224, 224)),
    "mobilenet1_0_b1": ("mobilenet1.0", (1, 3, 224, 224)),
    "mobilenet1_0_b8": ("mobilenet1.0", (8, 3, 224, 224)),
    "mobilenetv2_1_0_b1": ("mobilenetv2_1.0", (1, 3, 224, 224)),
    "mobilenetv2_1_0_b8": ("mobilenetv2_1.0", (8, 3, 224, 224)),
    "squeezenet1_1_b1": ("squeezenet1.1", (1, 3, 224, 224)),
    "squeezenet1_1_b8": ("squeezenet1.1", (8, 3, 224, 224)),
    "densenet121_b1": ("densenet121", (1, 3, 224, 224)),
    "densenet121_b8": ("densenet121", (8, 3, 224, 224)),
    # Inception v3 takes 299x299 images.
    "inceptionv3_b1": ("inceptionv3", (1, 3, 299, 299)),
    "inceptionv3_b8": ("inceptionv3", (8, 3, 299, 299)),
    "mlp_b1": ("mlp", (1, 784)),
}


def build(kind):
    import mxnet as mx
    from mxnet import gluon
    if kind == "mlp":
        net = gluon.nn.HybridSequential(prefix="mlp_")
        with net.name_scope():
            net.add(gluon.nn.Dense(512, activation="relu"), gluon.nn.Dense(256, activation="relu"), gluon.nn.Dense(10))
        return net
    return gluon.model_zoo.vision.get_model(kind, classes=1000)


def export(out):
    import mxnet as mx
    import numpy as np
    for name, (kind, shape) in MODELS.items():
        d = os.path.join(out, name)
        # One seed per model, so a model exported later gets the weights it would get in
        # a full export, and the ones already exported are kept.
        mx.random.seed(7)
        np.random.seed(7)
        if os.path.exists(os.path.join(d, "model-symbol.json")):
            continue
        os.makedirs(d, exist_ok=True)
        net = build(kind)
        net.initialize(mx.init.Xavier())
        net.hybridize()
        x = np.random.uniform(-1, 1, size=shape).astype(np.float32)
        net(mx.nd.array(x)).wait_to_read()
        net.export(os.path.join(d, "model"), 0)
        np.save(os.path.join(d, "input.npy"), x)
        print(f"exported {name}", file=sys.stderr)


def timing(out, name, iterations):
    import mxnet as mx
    import numpy as np
    d = os.path.join(out, name)
    start = time.perf_counter()
    net = mx.gluon.SymbolBlock.imports(os.path.join(d, "model-symbol.json"), ["data"],
                                       os.path.join(d, "model-0000.params"), ctx=mx.cpu())
    imports_s = time.perf_counter() - start
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.array(np.load(os.path.join(d, "input.npy")))
    start = time.perf_counter()
    net(x).wait_to_read()
    first_s = time.perf_counter() - start
    for _ in range(3):
        net(x).wait_to_read()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        net(x).wait_to_read()
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"imports_s": imports_s, "first_forward_s": first_s,
                      "median_s": times[len(times) // 2], "min_s": times[0],
                      "threads": int(os.environ.get("OMP_NUM_THREADS", "0")),
                      "iterations": iterations}))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
    elif sys.argv[1] == "time":
        timing(sys.argv[2], sys.argv[3], int(sys.argv[5]))
    else:
        sys.exit(__doc__)
