#!/usr/bin/env python3
"""Generate reference model fixtures with real Apache MXNet 1.9.1.

Run with the MXNet virtual environment:

    .venv-mx/bin/python tools/make_model_fixtures.py            # all models
    .venv-mx/bin/python tools/make_model_fixtures.py mlp lenet_gluon   # a subset
    .venv-mx/bin/python tools/make_model_fixtures.py -v         # + per-op attribute dump

For every model it writes `tests/fixtures/models/<name>/`:

* `model-symbol.json`, `model-0000.params`: as written by `HybridBlock.export`
  (Gluon) or `Module.save_checkpoint` (symbol / Module API);
* `input-<name>.npy`: one float32 array per graph input;
* `output-<k>.npy`: output k of the exported symbol, computed by MXNet from the
  RELOADED files (`SymbolBlock.imports`, or `Module.load` + `bind(for_training=False)`);
* `meta.json`: input names/dtypes/shapes, output names, MXNet version, notes.

Each model is built in its own Python subprocess: Gluon's automatic name counters
and the numpy-mode switch (`mx.npx.set_np()`) are process-global, so this keeps
every fixture independent of which others are generated, and deterministic (fixed
seeds per model).  The script checks that the reloaded model reproduces the
original forward output (max |diff| <= 1e-6) and fails otherwise.
"""

import collections
import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_ROOT = os.path.join(ROOT, "tests", "fixtures", "models")
TOL = 1e-6

MODEL_ORDER = [
    "resnet18_v1",
    "mobilenet0_25",
    "mobilenetv2_0_25",
    "squeezenet1_1",
    "mlp",
    "lenet_gluon",
    "lenet_module",
    "text_lstm",
    "text_gru",
    "census_misc",
    "census_reshape",
    "text_rnn_tanh",
    "text_rnn_relu",
    "np_mlp",
    "yolo_upsample",
]


# ----------------------------------------------------------------------------
# helpers (run inside the worker subprocess)
# ----------------------------------------------------------------------------

def _seed_for(name):
    """A stable per-model seed (independent of Python's hash randomisation)."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % (2 ** 31)


def _randomize_gluon_params(net, rng):
    """Give every non-weight parameter non-trivial values.

    Xavier leaves biases at 0, gammas at 1, betas at 0 and BatchNorm running
    stats at 0/1, which would hide mistakes in how a runtime applies them.
    """
    import mxnet as mx
    from mxnet.util import is_np_array

    arr = mx.np.array if is_np_array() else mx.nd.array
    for pname, p in sorted(net.collect_params().items()):
        shape = p.shape
        if pname.endswith("running_mean"):
            v = rng.normal(0.0, 0.5, size=shape)
        elif pname.endswith("running_var"):
            v = rng.uniform(0.5, 2.0, size=shape)
        elif pname.endswith("gamma"):
            v = rng.uniform(0.5, 1.5, size=shape)
        elif pname.endswith("beta"):
            v = rng.normal(0.0, 0.2, size=shape)
        elif pname.endswith("bias"):
            v = rng.normal(0.0, 0.1, size=shape)
        elif pname.endswith("alpha"):  # PReLU slopes
            v = rng.uniform(0.05, 0.5, size=shape)
        else:
            continue
        p.set_data(arr(v.astype("float32"), dtype="float32"))


def _tokens(rng, shape, input_dim):
    """Float32 token ids including out-of-range and fractional values.

    MXNet's Embedding truncates toward zero and clips to [0, input_dim-1].
    """
    import numpy as np

    t = rng.randint(0, input_dim, size=shape).astype(np.float32)
    flat = t.reshape(-1)
    specials = [-3.0, float(input_dim + 5), 2.7, float(input_dim) - 0.5, -0.5, float(input_dim)]
    for i, v in enumerate(specials):
        flat[(i * 5 + 1) % flat.size] = v
    return flat.reshape(shape)


def _op_census(sym_json):
    return collections.Counter(n["op"] for n in sym_json["nodes"] if n["op"] != "null")


def _attr_summary(sym_json):
    """op -> sorted unique attr dicts (as JSON strings), for the report."""
    out = collections.defaultdict(set)
    for n in sym_json["nodes"]:
        if n["op"] == "null":
            a = {k: v for k, v in n.get("attrs", {}).items() if k in ("__layout__",)}
            if a:
                out["null(var)"].add(json.dumps(a, sort_keys=True))
            continue
        out[n["op"]].add(json.dumps(n.get("attrs", {}), sort_keys=True))
    return {k: sorted(v) for k, v in out.items()}


def _write_common(name, outdir, inputs, outputs, out_names, notes, extra_meta=None):
    import numpy as np

    for iname, arr in inputs:
        np.save(os.path.join(outdir, "input-%s.npy" % iname), arr.astype(np.float32))
    assert len(outputs) == len(out_names), (len(outputs), out_names)
    for k, o in enumerate(outputs):
        np.save(os.path.join(outdir, "output-%d.npy" % k), o.astype(np.float32))
    meta = {
        "inputs": [{"name": n, "dtype": "float32", "shape": list(a.shape)} for n, a in inputs],
        "outputs": list(out_names),
        "mxnet_version": __import__("mxnet").__version__,
        "notes": notes,
    }
    if extra_meta:
        meta.update(extra_meta)
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=False)
        f.write("\n")


def _check_close(name, ref, got):
    import numpy as np

    assert len(ref) == len(got), (name, len(ref), len(got))
    worst = 0.0
    for k, (a, b) in enumerate(zip(ref, got)):
        assert a.shape == b.shape, (name, k, a.shape, b.shape)
        assert np.all(np.isfinite(a)), (name, k, "non-finite reference output")
        d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        worst = max(worst, d)
    if worst > TOL:
        raise SystemExit("%s: reloaded model differs from original by %g > %g" % (name, worst, TOL))
    return worst


def _as_list(out):
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]


def run_gluon(name, net, inputs, notes, seed, np_mode=False, post_init=None):
    """Initialise, randomise, hybridize, forward, export, reload, compare, write."""
    import mxnet as mx
    import numpy as np
    from mxnet import gluon

    outdir = os.path.join(OUT_ROOT, name)
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        os.remove(os.path.join(outdir, f))
    prefix = os.path.join(outdir, "model")
    arr = mx.np.array if np_mode else mx.nd.array

    rng = np.random.RandomState(seed + 1)
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    nd_inputs = [arr(a, dtype="float32") for _, a in inputs]
    net(*nd_inputs)  # finishes deferred initialisation (inference mode, no stat updates)
    _randomize_gluon_params(net, rng)
    if post_init is not None:
        post_init(net)
    net.hybridize()
    ref = [o.asnumpy() for o in _as_list(net(*nd_inputs))]
    net.export(prefix, epoch=0)

    sym_file = prefix + "-symbol.json"
    param_file = prefix + "-0000.params"
    with open(sym_file) as f:
        sym_json = json.load(f)
    out_names = mx.sym.load(sym_file).list_outputs()
    input_names = [n for n, _ in inputs]
    reloaded = gluon.SymbolBlock.imports(sym_file, input_names, param_file, ctx=mx.cpu())
    got = [o.asnumpy() for o in _as_list(reloaded(*[arr(a, dtype="float32") for _, a in inputs]))]
    worst = _check_close(name, ref, got)
    _write_common(name, outdir, inputs, got, out_names, notes)
    return sym_json, worst, [g.shape for g in got]


# ----------------------------------------------------------------------------
# model builders
# ----------------------------------------------------------------------------

def _image(rng, shape):
    import numpy as np

    return rng.standard_normal(shape).astype(np.float32)


def build_resnet18_v1(name, seed):
    from mxnet.gluon.model_zoo.vision.resnet import BasicBlockV1, ResNetV1
    import numpy as np

    rng = np.random.RandomState(seed)
    net = ResNetV1(BasicBlockV1, [2, 2, 2, 2], [16, 16, 32, 64, 128], classes=10,
                   prefix="resnetv10_")
    notes = ("ResNet-18 v1 topology built from the model zoo's BasicBlockV1 "
             "(ResNetV1(BasicBlockV1, [2,2,2,2], [16,16,32,64,128], classes=10)); "
             "widths reduced 4x from resnet18_v1 (whose params are ~45 MB at classes=10) "
             "to keep the fixture small. Input 1x3x64x64 instead of 224. Xavier weights; "
             "BatchNorm running_mean~N(0,0.5), running_var~U(0.5,2), gamma~U(0.5,1.5), "
             "beta~N(0,0.2); biases~N(0,0.1).")
    return run_gluon(name, net, [("data", _image(rng, (1, 3, 64, 64)))], notes, seed)


def build_mobilenet0_25(name, seed):
    from mxnet.gluon.model_zoo import vision
    import numpy as np

    rng = np.random.RandomState(seed)
    net = vision.get_model("mobilenet0.25", classes=10, prefix="mobilenet0_")
    notes = ("gluon model zoo mobilenet0.25 (classes=10), input 1x3x64x64. Depthwise "
             "convolutions (num_group = channels). Random BatchNorm stats/affine, random biases.")
    return run_gluon(name, net, [("data", _image(rng, (1, 3, 64, 64)))], notes, seed)


def build_mobilenetv2_0_25(name, seed):
    from mxnet.gluon.model_zoo import vision
    import numpy as np

    rng = np.random.RandomState(seed)
    net = vision.get_model("mobilenetv2_0.25", classes=10, prefix="mobilenetv20_")
    notes = ("gluon model zoo mobilenetv2_0.25 (classes=10), input 1x3x64x64. ReLU6 is "
             "exported as clip(0,6); the classifier is a 1x1 convolution + Flatten. "
             "Random BatchNorm stats/affine, random biases.")
    return run_gluon(name, net, [("data", _image(rng, (1, 3, 64, 64)))], notes, seed)


def build_squeezenet1_1(name, seed):
    from mxnet.gluon.model_zoo import vision
    import numpy as np

    rng = np.random.RandomState(seed)
    net = vision.get_model("squeezenet1.1", classes=10, prefix="squeezenet0_")
    # The classifier ends in AvgPool2D(13) (a fixed 13x13 kernel, not a global pool), so
    # the last map must be >= 13: 64x64 is too small. 210 is chosen so that every one of
    # the three max pools (3x3/2, ceil_mode -> 'full') has a clipped last window:
    # 210 -conv3/2-> 104 -pool-> 52 (valid: 51) -> 26 (valid: 25) -> 13 (valid: 12).
    notes = ("gluon model zoo squeezenet1.1 (classes=10), input 1x3x210x210 (NOT 64: the final "
             "AvgPool2D(13) has a fixed 13x13 kernel and needs a >= 13 map). The three max "
             "pools (3x3, stride 2) use pooling_convention 'full' (ceil_mode=True), and at 210 "
             "each of them has a clipped last window: 104 -> 52 (valid 51) -> 26 (valid 25) -> "
             "13 (valid 12). Random biases (the classifier conv's bias is shifted by +0.3 so that "
             "fewer outputs are exactly 0 after its relu).")

    def lift_classifier_bias(net):
        # The classifier is conv1x1 -> relu -> avg pool; with a zero-mean bias most of the
        # 10 outputs are exactly 0 after the relu, which makes a weak fixture.
        conv = net.output[0]
        conv.bias.set_data(conv.bias.data() + 0.3)

    return run_gluon(name, net, [("data", _image(rng, (1, 3, 210, 210)))], notes, seed,
                     post_init=lift_classifier_bias)


def build_mlp(name, seed):
    from mxnet import gluon
    import numpy as np

    class MLP(gluon.HybridBlock):
        def __init__(self, **kw):
            super(MLP, self).__init__(**kw)
            with self.name_scope():
                self.fc1 = gluon.nn.Dense(128, activation="relu")
                self.drop = gluon.nn.Dropout(0.3)
                self.fc2 = gluon.nn.Dense(64, activation="sigmoid")
                self.fc3 = gluon.nn.Dense(10)

        def hybrid_forward(self, F, x):
            x = self.fc3(self.fc2(self.drop(self.fc1(x))))
            return F.softmax(x)

    rng = np.random.RandomState(seed)
    net = MLP(prefix="mlp0_")
    notes = ("Dense(128,relu) -> Dropout(0.3) -> Dense(64,sigmoid) -> Dense(10) -> softmax "
             "(axis -1). Dropout is the identity at inference. Random biases.")
    return run_gluon(name, net, [("data", _image(rng, (4, 784)))], notes, seed)


def build_lenet_gluon(name, seed):
    from mxnet import gluon
    import numpy as np

    nn = gluon.nn
    rng = np.random.RandomState(seed)
    net = nn.HybridSequential(prefix="lenet0_")
    with net.name_scope():
        net.add(nn.Conv2D(6, 5),                        # 28 -> 24
                nn.BatchNorm(),
                nn.LeakyReLU(0.1),
                nn.MaxPool2D(2),                        # 24 -> 12
                nn.Conv2D(16, 5),                       # 12 -> 8
                nn.Activation("relu"),
                # full: ceil((8+2-3)/2)+1 = 5 (valid would give 4); the last window
                # [7, 9] is clipped to the padded extent [7, 8] -> divisor 2 per axis.
                nn.AvgPool2D(pool_size=3, strides=2, padding=1, ceil_mode=True,
                             count_include_pad=True),   # 8 -> 5
                nn.Flatten(),
                nn.Dense(120),
                nn.Dropout(0.5),
                nn.Dense(10))
    notes = ("Conv(6,5) -> BatchNorm -> LeakyReLU(0.1) -> MaxPool(2) -> Conv(16,5) -> relu -> "
             "AvgPool(k3,s2,p1, ceil_mode=True i.e. pooling_convention 'full', "
             "count_include_pad=True) on an 8x8 map -> 5x5 (valid would give 4x4; the last "
             "window is clipped to the padded extent, the first includes padding in its "
             "divisor) -> Flatten -> Dense(120) -> Dropout(0.5) -> Dense(10). The avg pool "
             "kernel was changed from 2 to 3 (+pad 1) so that 'full' and count_include_pad "
             "both matter. BatchNorm: random running stats, gamma, beta (fix_gamma False).")
    return run_gluon(name, net, [("data", _image(rng, (2, 1, 28, 28)))], notes, seed)


def build_lenet_module(name, seed):
    import mxnet as mx
    import numpy as np

    rng = np.random.RandomState(seed)
    mx.random.seed(seed)
    outdir = os.path.join(OUT_ROOT, name)
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        os.remove(os.path.join(outdir, f))
    prefix = os.path.join(outdir, "model")

    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(data, kernel=(5, 5), num_filter=6, name="conv1")        # 24
    x = mx.sym.BatchNorm(x, name="bn1")  # all defaults: fix_gamma=True, eps=1e-3
    x = mx.sym.Activation(x, act_type="relu", name="relu1")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")  # 12
    x = mx.sym.Convolution(x, kernel=(5, 5), num_filter=16, name="conv2")       # 8
    x = mx.sym.Activation(x, act_type="tanh", name="tanh1")
    x = mx.sym.Pooling(x, pool_type="avg", kernel=(3, 3), stride=(2, 2),
                       pooling_convention="full", name="pool2")                 # 4 (valid: 3)
    x = mx.sym.Flatten(x, name="flatten1")
    x = mx.sym.FullyConnected(x, num_hidden=64, name="fc1")
    x = mx.sym.Activation(x, act_type="relu", name="relu2")
    x = mx.sym.Dropout(x, p=0.5, name="drop1")
    x = mx.sym.Reshape(x, shape=(0, -1), name="reshape1")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc2")
    sym = mx.sym.SoftmaxOutput(x, name="softmax")

    xin = _image(rng, (2, 1, 28, 28))
    mod = mx.mod.Module(sym, data_names=["data"], label_names=["softmax_label"], context=mx.cpu())
    mod.bind(data_shapes=[("data", xin.shape)], label_shapes=[("softmax_label", (2,))],
             for_training=False)
    mod.init_params(mx.init.Xavier())
    arg_params, aux_params = mod.get_params()
    prng = np.random.RandomState(seed + 1)
    new_arg, new_aux = {}, {}
    for k in sorted(arg_params):
        v = arg_params[k].asnumpy()
        if k.endswith("gamma"):
            v = prng.uniform(1.5, 2.5, size=v.shape)  # must be ignored (fix_gamma=True)
        elif k.endswith("beta"):
            v = prng.normal(0.0, 0.2, size=v.shape)
        elif k.endswith("bias"):
            v = prng.normal(0.0, 0.1, size=v.shape)
        new_arg[k] = mx.nd.array(v.astype(np.float32))
    for k in sorted(aux_params):
        v = aux_params[k].asnumpy()
        if k.endswith("moving_mean"):
            v = prng.normal(0.0, 0.5, size=v.shape)
        elif k.endswith("moving_var"):
            v = prng.uniform(0.5, 2.0, size=v.shape)
        new_aux[k] = mx.nd.array(v.astype(np.float32))
    mod.set_params(new_arg, new_aux)
    batch = mx.io.DataBatch(data=[mx.nd.array(xin)], label=[mx.nd.zeros((2,))])
    mod.forward(batch, is_train=False)
    ref = [o.asnumpy() for o in mod.get_outputs()]
    mod.save_checkpoint(prefix, 0)

    sym_file = prefix + "-symbol.json"
    with open(sym_file) as f:
        sym_json = json.load(f)
    # the saved gamma must still be != 1 (proves the runtime must ignore it)
    saved = mx.nd.load(prefix + "-0000.params")
    assert np.all(np.abs(saved["arg:bn1_gamma"].asnumpy() - 1.0) > 0.4), "gamma was reset"
    bn_attrs = [n.get("attrs", {}) for n in sym_json["nodes"] if n["op"] == "BatchNorm"][0]
    assert "fix_gamma" not in bn_attrs and "eps" not in bn_attrs, bn_attrs

    mod2 = mx.mod.Module.load(prefix, 0, data_names=["data"], label_names=["softmax_label"],
                              context=mx.cpu())
    mod2.bind(data_shapes=[("data", xin.shape)], for_training=False)
    mod2.forward(mx.io.DataBatch(data=[mx.nd.array(xin)], label=None), is_train=False)
    got = [o.asnumpy() for o in mod2.get_outputs()]
    worst = _check_close(name, ref, got)

    # independent check that gamma really is ignored: gamma=1 must give the same output
    ones_arg = dict(new_arg)
    ones_arg["bn1_gamma"] = mx.nd.ones(new_arg["bn1_gamma"].shape)
    mod.set_params(ones_arg, new_aux)
    mod.forward(batch, is_train=False)
    _check_close(name + " (gamma=1)", ref, [o.asnumpy() for o in mod.get_outputs()])
    # ... and that honouring the stored gamma would be detectably wrong
    wrong_sym = sym.get_internals()["fc2_output"]
    wrong_sym = mx.sym.load_json(wrong_sym.tojson().replace(
        '"name": "bn1", ', '"name": "bn1", "attrs": {"fix_gamma": "False"}, '))
    wrong_sym = mx.sym.SoftmaxOutput(wrong_sym, name="softmax")
    wmod = mx.mod.Module(wrong_sym, data_names=["data"], label_names=["softmax_label"],
                         context=mx.cpu())
    wmod.bind(data_shapes=[("data", xin.shape)], for_training=False)
    wmod.set_params(new_arg, new_aux)
    wmod.forward(mx.io.DataBatch(data=[mx.nd.array(xin)], label=None), is_train=False)
    wdiff = float(np.max(np.abs(wmod.get_outputs()[0].asnumpy() - ref[0])))
    assert wdiff > 1e-3, "fixture does not discriminate fix_gamma (diff %g)" % wdiff
    print("lenet_module: output with fix_gamma=False would differ by %g" % wdiff)

    out_names = mx.sym.load(sym_file).list_outputs()
    notes = ("Symbol/Module-API LeNet saved with Module.save_checkpoint: only explicitly "
             "passed attrs are stored (BatchNorm has NO attrs, so fix_gamma=True and "
             "eps=1e-3 defaults apply; the file's bn1_gamma is U(1.5,2.5), NOT 1, and must be "
             "ignored). pool2 is avg 3x3/2 'full' on 8x8 -> 4x4 (count_include_pad default). "
             "Ends in SoftmaxOutput, whose symbol also has a 'softmax_label' input variable "
             "(ignored at inference; not listed in inputs here). Reshape(shape=(0,-1)). "
             "Output computed by Module.load + bind(for_training=False) without a label.")
    _write_common(name, outdir, [("data", xin)], got, out_names, notes,
                  {"ignored_inputs": ["softmax_label"]})
    return sym_json, worst, [g.shape for g in got]


def _text_model(prefix, rnn_factory, input_dim=50, emb=16, out=5):
    from mxnet import gluon

    class TextNet(gluon.HybridBlock):
        def __init__(self, **kw):
            super(TextNet, self).__init__(**kw)
            with self.name_scope():
                self.embed = gluon.nn.Embedding(input_dim, emb)
                self.rnn = rnn_factory()
                self.fc = gluon.nn.Dense(out)

        def hybrid_forward(self, F, tokens):
            x = self.embed(tokens)                 # (N, T, E)
            x = self.rnn(x)                        # (N, T, D*H)
            x = F.swapaxes(x, dim1=0, dim2=1)      # (T, N, D*H)
            x = F.SequenceLast(x)                  # (N, D*H)
            return self.fc(x)

    return TextNet(prefix=prefix)


def _run_text(name, seed, prefix, rnn_factory, desc):
    import numpy as np

    rng = np.random.RandomState(seed)
    net = _text_model(prefix, rnn_factory)
    tokens = _tokens(rng, (2, 12), 50)
    notes = ("Embedding(50,16) -> %s (layout NTC: SwapAxis around the TNC RNN op, initial "
             "states are in-graph _zeros with a 0 (= batch) dim) -> SwapAxis -> SequenceLast "
             "-> Dense(5). Token ids are float32 and include -3, 55 (=input_dim+5), 2.7, 49.5, "
             "-0.5 and 50: Embedding truncates toward zero and clips to [0, 49]. The RNN's "
             "i2h/h2h weights and biases are separate params, flattened in-graph by Reshape(-1) "
             "and _rnn_param_concat. Biases random N(0,0.1)." % desc)
    return run_gluon(name, net, [("data", tokens)], notes, seed)


def build_text_lstm(name, seed):
    from mxnet import gluon
    return _run_text(name, seed, "textlstm0_",
                     lambda: gluon.rnn.LSTM(24, num_layers=2, bidirectional=True, layout="NTC"),
                     "LSTM(24, num_layers=2, bidirectional)")


def build_text_gru(name, seed):
    from mxnet import gluon
    return _run_text(name, seed, "textgru0_",
                     lambda: gluon.rnn.GRU(20, num_layers=1, layout="NTC"),
                     "GRU(20, num_layers=1)")


def build_text_rnn_tanh(name, seed):
    from mxnet import gluon
    return _run_text(name, seed, "textrnntanh0_",
                     lambda: gluon.rnn.RNN(16, num_layers=2, activation="tanh",
                                           bidirectional=True, layout="NTC"),
                     "RNN(16, num_layers=2, activation=tanh, bidirectional)")


def build_text_rnn_relu(name, seed):
    from mxnet import gluon
    return _run_text(name, seed, "textrnnrelu0_",
                     lambda: gluon.rnn.RNN(16, num_layers=2, activation="relu",
                                           bidirectional=True, layout="NTC"),
                     "RNN(16, num_layers=2, activation=relu, bidirectional)")


def build_census_misc(name, seed):
    from mxnet import gluon
    import numpy as np

    nn = gluon.nn

    class Misc(gluon.HybridBlock):
        def __init__(self, **kw):
            super(Misc, self).__init__(**kw)
            with self.name_scope():
                self.conv1 = nn.Conv2D(8, 3, strides=2, padding=1)          # 16 -> 8
                self.inorm = nn.InstanceNorm()
                self.prelu = nn.PReLU(in_channels=8)
                self.conv2 = nn.Conv2D(4, 3, groups=2, in_channels=8)                      # 10 -> 8
                self.gnorm = nn.GroupNorm(num_groups=2)
                self.elu = nn.ELU(alpha=0.7)
                # s(x-1)+k-2p+adj = 2*7+3-2+1 = 16; no bias
                self.deconv1 = nn.Conv2DTranspose(4, 3, strides=2, padding=1, output_padding=1,
                                                  use_bias=False)
                self.lnorm = nn.LayerNorm()                                  # axis -1
                self.selu = nn.SELU()
                # 2*15+(3,2)-2*(1,0)+(0,1) = (31, 33); grouped, with bias
                self.deconv2 = nn.Conv2DTranspose(6, (3, 2), strides=2, padding=(1, 0),
                                                  output_padding=(0, 1), groups=2,
                                                  use_bias=True, in_channels=4)
                self.gelu = nn.GELU()
                self.swish = nn.Swish()
                self.gpool = nn.GlobalMaxPool2D()
                self.softrelu = nn.Activation("softrelu")
                self.flat = nn.Flatten()
                self.embed = nn.Embedding(20, 3)
                self.fc = nn.Dense(7)

        def hybrid_forward(self, F, x, tokens):
            x = self.prelu(self.inorm(self.conv1(x)))                           # (2,8,8,8)
            x = F.pad(x, mode="reflect", pad_width=(0, 0, 0, 0, 1, 1, 1, 1))    # (2,8,10,10)
            x = self.elu(self.gnorm(self.conv2(x)))                             # (2,4,8,8)
            x = self.selu(self.lnorm(self.deconv1(x)))                          # (2,4,16,16)
            x = self.gelu(self.deconv2(x))                                      # (2,6,31,33)
            x = F.clip(self.swish(x), a_min=-0.25, a_max=1.5)
            x = self.flat(self.softrelu(self.gpool(x)))                          # (2,6)
            e = self.embed(tokens)                                               # (2,5,3)
            e = self.flat(F.swapaxes(e, dim1=1, dim2=2))                         # (2,15)
            y = F.concat(x, e, x, dim=1)                                         # (2,27)
            return self.fc(y)

    rng = np.random.RandomState(seed)
    net = Misc(prefix="misc0_")
    inputs = [("data0", _image(rng, (2, 3, 16, 16))), ("data1", _tokens(rng, (2, 5), 20))]
    notes = ("Two inputs: data0 image 2x3x16x16, data1 float32 token ids 2x5 (with -3, 25, 2.7, "
             "19.5, -0.5, 20 -> truncated toward zero and clipped to [0,19]). "
             "Conv(8,3,s2,p1) -> InstanceNorm -> PReLU(alpha per channel, 8 values) -> "
             "Pad reflect (0,0,0,0,1,1,1,1) -> Conv(4,3,groups=2) -> GroupNorm(2 groups; gamma/"
             "beta have shape (2,) = per group) -> ELU(0.7) -> Conv2DTranspose(4,3,s2,p1,adj1,"
             "no bias) -> LayerNorm(axis -1, over W) -> SELU -> Conv2DTranspose(6,(3,2),s2,"
             "p(1,0),adj(0,1),groups 2, bias) -> GELU(erf) -> Swish(_mul_scalar, sigmoid, "
             "elemwise_mul) -> clip(-0.25,1.5) -> global max Pooling -> softrelu -> Flatten; "
             "Embedding(20,3) -> SwapAxis(1,2) -> Flatten; Concat(x, e, x, dim 1) -> Dense(7). "
             "All norm gammas U(0.5,1.5), betas N(0,0.2), biases N(0,0.1), PReLU alpha "
             "U(0.05,0.5).")
    return run_gluon(name, net, inputs, notes, seed)


def build_census_reshape(name, seed):
    from mxnet import gluon
    import numpy as np

    class ReshapeNet(gluon.HybridBlock):
        def __init__(self, **kw):
            super(ReshapeNet, self).__init__(**kw)
            with self.name_scope():
                self.fc = gluon.nn.Dense(5, flatten=False)

        def hybrid_forward(self, F, x):                                   # (2,4,6,8)
            a = F.reshape(x, shape=(0, -3, -2))                           # (2,24,8)
            b = F.reshape(a, shape=(0, -4, 2, -1, -2))                    # (2,2,12,8)
            c = F.reshape(b, shape=(-1, 0), reverse=True)                 # (48,8) [no reverse: (192,2)]
            d = F.reshape(c, shape=(-4, 6, -1, 0))                        # (6,8,8)
            e = F.reshape(d, shape=(-2,))                                 # (6,8,8)
            f = F.swapaxes(e, dim1=0, dim2=2)                             # (8,8,6)
            g = self.fc(f)                                                # (8,8,5) flatten=False
            parts = F.split(g, num_outputs=4, axis=1)                     # 4 x (8,2,5)
            s = F.stack(parts[0], parts[1], parts[3], axis=1)             # (8,3,2,5)
            m = F.mean(s, axis=2)                                         # (8,3,5)
            t = F.tanh(m)
            u = F.elemwise_sub(t, F.ones_like(t))
            sq = F.split(F.reshape(parts[2], shape=(0, -3)), num_outputs=2, axis=0,
                         squeeze_axis=False)                              # 2 x (4,10)
            v = F.elemwise_add(sq[0], sq[1])
            return F.log_softmax(u, axis=1), F.softmax(v), F.Flatten(u)

    rng = np.random.RandomState(seed)
    net = ReshapeNet(prefix="reshape0_")
    notes = ("Reshape codes: (0,-3,-2) -> (0,-4,2,-1,-2) -> (-1,0) with reverse=True "
             "(gives (48,8); without reverse it would be (192,2)) -> (-4,6,-1,0) -> (-2,). "
             "Then SwapAxis(0,2), Dense(5, flatten=False) on a 3-D tensor, SliceChannel "
             "(split, 4 outputs, axis 1), stack(axis 1, 3 args), mean(axis 2), tanh, "
             "ones_like, elemwise_sub, SliceChannel (2 outputs, axis 0), elemwise_add. "
             "THREE graph outputs: log_softmax(axis 1) (8,3,5), softmax (4,10), Flatten (8,15).")
    return run_gluon(name, net, [("data", _image(rng, (2, 4, 6, 8)))], notes, seed)


def build_np_mlp(name, seed):
    import mxnet as mx
    from mxnet import gluon
    import numpy as np

    mx.npx.set_np()
    rng = np.random.RandomState(seed)
    net = gluon.nn.HybridSequential(prefix="npmlp0_")
    with net.name_scope():
        net.add(gluon.nn.Dense(32, activation="relu"),
                gluon.nn.Dense(16, activation="tanh"),
                gluon.nn.Dense(10))
    notes = ("Exported under numpy mode (mx.npx.set_np()): the .params file holds V3 "
             "records (saved by npx.save) and the symbol JSON has attrs.is_np_shape = 1 and "
             "-1 for unknown __shape__ dims. Dense(32,relu) -> Dense(16,tanh) -> Dense(10); "
             "input 3x20. Random biases.")
    return run_gluon(name, net, [("data", _image(rng, (3, 20)))], notes, seed, np_mode=True)


def build_yolo_upsample(name, seed):
    from mxnet import gluon
    import numpy as np

    class Upsample(gluon.HybridBlock):
        """GluonCV YOLOv3's route: a 1x1 convolution, upsampled 2x by `repeat` on the
        last two axes (GluonCV's `_upsample`), concatenated with an earlier feature map,
        then a convolution (tract 0.23 could not build a plan for it from `Expand`)."""

        def __init__(self, **kw):
            super(Upsample, self).__init__(**kw)
            with self.name_scope():
                self.reduce = gluon.nn.Conv2D(8, 1)
                # 1x1, as YOLOv3's detection block starts: tract makes it a matrix product.
                self.conv = gluon.nn.Conv2D(4, 1)

        def hybrid_forward(self, F, x, route):
            up = self.reduce(x).repeat(axis=-1, repeats=2).repeat(axis=-2, repeats=2)
            return self.conv(F.concat(up, route, dim=1))

    rng = np.random.RandomState(seed)
    net = Upsample(prefix="yolo0_")
    notes = ("YOLOv3's upsampling route: conv1x1 -> repeat(2, -1) -> repeat(2, -2) -> concat -> "
             "conv1x1, at batch 1 (where tract dropped the batch axis and failed to build a plan).")
    inputs = [("data0", _image(rng, (1, 16, 4, 4))), ("data1", _image(rng, (1, 8, 8, 8)))]
    return run_gluon(name, net, inputs, notes, seed)


BUILDERS = {n: globals()["build_" + n] for n in MODEL_ORDER}

# Ops (with minimum counts) that each exported symbol must contain; checked by the worker so
# that a change in MXNet/Gluon lowering cannot silently drop coverage.
_TEXT_OPS = {"Embedding": 1, "SwapAxis": 3, "Reshape": 1, "_rnn_param_concat": 1, "_zeros": 1,
             "RNN": 1, "SequenceLast": 1, "FullyConnected": 1}
EXPECTED_OPS = {
    "resnet18_v1": {"Convolution": 20, "BatchNorm": 20, "Activation": 17, "elemwise_add": 8,
                    "Pooling": 2, "FullyConnected": 1},
    "mobilenet0_25": {"Convolution": 27, "BatchNorm": 27, "Activation": 27, "Pooling": 1,
                      "Flatten": 1, "FullyConnected": 1},
    "mobilenetv2_0_25": {"Convolution": 54, "BatchNorm": 53, "clip": 36, "elemwise_add": 10,
                         "Pooling": 1, "Flatten": 1},
    "squeezenet1_1": {"Convolution": 26, "Activation": 26, "Concat": 8, "Pooling": 4,
                      "Dropout": 1, "Flatten": 1},
    "mlp": {"FullyConnected": 3, "Activation": 2, "Dropout": 1, "softmax": 1},
    "lenet_gluon": {"Convolution": 2, "BatchNorm": 1, "LeakyReLU": 1, "Pooling": 2,
                    "Activation": 1, "Flatten": 1, "FullyConnected": 2, "Dropout": 1},
    "lenet_module": {"Convolution": 2, "BatchNorm": 1, "Activation": 3, "Pooling": 2,
                     "Flatten": 1, "Reshape": 1, "FullyConnected": 2, "Dropout": 1,
                     "SoftmaxOutput": 1},
    "text_lstm": dict(_TEXT_OPS, _zeros=2),
    "text_gru": _TEXT_OPS,
    "text_rnn_tanh": _TEXT_OPS,
    "text_rnn_relu": _TEXT_OPS,
    "census_misc": {"Convolution": 2, "Deconvolution": 2, "InstanceNorm": 1, "LayerNorm": 1,
                    "GroupNorm": 1, "LeakyReLU": 4, "Pad": 1, "_mul_scalar": 1, "sigmoid": 1,
                    "elemwise_mul": 1, "clip": 1, "Concat": 1, "SwapAxis": 1, "Pooling": 1,
                    "Activation": 1, "Flatten": 1, "FullyConnected": 1, "Embedding": 1},
    "census_reshape": {"Reshape": 6, "SwapAxis": 1, "FullyConnected": 1, "SliceChannel": 2,
                       "stack": 1, "mean": 1, "tanh": 1, "ones_like": 1, "elemwise_sub": 1,
                       "elemwise_add": 1, "log_softmax": 1, "softmax": 1, "Flatten": 1},
    "np_mlp": {"FullyConnected": 3, "Activation": 2},
    "yolo_upsample": {"Convolution": 2, "repeat": 2, "Concat": 1},
}


def worker(name):
    import mxnet as mx
    import numpy as np

    seed = _seed_for(name)
    np.random.seed(seed)
    mx.random.seed(seed)
    sym_json, worst, out_shapes = BUILDERS[name](name, seed)
    census = _op_census(sym_json)
    missing = {op: n for op, n in EXPECTED_OPS[name].items() if census.get(op, 0) < n}
    if missing:
        raise SystemExit("%s: exported symbol lacks expected ops %s (census %s)"
                         % (name, missing, dict(census)))
    if name == "np_mlp":
        assert sym_json.get("attrs", {}).get("is_np_shape") == ["int", 1], sym_json.get("attrs")
    report = {
        "name": name,
        "max_reload_diff": worst,
        "output_shapes": [list(s) for s in out_shapes],
        "census": dict(sorted(_op_census(sym_json).items())),
        "attrs": _attr_summary(sym_json),
        "graph_attrs": sym_json.get("attrs", {}),
        "nodes": len(sym_json["nodes"]),
    }
    print("@@REPORT@@" + json.dumps(report))


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def main(argv):
    if len(argv) >= 2 and argv[0] == "--worker":
        worker(argv[1])
        return 0
    verbose = "-v" in argv
    names = [a for a in argv if not a.startswith("-")] or MODEL_ORDER
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        print("unknown model(s): %s; known: %s" % (unknown, MODEL_ORDER), file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # deterministic reductions
    env.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
    reports = []
    for n in names:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", n],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           universal_newlines=True)
        if p.returncode != 0:
            sys.stderr.write(p.stdout + p.stderr)
            print("FAILED: %s" % n, file=sys.stderr)
            return 1
        line = [l for l in p.stdout.splitlines() if l.startswith("@@REPORT@@")][-1]
        reports.append(json.loads(line[len("@@REPORT@@"):]))

    print("%-17s %10s %6s %9s  %-26s %s" % ("model", "bytes", "nodes", "reload_d", "outputs", "op census"))
    total = 0
    for r in reports:
        size = _dir_size(os.path.join(OUT_ROOT, r["name"]))
        total += size
        census = ", ".join("%s %d" % kv for kv in r["census"].items())
        print("%-17s %10d %6d %9.2g  %-26s %s" % (r["name"], size, r["nodes"], r["max_reload_diff"],
                                                 " ".join("x".join(map(str, s)) for s in r["output_shapes"]),
                                                 census))
    print("total (these models): %d bytes (%.2f MB)" % (total, total / 1e6))
    if verbose:
        for r in reports:
            print("\n== %s  graph attrs %s" % (r["name"], r["graph_attrs"]))
            for op, attrs in sorted(r["attrs"].items()):
                for a in attrs:
                    print("  %-20s %s" % (op, a))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
