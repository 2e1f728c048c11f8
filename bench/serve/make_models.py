"""Models, MMS archives and request bodies for the serving benchmark (bench/serve/run.sh).

Run with the MMS venv's python (.venv-mms, from tools/serve-bench-requirements.txt):

    .venv-mms/bin/python bench/serve/make_models.py WORK

Writes, all deterministic (fixed seeds, no download):

  WORK/models/<name>/<name>-symbol.json, <name>-0000.params
                          the model exported by real MXNet 1.9.1 Gluon (hybridize + export)
  WORK/models/<name>/signature.json, mms_handler.py
                          the input shape, and the MMS handler (bench/serve/mms_handler.py)
  WORK/model-store/<name>.mar
                          the MMS archive (model-archiver --handler mms_handler:handle)
  WORK/bodies/<name>.body the request body, byte-identical for ward and MMS
  WORK/bodies/<name>.env  CONTENT_TYPE and, for binary bodies, INFERENCE_HEADER_LENGTH
  WORK/expected/<name>.json
                          MXNet's own output for that body (float32 list), to check replies

Models:
  mlp            data 1x16 -> Dense(64, relu) -> Dense(10) -> softmax. JSON body (OIP v2).
  squeezenet1_1  data 1x3x224x224, model zoo squeezenet1_1(pretrained=False), He-scaled
                 Xavier weights from a fixed seed. Binary tensor extension body: a JSON header
                 (Inference-Header-Content-Length bytes) + 602112 bytes of little-endian
                 float32.
  resnet18_v1    the same for the model zoo's resnet18_v1(pretrained=False).

WORK/models.txt lists the models to build (default: all of them), one per line.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

MODELS = {
    "mlp": {"shape": (1, 16), "body": "json", "seed": 16},
    "squeezenet1_1": {"shape": (1, 3, 224, 224), "body": "binary", "seed": 224},
    "resnet18_v1": {"shape": (1, 3, 224, 224), "body": "binary", "seed": 18},
}


def build(name):
    import mxnet as mx
    from mxnet import gluon

    if name == "mlp":
        net = gluon.nn.HybridSequential(prefix="mlp_")
        with net.name_scope():
            net.add(gluon.nn.Dense(64, activation="relu", in_units=16))
            net.add(gluon.nn.Dense(10, in_units=64))
            net.add(gluon.nn.HybridLambda("softmax"))
        return net
    if name == "squeezenet1_1":
        return gluon.model_zoo.vision.squeezenet1_1(pretrained=False)
    if name == "resnet18_v1":
        return gluon.model_zoo.vision.resnet18_v1(pretrained=False)
    raise KeyError(name)


def make_body(name, spec, x):
    """The request body (bytes), its content type, and the binary header length (or None)."""
    if spec["body"] == "json":
        # 4 decimals: short, and the float32 the server parses is the one MXNet computed on
        doc = {"inputs": [{"name": "data", "shape": list(x.shape), "datatype": "FP32",
                           "data": [float(f"{v:.4f}") for v in x.ravel()]}]}
        return json.dumps(doc, separators=(",", ":")).encode(), "application/json", None
    raw = x.astype("<f4").tobytes()
    header = {"inputs": [{"name": "data", "shape": list(x.shape), "datatype": "FP32",
                          "parameters": {"binary_data_size": len(raw)}}]}
    hb = json.dumps(header, separators=(",", ":")).encode()
    return hb + raw, "application/octet-stream", len(hb)


def main(work):
    import mxnet as mx

    archiver = os.path.join(os.path.dirname(sys.executable), "model-archiver")
    for sub in ("models", "model-store", "bodies", "expected"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    wanted = MODELS
    listed = os.path.join(work, "models.txt")
    if os.path.exists(listed):
        with open(listed) as f:
            wanted = {n: MODELS[n] for n in f.read().split()}
    for name, spec in wanted.items():
        mx.random.seed(spec["seed"])
        np.random.seed(spec["seed"])
        d = os.path.join(work, "models", name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        net = build(name)
        # He (MSRA) init: keeps activations O(1) through squeezenet's 26 ReLU layers, so
        # outputs survive the servers' rounding to 3 decimals (plain Xavier gives ~1e-4)
        net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
        net.hybridize()
        shape = spec["shape"]
        x = np.random.uniform(-1 if name == "mlp" else 0, 1, size=shape).astype(np.float32)
        if spec["body"] == "json":
            x = np.array([float(f"{v:.4f}") for v in x.ravel()], dtype=np.float32).reshape(shape)
        net(mx.nd.array(x)).wait_to_read()
        net.export(os.path.join(d, name), 0)

        # what the servers must answer: the output of the *reloaded* export
        ref = mx.gluon.SymbolBlock.imports(os.path.join(d, name + "-symbol.json"), ["data"],
                                           os.path.join(d, name + "-0000.params"), ctx=mx.cpu())
        y = ref(mx.nd.array(x)).asnumpy()
        with open(os.path.join(work, "expected", name + ".json"), "w") as f:
            json.dump({"shape": list(y.shape), "data": y.astype(np.float64).ravel().tolist()}, f)

        with open(os.path.join(d, "signature.json"), "w") as f:
            json.dump({"inputs": [{"data_name": "data", "shape": list(shape)}]}, f)
        shutil.copy(os.path.join(HERE, "mms_handler.py"), d)

        body, ctype, hlen = make_body(name, spec, x)
        with open(os.path.join(work, "bodies", name + ".body"), "wb") as f:
            f.write(body)
        with open(os.path.join(work, "bodies", name + ".env"), "w") as f:
            f.write(f"CONTENT_TYPE={ctype}\n")
            f.write(f"INFERENCE_HEADER_LENGTH={hlen if hlen is not None else ''}\n")
            f.write(f"INPUT_SHAPE={','.join(map(str, shape))}\n")

        subprocess.run([archiver, "--model-name", name, "--model-path", d,
                        "--handler", "mms_handler:handle", "--runtime", "python",
                        "--export-path", os.path.join(work, "model-store"), "--force"],
                       check=True)
        print(f"{name}: input {shape}, output {list(y.shape)}, body {len(body)} bytes ({ctype})",
              file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
