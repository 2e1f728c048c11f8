#!/usr/bin/env python3
"""Generate the symbol-JSON fixtures of `crates/ward-mxnet/tests/symbol_reader.rs`.

Run with the MXNet 1.9.1 virtual environment:

    .venv-mx/bin/python tools/make_symbol_fixtures.py

It writes `tests/fixtures/symbol/`:

* `valid/*.json`: symbol files as real MXNet 1.9.1 writes them (a Gluon export, a
  Module-API checkpoint symbol, a numpy-mode export, an MKLDNN-fused export with
  `_sg_mkldnn_conv` subgraphs, a control-flow `_foreach` with a subgraph, a Gluon LSTM),
  plus two hand-written legacy files in the 0.8 (`param`, `backward_source_id`, 2-element
  inputs) and 0.9 (`attr`) styles.  Every file, hand-written ones included, is loaded back
  with `mx.sym.load_json` and the script fails if MXNet refuses it.
* `valid/*.expect.json`: what MXNet itself makes of each file after loading it (op, name,
  attributes and inputs of every node, subgraphs included; arg_nodes, heads, graph
  attributes and output names), which the Rust test compares against.
* `mxnet-1.9.1-op-names.tsv`: every operator name registered in MXNet 1.9.1 and the
  canonical name `Op::Get` resolves it to (aliases included), so the Rust alias table is
  checked against the registry rather than against a hand-copied list.

It also writes the fuzz seeds `fuzz/corpus/symbol/seed-*.json` (every fixture plus two
small legacy-style documents).

The malformed corpus is written by hand inside the Rust test (each case is a few bytes).
Only symbol JSON is produced: no `.params`.  Each export runs in its own subprocess because
Gluon's name counters and the numpy-mode switch are process-global.
"""

import ctypes
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "symbol")
VALID = os.path.join(OUT, "valid")


# ----------------------------------------------------------------------------
# exports (each runs in a fresh interpreter: `python make_symbol_fixtures.py --one NAME`)
# ----------------------------------------------------------------------------

def export_gluon_cnn(path):
    import mxnet as mx
    from mxnet.gluon import nn

    mx.random.seed(1)
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(4, kernel_size=3, padding=1, in_channels=1))
        net.add(nn.BatchNorm())
        net.add(nn.Activation("relu"))
        net.add(nn.MaxPool2D(pool_size=2, strides=2, ceil_mode=True))
        net.add(nn.Conv2D(4, kernel_size=(1, 3), strides=(1, 2), use_bias=False))
        net.add(nn.LeakyReLU(0.1))
        net.add(nn.GlobalAvgPool2D())
        net.add(nn.Flatten())
        net.add(nn.Dropout(0.5))
        net.add(nn.Dense(3))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.ones((1, 1, 8, 8)))
    net.export(path)


def export_gluon_lstm(path):
    import mxnet as mx
    from mxnet.gluon import nn, rnn

    class TextLSTM(nn.HybridBlock):
        def __init__(self, **kw):
            super().__init__(**kw)
            with self.name_scope():
                self.embed = nn.Embedding(10, 4)
                self.lstm = rnn.LSTM(5, num_layers=1, layout="NTC", bidirectional=True)
                self.out = nn.Dense(2, flatten=False)

        def hybrid_forward(self, F, x):
            return self.out(self.lstm(self.embed(x)))

    mx.random.seed(2)
    net = TextLSTM()
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.ones((2, 3)))
    net.export(path)


def export_module_lenet(path):
    import mxnet as mx

    data = mx.sym.Variable("data")
    conv = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="conv1")
    bn = mx.sym.BatchNorm(conv, fix_gamma=True, name="bn1")
    act = mx.sym.Activation(bn, act_type="tanh", name="tanh1")
    pool = mx.sym.Pooling(act, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool1")
    flat = mx.sym.Reshape(pool, shape=(0, -1), name="flat")
    fc = mx.sym.FullyConnected(flat, num_hidden=3, name="fc1")
    # `attr` stores user attributes; lr_mult becomes the hidden `__lr_mult__`.
    with mx.AttrScope(ctx_group="dev1"):
        fc2 = mx.sym.FullyConnected(fc, num_hidden=3, name="fc2",
                                    attr={"lr_mult": "0.5"})
    sm = mx.sym.SoftmaxOutput(fc2, name="softmax")
    sm.save(path + "-symbol.json")


def export_numpy_mlp(path):
    import mxnet as mx
    from mxnet.gluon import nn

    mx.npx.set_np()

    class NpMLP(nn.HybridBlock):
        def __init__(self, **kw):
            super().__init__(**kw)
            with self.name_scope():
                self.fc1 = nn.Dense(6, activation="relu")
                self.fc2 = nn.Dense(3)

        def hybrid_forward(self, F, x):
            h = self.fc1(x)
            h = F.np.swapaxes(F.npx.reshape(h, (-2, -2)), 0, 1)
            h = F.np.swapaxes(h, 0, 1)
            return self.fc2(h) * 2.0 + 1.0

    mx.random.seed(3)
    net = NpMLP()
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.np.ones((2, 5)))
    net.export(path)


def export_mkldnn_fused(path):
    import mxnet as mx
    from mxnet.gluon import nn

    mx.random.seed(4)
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(4, kernel_size=3, padding=1, in_channels=3))
        net.add(nn.BatchNorm())
        net.add(nn.Activation("relu"))
        net.add(nn.Flatten())
        net.add(nn.Dense(3, activation="relu"))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    x = mx.nd.ones((1, 3, 6, 6))
    net(x)
    net.optimize_for(x, backend="MKLDNN")
    net(x)
    net.export(path)


def export_foreach(path):
    import mxnet as mx

    data = mx.sym.Variable("data")          # (T, N, C)
    init = mx.sym.Variable("init_state")    # (N, C)

    def step(x, states):
        s = states[0]
        out = mx.sym.tanh(x + s, name="step_tanh")
        return out, [out * 0.5]

    outs, states = mx.sym.contrib.foreach(step, data, [init], name="loop")
    grouped = mx.sym.Group([outs, states[0]])
    grouped.save(path + "-symbol.json")


EXPORTS = {
    "gluon_cnn": export_gluon_cnn,
    "gluon_lstm": export_gluon_lstm,
    "module_lenet": export_module_lenet,
    "numpy_mlp": export_numpy_mlp,
    "mkldnn_fused": export_mkldnn_fused,
    "foreach_subgraph": export_foreach,
}


# ----------------------------------------------------------------------------
# hand-written legacy files (layout as written by MXNet 0.8 and 0.9)
# ----------------------------------------------------------------------------

def legacy_0800():
    """0.8 era: `param` holds op arguments, `attr` user attributes, inputs have 2
    elements, every node has `backward_source_id`, there is no `mxnet_version`, ops use
    old aliases, and BatchNorm lists only data/gamma/beta (the moving statistics were
    not in the JSON before 0.9)."""
    def var(name, attr=None):
        return {"op": "null", "param": {}, "name": name, "inputs": [],
                "backward_source_id": -1, "attr": attr or {}}

    def op(kind, name, param, inputs, attr=None):
        return {"op": kind, "param": param, "name": name, "inputs": inputs,
                "backward_source_id": -1, "attr": attr or {}}

    nodes = [
        var("data", {"ctx_group": "stage1", "lr_mult": "0.2"}),
        var("fc1_weight", {"wd_mult": "0.3"}),
        var("fc1_bias"),
        op("FullyConnected", "fc1", {"no_bias": "False", "num_hidden": "8"},
           [[0, 0], [1, 0], [2, 0]], {"ctx_group": "stage1", "weight_lr_mult": "1.2"}),
        var("bn0_gamma"),
        var("bn0_beta"),
        op("BatchNorm", "bn0", {"eps": "0.001", "fix_gamma": "True", "momentum": "0.9",
                                "use_global_stats": "False"}, [[3, 0], [4, 0], [5, 0]]),
        op("Activation", "relu1", {"act_type": "relu"}, [[6, 0]]),
        op("_Plus", "plus0", {}, [[7, 0], [3, 0]]),
        op("_MulScalar", "mulscalar0", {"scalar": "0.5"}, [[8, 0]]),
        var("softmax_label"),
        op("Softmax", "softmax", {"grad_scale": "1", "multi_output": "False"},
           [[9, 0], [10, 0]]),
    ]
    return {"nodes": nodes, "arg_nodes": [0, 1, 2, 4, 5, 10], "heads": [[11, 0]]}


def legacy_0900():
    """0.9 era: `attr` holds everything, inputs have 3 elements, a graph version."""
    def var(name, attr=None):
        node = {"op": "null", "name": name, "inputs": []}
        if attr:
            node["attr"] = attr
        return node

    nodes = [
        var("data"),
        {"op": "SliceChannel", "name": "slice0",
         "attr": {"axis": "1", "num_outputs": "2"}, "inputs": [[0, 0, 0]]},
        {"op": "ElementWiseSum", "name": "sum0", "attr": {"num_args": "2"},
         "inputs": [[1, 0, 0], [1, 1, 0]]},
        {"op": "_Mul", "name": "mul0", "inputs": [[2, 0, 0], [1, 1, 0]]},
        {"op": "swapaxes", "name": "swap0", "attr": {"dim1": "0", "dim2": "1"},
         "inputs": [[3, 0, 0]]},
        {"op": "argmax", "name": "argmax0", "attr": {"axis": "-1"}, "inputs": [[4, 0, 0]]},
        {"op": "flatten", "name": "flat0", "inputs": [[4, 0, 0]]},
    ]
    return {"nodes": nodes, "arg_nodes": [0], "heads": [[5, 0, 0], [6, 0, 0]],
            "attrs": {"mxnet_version": ["int", 903]}}


HAND_WRITTEN = {"legacy_0800": legacy_0800, "legacy_0900": legacy_0900}


# ----------------------------------------------------------------------------
# what MXNet itself makes of each file
# ----------------------------------------------------------------------------

def describe(json_text):
    """Loads with MXNet 1.9.1 and reports what it parsed (fails if MXNet refuses)."""
    import mxnet as mx

    sym = mx.sym.load_json(json_text)
    # MXNet's own view after LoadLegacyJSON: op names are canonical, hidden keys fixed,
    # legacy upgrades applied.
    reloaded = json.loads(sym.tojson())

    def graph(g):
        nodes = [{"op": n["op"], "name": n["name"], "attrs": n.get("attrs", {}),
                  "inputs": [e[:2] for e in n["inputs"]],
                  "subgraphs": [graph(s) for s in n.get("subgraphs", [])]}
                 for n in g["nodes"]]
        return {"nodes": nodes, "arg_nodes": g["arg_nodes"],
                "heads": [e[:2] for e in g["heads"]]}

    described = graph(reloaded)
    described["outputs"] = sym.list_outputs()
    described["attrs"] = reloaded.get("attrs", {})
    return described


def op_name_table():
    import mxnet as mx
    from mxnet.base import _LIB, c_str, check_call, py_str

    size = ctypes.c_uint()
    names_ptr = ctypes.POINTER(ctypes.c_char_p)()
    check_call(_LIB.MXListAllOpNames(ctypes.byref(size), ctypes.byref(names_ptr)))
    names = sorted(py_str(names_ptr[i]) for i in range(size.value))
    rows = []
    for name in names:
        handle = ctypes.c_void_p()
        check_call(_LIB.NNGetOpHandle(c_str(name), ctypes.byref(handle)))
        real = ctypes.c_char_p()
        desc = ctypes.c_char_p()
        nargs = ctypes.c_uint()
        arg_names = ctypes.POINTER(ctypes.c_char_p)()
        arg_types = ctypes.POINTER(ctypes.c_char_p)()
        arg_descs = ctypes.POINTER(ctypes.c_char_p)()
        key_var = ctypes.c_char_p()
        ret_type = ctypes.c_char_p()
        check_call(_LIB.MXSymbolGetAtomicSymbolInfo(
            handle, ctypes.byref(real), ctypes.byref(desc), ctypes.byref(nargs),
            ctypes.byref(arg_names), ctypes.byref(arg_types), ctypes.byref(arg_descs),
            ctypes.byref(key_var), ctypes.byref(ret_type)))
        rows.append((name, py_str(real.value)))
    return mx.__version__, rows


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        name = sys.argv[2]
        EXPORTS[name](os.path.join(VALID, name))
        for suffix in ("-0000.params",):
            stale = os.path.join(VALID, name + suffix)
            if os.path.exists(stale):
                os.remove(stale)
        return

    os.makedirs(VALID, exist_ok=True)
    for name in EXPORTS:
        subprocess.run([sys.executable, __file__, "--one", name], check=True)
        os.replace(os.path.join(VALID, name + "-symbol.json"),
                   os.path.join(VALID, name + ".json"))
    for name, make in HAND_WRITTEN.items():
        with open(os.path.join(VALID, name + ".json"), "w") as f:
            json.dump(make(), f, indent=2, sort_keys=False)
            f.write("\n")

    for name in list(EXPORTS) + list(HAND_WRITTEN):
        with open(os.path.join(VALID, name + ".json")) as f:
            text = f.read()
        expect = describe(text)
        with open(os.path.join(VALID, name + ".expect.json"), "w") as f:
            json.dump(expect, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"{name}: {len(expect['nodes'])} nodes, "
              f"outputs {expect['outputs']}")

    # Seeds for `fuzz/fuzz_targets/symbol.rs`: every fixture, plus two small documents that
    # exercise the legacy paths (`attr` + `param`, 2-element entries, control_deps, aliases,
    # graph attributes of every type) and one refusal.
    seeds = os.path.join(ROOT, "fuzz", "corpus", "symbol")
    os.makedirs(seeds, exist_ok=True)
    for name in list(EXPORTS) + list(HAND_WRITTEN):
        with open(os.path.join(VALID, name + ".json")) as src, \
                open(os.path.join(seeds, f"seed-{name}.json"), "w") as dst:
            dst.write(src.read())
    small = {
        "nodes": [
            {"op": "null", "name": "data", "inputs": []},
            {"op": "null", "name": "w", "inputs": []},
            {"op": "FullyConnected", "name": "fc",
             "attrs": {"num_hidden": "2", "no_bias": "True", "kernel": "(3, 3)",
                       "eps": "1e-05", "p": "None"},
             "inputs": [[0, 0, 0], [1, 0, 0]]},
            {"op": "_Plus", "name": "act", "attr": {"lr_mult": "0.1"},
             "param": {"weight_lr_mult": "2"}, "inputs": [[2, 0], [2, 0, 0]],
             "control_deps": [0], "backward_source_id": -1},
        ],
        "arg_nodes": [0, 1],
        "node_row_ptr": [0, 1, 2, 3, 4],
        "heads": [[3, 0, 0]],
        "attrs": {"mxnet_version": ["int", 903], "is_np_shape": ["int", 0],
                  "s": ["list_str", ["a"]], "i": ["list_int", [1]]},
    }
    with open(os.path.join(seeds, "seed-small.json"), "w") as f:
        f.write(json.dumps(small, separators=(",", ":")))
    small["nodes"][3]["inputs"] = [[3, 0]]
    with open(os.path.join(seeds, "seed-self-reference.json"), "w") as f:
        f.write(json.dumps(small, separators=(",", ":")))

    version, rows = op_name_table()
    with open(os.path.join(OUT, f"mxnet-{version}-op-names.tsv"), "w") as f:
        f.write(f"# every operator name registered in MXNet {version} (MXListAllOpNames)\n")
        f.write("# and the canonical name Op::Get resolves it to (MXSymbolGetAtomicSymbolInfo)\n")
        for name, canonical in rows:
            f.write(f"{name}\t{canonical}\n")
    print(f"{len(rows)} op names, {sum(1 for a, b in rows if a != b)} aliases")


if __name__ == "__main__":
    main()
