#!/usr/bin/env python3
"""MXNet 1.9.1 loads the optimizer states ward writes, and continues training from them
exactly as from its own files.

Run by hand from the repository root (it builds and runs one ignored Rust test):

    /work/main/.venv-mx/bin/python tools/check_states_roundtrip.py

For every fixture of tests/fixtures/mxnet-states, ward reads MXNet's `.states` file and
writes it again (`write_optimizer_states`, the Module form); then, here:

* the pickle ward wrote unpickles (plain `pickle.loads`, trusted here because this
  script made it) to the same keys, tuple structure, dtypes, shapes and values as MXNet's
  own file;
* Module cases: a Module is loaded from `model-0001.params` with the optimizer states
  ward wrote (`Module.load_optimizer_states`, through the kvstore for
  `module_kvstore`), takes the next batch of `next.json`, and must give exactly the
  weights MXNet gave from its own files (bit for bit);
* Gluon cases: `Trainer.load_states` accepts ward's file (states only: the Trainer keeps
  its own optimizer); with SGD the next step must again give `next.json`'s weights bit for
  bit. (Adam's next step depends on the update counts, which only Gluon's own file
  carries, so for `gluon_adam` only the states are compared.)
"""
import json
import os
import pickle
import subprocess
import sys
import tempfile

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_states_fixtures as fx  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "mxnet-states")


def same_state(a, b, path):
    if a is None or b is None:
        assert a is None and b is None, path
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same_state(x, y, "%s[%d]" % (path, i))
    else:
        assert isinstance(b, mx.nd.NDArray), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a.asnumpy().view(np.uint8), b.asnumpy().view(np.uint8)), path


def compare_pickles(ours, theirs, name):
    mine = pickle.loads(ours)
    orig = pickle.loads(theirs)
    if isinstance(orig, tuple):
        orig = orig[0]
    assert list(mine.keys()) == list(orig.keys()), name
    for k in orig:
        same_state(mine[k], orig[k], "%s[%r]" % (name, k))


def weights_match(next_doc, got, name):
    for pname, want in next_doc["weights_after"].items():
        w = got[pname]
        assert fx.bits(w) == want["bits"], "%s: %s differs after the next step" % (name, pname)


def module_step(case, ward_file):
    doc = json.load(open(os.path.join(FIX, case, "next.json")))
    prefix = os.path.join(FIX, case, "model")
    mod = mx.mod.Module.load(prefix, 1, data_names=["data"], label_names=["softmax_label"],
                             context=mx.cpu())
    mod.bind(data_shapes=[("data", (fx.BATCH, 8))],
             label_shapes=[("softmax_label", (fx.BATCH,))])
    kv = mx.kv.create("local") if doc["update_on_kvstore"] else "local"
    mod.init_optimizer(kvstore=kv, optimizer=doc["optimizer"],
                       optimizer_params=doc["optimizer_params"])
    mod.load_optimizer_states(ward_file)
    data = np.array(doc["data"]["values"], dtype=np.float32).reshape(doc["data"]["shape"])
    mod.forward_backward(mx.io.DataBatch([mx.nd.array(data)], [mx.nd.array(doc["label"])]))
    mod.update()
    weights_match(doc, mod.get_params()[0], case)


def gluon_step(case, ward_file, build, shape):
    doc = json.load(open(os.path.join(FIX, case, "next.json")))
    net = build()
    net.collect_params().load(os.path.join(FIX, case, "model-0001.params"), ctx=mx.cpu())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), doc["optimizer"], doc["optimizer_params"])
    trainer.load_states(ward_file)
    data = np.array(doc["data"]["values"], dtype=np.float32).reshape(doc["data"]["shape"])
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(mx.nd.array(data)),
                                                     mx.nd.array(doc["label"]))
    loss.backward()
    trainer.step(fx.BATCH)
    weights_match(doc, {p.name: p.data() for p in trainer._params}, case)


def main():
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, WARD_STATES_OUT=out)
        subprocess.run(["cargo", "test", "-q", "-p", "ward-mxnet", "--test", "it",
                        "states::write_states_for_mxnet", "--", "--ignored"],
                       cwd=ROOT, env=env, check=True)
        files = {
            "module_sgd": "module_sgd/model-0001.states",
            "module_adam": "module_adam/model-0001.states",
            "module_kvstore": "module_kvstore/model-0001.states",
            "gluon_sgd": "gluon_sgd/model-0001.states",
            "gluon_adam": "gluon_adam/model-0001.states",
            "multi_precision": "multi_precision.states",
            "framing": "framing.states",
        }
        for name, theirs in files.items():
            ours = open(os.path.join(out, name + ".states"), "rb").read()
            compare_pickles(ours, open(os.path.join(FIX, theirs), "rb").read(), name)
            print("%-16s %7d bytes: the same states as MXNet's file" % (name, len(ours)))
        for case in ["module_sgd", "module_adam", "module_kvstore"]:
            module_step(case, os.path.join(out, case + ".states"))
            print("%-16s Module resumed from ward's states: next step bit-identical" % case)
        gluon_step("gluon_sgd", os.path.join(out, "gluon_sgd.states"), fx.gluon_mlp, (8,))
        print("%-16s Trainer.load_states(ward's file): next step bit-identical" % "gluon_sgd")
        # Gluon Adam: the states load; the step itself needs Gluon's saved update counts.
        net = fx.gluon_conv()
        net.initialize(ctx=mx.cpu())
        trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
        trainer.load_states(os.path.join(out, "gluon_adam.states"))
        orig = pickle.loads(open(os.path.join(FIX, files["gluon_adam"]), "rb").read())[0]
        for k, v in orig.items():
            same_state(trainer._updaters[0].states[k], v, "gluon_adam[%d]" % k)
        print("%-16s Trainer.load_states(ward's file): the same states" % "gluon_adam")
    print("all round trips through MXNet %s passed" % mx.__version__)


if __name__ == "__main__":
    main()
