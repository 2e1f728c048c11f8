"""MXNet 1.9.1's own convolution (oneDNN) on ResNet-18's layers at batch 16, 112², as
`ward-bench-conv` times ward's: the best of seven runs of the forward pass, and of the
forward and backward passes together (autograd, gradients of the input and the weight),
in milliseconds, one JSON object per layer. Threads: OMP_NUM_THREADS and
MXNET_CPU_WORKER_NTHREADS, set by bench/train/conv_layers.sh."""
import json
import sys
import time

import mxnet as mx

LAYERS = [
    ("conv0 7×7 s2, 3 → 64", (16, 3, 112, 112), 64, 7, 2, 3),
    ("stage 1 3×3, 64 at 28²", (16, 64, 28, 28), 64, 3, 1, 1),
    ("stage 2 3×3 s2, 64 → 128", (16, 64, 28, 28), 128, 3, 2, 1),
    ("stage 2 3×3, 128 at 14²", (16, 128, 14, 14), 128, 3, 1, 1),
    ("stage 3 3×3, 256 at 7²", (16, 256, 7, 7), 256, 3, 1, 1),
    ("stage 4 3×3, 512 at 4²", (16, 512, 4, 4), 512, 3, 1, 1),
]


def best(run):
    run()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main(threads):
    for name, shape, oc, k, s, p in LAYERS:
        x = mx.nd.random.uniform(shape=shape)
        w = mx.nd.random.uniform(shape=(oc, shape[1], k, k))
        x.attach_grad()
        w.attach_grad()
        conv = dict(kernel=(k, k), stride=(s, s), pad=(p, p), num_filter=oc, no_bias=True)

        def forward():
            mx.nd.Convolution(x, w, **conv).wait_to_read()

        def both():
            with mx.autograd.record():
                y = mx.nd.Convolution(x, w, **conv)
            y.backward(mx.nd.ones_like(y))
            w.grad.wait_to_read()
            x.grad.wait_to_read()

        f, fb = best(forward), best(both)
        print(json.dumps({"layer": name, "threads": threads, "path": "mxnet",
                          "forward_ms": f, "backward_ms": fb - f}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
