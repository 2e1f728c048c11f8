#!/usr/bin/env python3
"""Models with MXNet 1.9.1's `_foreach` (`mx.sym.contrib.foreach`), for ward's unrolling.

    .venv-mx/bin/python tools/make_foreach_fixtures.py

Each case writes `tests/fixtures/foreach/<case>/` in the layout of the model fixtures:
`model-symbol.json`, `model-0000.params` (`arg:` keys), `input-<name>.npy`, MXNet's
outputs `output-<k>.npy` in `list_outputs()` order, and `meta.json` with the inputs'
names and shapes and the output names. Seeds are fixed.
"""

import json
import os
import shutil

os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "foreach")

foreach = mx.sym.contrib.foreach
V = mx.sym.var


def fc(x, w, b, hidden):
    return mx.sym.FullyConnected(x, weight=w, bias=b, num_hidden=hidden)


def cumsum():
    x, s = V("data"), V("init")
    outs, states = foreach(lambda d, st: (d + st[0], [d + st[0]]), x, [s], name="cumsum")
    return [outs] + states, {"data": (5, 2, 3), "init": (2, 3)}, {}


def rnn_cell(act, length=4, batch=2, name="rnn"):
    x, h0 = V("data"), V("h0")
    wx, wh, b = V("wx"), V("wh"), V("b")

    def body(d, st):
        h = mx.sym.Activation(fc(d, wx, b, 5)
                              + mx.sym.FullyConnected(st[0], weight=wh, num_hidden=5, no_bias=True),
                              act_type=act)
        return h, [h]

    outs, states = foreach(body, x, [h0], name=name)
    return [outs] + states, {"data": (length, batch, 3), "h0": (batch, 5)}, {
        "wx": (5, 3), "wh": (5, 5), "b": (5,)}


def lstm_cell(length=4, batch=2, clip=False, copy=False, name="lstm"):
    """GluonNLP's LSTMPCellWithClip shape: gates by FullyConnected, SliceChannel, clip."""
    x, h0, c0 = V("data"), V("h0"), V("c0")
    wi, wh, bi, bh = V("i2h_weight"), V("h2h_weight"), V("i2h_bias"), V("h2h_bias")
    H = 4

    def body(d, st):
        h, c = st
        gates = fc(d, wi, bi, 4 * H) + fc(h, wh, bh, 4 * H)
        i, f, g, o = mx.sym.SliceChannel(gates, num_outputs=4, axis=1)
        i = mx.sym.Activation(i, act_type="sigmoid")
        f = mx.sym.Activation(f, act_type="sigmoid")
        g = mx.sym.Activation(g, act_type="tanh")
        o = mx.sym.Activation(o, act_type="sigmoid")
        c2 = mx.sym.elemwise_add(f * c, i * g)
        if clip:
            c2 = mx.sym.clip(c2, -0.5, 0.5)
        h2 = o * mx.sym.Activation(c2, act_type="tanh")
        if copy:
            return mx.sym.identity(h2), [h2, c2]
        return h2, [h2, c2]

    outs, states = foreach(body, x, [h0, c0], name=name)
    return [outs] + states, {"data": (length, batch, 3), "h0": (batch, H), "c0": (batch, H)}, {
        "i2h_weight": (4 * H, 3), "h2h_weight": (4 * H, H),
        "i2h_bias": (4 * H,), "h2h_bias": (4 * H,)}


def gru_cell():
    x, h0 = V("data"), V("h0")
    wi, wh, bi, bh = V("i2h_weight"), V("h2h_weight"), V("i2h_bias"), V("h2h_bias")
    H = 3

    def body(d, st):
        h = st[0]
        xi = mx.sym.SliceChannel(fc(d, wi, bi, 3 * H), num_outputs=3, axis=1)
        hh = mx.sym.SliceChannel(fc(h, wh, bh, 3 * H), num_outputs=3, axis=1)
        r = mx.sym.sigmoid(xi[0] + hh[0])
        z = mx.sym.sigmoid(xi[1] + hh[1])
        n = mx.sym.tanh(xi[2] + r * hh[2])
        h2 = (1 - z) * n + z * h
        return h2, [h2]

    outs, states = foreach(body, x, [h0], name="gru")
    return [outs] + states, {"data": (5, 2, 4), "h0": (2, H)}, {
        "i2h_weight": (3 * H, 4), "h2h_weight": (3 * H, H),
        "i2h_bias": (3 * H,), "h2h_bias": (3 * H,)}


def three_states():
    x = V("data")
    a, b, c = V("a"), V("b"), V("c")

    def body(d, st):
        a, b, c = st
        a2 = a + d
        b2 = b * 0.5 + a2
        c2 = mx.sym.maximum(c, b2)
        return a2 - c2, [a2, b2, c2]

    outs, states = foreach(body, x, [a, b, c], name="three")
    return [outs] + states, {"data": (4, 3), "a": (3,), "b": (3,), "c": (3,)}, {}


def two_data():
    x, y, s = V("x"), V("y"), V("s")

    def body(d, st):
        xx, yy = d
        n = st[0] * xx + yy
        return n, [n]

    outs, states = foreach(body, [x, y], [s], name="twodata")
    return [outs] + states, {"x": (3, 2, 2), "y": (3, 2, 2), "s": (2, 2)}, {}


def two_outputs():
    x, s = V("data"), V("s")

    def body(d, st):
        n = st[0] + d
        return [n * 2, mx.sym.sum(n, axis=1)], [n]

    outs, states = foreach(body, x, [s], name="twoout")
    return list(outs) + states, {"data": (4, 2, 3), "s": (2, 3)}, {}


def states_only():
    x, s, t = V("data"), V("s"), V("t")

    def body(d, st):
        return [], [st[0] + d, st[1] * d]

    outs, states = foreach(body, x, [s, t], name="statesonly")
    return states, {"data": (3, 2), "s": (2,), "t": (2,)}, {}


def length_one():
    x, h0 = V("data"), V("h0")
    w = V("w")

    def body(d, st):
        h = mx.sym.tanh(mx.sym.FullyConnected(d, weight=w, num_hidden=2, no_bias=True) + st[0])
        return h, [h]

    outs, states = foreach(body, x, [h0], name="one")
    return [outs] + states, {"data": (1, 2, 3), "h0": (2, 2)}, {"w": (2, 3)}


def ignores_state():
    x, s, u = V("data"), V("s"), V("u")

    def body(d, st):
        # The second state is carried through unchanged (MXNet refuses a state the body
        # does not reference at all).
        return d * 3, [st[0] + d, st[1]]

    outs, states = foreach(body, x, [s, u], name="ignore")
    return [outs] + states, {"data": (5, 2), "s": (2,), "u": (2,)}, {}


def shared_free_var():
    x, h0, w = V("data"), V("h0"), V("w")

    def body(d, st):
        h = mx.sym.relu(mx.sym.FullyConnected(d, weight=w, num_hidden=3, no_bias=True) - st[0])
        return h, [h]

    outs, states = foreach(body, x, [h0], name="shared")
    # `w` is read outside the loop too.
    after = mx.sym.FullyConnected(states[0], weight=mx.sym.transpose(w), num_hidden=3,
                                  no_bias=True)
    return [outs, after], {"data": (3, 2, 3), "h0": (2, 3)}, {"w": (3, 3)}


def two_loops():
    x, s0, w = V("data"), V("s0"), V("w")

    def first(d, st):
        n = st[0] + d
        return n, [n]

    def second(d, st):
        n = mx.sym.tanh(mx.sym.FullyConnected(d, weight=w, num_hidden=3, no_bias=True) + st[0])
        return n, [n]

    o1, st1 = foreach(first, x, [s0], name="loop_a")
    o2, st2 = foreach(second, o1, [st1[0]], name="loop_b")
    return [o2, st2[0]], {"data": (4, 2, 3), "s0": (2, 3)}, {"w": (3, 3)}


def internal_data():
    """The loop reads a computed tensor (ELMo's reads a transposed projection)."""
    x, h0, w, wp = V("data"), V("h0"), V("w"), V("proj")
    seq = mx.sym.FullyConnected(x, weight=wp, num_hidden=4, no_bias=True, flatten=False)
    seq = mx.sym.transpose(seq, axes=(1, 0, 2))  # (B, T, C) -> (T, B, C)

    def body(d, st):
        h = mx.sym.tanh(mx.sym.FullyConnected(d, weight=w, num_hidden=4, no_bias=True) + st[0])
        return h, [h]

    outs, states = foreach(body, seq, [h0], name="internal")
    return [mx.sym.transpose(outs, axes=(1, 0, 2))] + states, {
        "data": (3, 6, 5), "h0": (3, 4)}, {"w": (4, 4), "proj": (4, 5)}


def zeros_state():
    """Initial states made in the graph (`_zeros`), batch 3."""
    x, w = V("data"), V("w")
    h0 = mx.sym.zeros((3, 2))

    def body(d, st):
        h = mx.sym.sigmoid(mx.sym.FullyConnected(d, weight=w, num_hidden=2, no_bias=True) + st[0])
        return h, [h]

    outs, states = foreach(body, x, [h0], name="zstate")
    return [outs] + states, {"data": (5, 3, 4)}, {"w": (2, 4)}


def running_max():
    x, m = V("data"), V("m")

    def body(d, st):
        n = mx.sym.broadcast_maximum(st[0], d)
        return mx.sym.broadcast_sub(d, n), [n]

    outs, states = foreach(body, x, [m], name="runmax")
    return [outs] + states, {"data": (6, 1, 3), "m": (2, 3)}, {}


def vector_steps():
    """2-D data: each step is a vector."""
    x, s = V("data"), V("s")

    def body(d, st):
        n = mx.sym.sin(d) + st[0] * 0.9
        return n, [n]

    outs, states = foreach(body, x, [s], name="vec")
    return [outs] + states, {"data": (7, 4), "s": (4,)}, {}


def state_is_data():
    """A new state that is the step's data itself, and an output that is a state."""
    x, s, t = V("data"), V("s"), V("t")

    def body(d, st):
        return [st[0], st[1] + d], [d, st[1] + d]

    outs, states = foreach(body, x, [s, t], name="passthru")
    return list(outs) + states, {"data": (4, 3), "s": (3,), "t": (3,)}, {}


def free_var_data_input():
    """A free variable that is a data input of the model, not a parameter."""
    x, s, bias = V("data"), V("s"), V("bias")

    def body(d, st):
        n = mx.sym.broadcast_add(st[0] * d, bias)
        return n, [n]

    outs, states = foreach(body, x, [s], name="freein")
    return [outs] + states, {"data": (3, 2, 2), "s": (2, 2), "bias": (1, 2)}, {}


def elmo_like():
    """ELMo's cell: projected LSTM with clipped cell and state, `_copy` of the output."""
    x, h0, c0 = V("data"), V("h0"), V("c0")
    wi, wh, bi, bh, wp = (V("i2h_weight"), V("h2h_weight"), V("i2h_bias"), V("h2h_bias"),
                          V("h2r_weight"))
    H, P = 4, 3

    def body(d, st):
        h, c = st
        gates = fc(d, wi, bi, 4 * H) + fc(h, wh, bh, 4 * H)
        sl = mx.sym.SliceChannel(gates, num_outputs=4, axis=1)
        i = mx.sym.Activation(sl[0], act_type="sigmoid")
        f = mx.sym.Activation(sl[1], act_type="sigmoid")
        g = mx.sym.Activation(sl[2], act_type="tanh")
        o = mx.sym.Activation(sl[3], act_type="sigmoid")
        c2 = mx.sym.clip(f * c + i * g, -3, 3)
        hidden = o * mx.sym.Activation(c2, act_type="tanh")
        r = mx.sym.clip(mx.sym.FullyConnected(hidden, weight=wp, num_hidden=P, no_bias=True), -3, 3)
        return mx.sym.identity(r), [r, c2]

    outs, states = foreach(body, x, [h0, c0], name="elmo")
    return [outs] + states, {"data": (5, 2, 3), "h0": (2, P), "c0": (2, H)}, {
        "i2h_weight": (4 * H, 3), "h2h_weight": (4 * H, P), "i2h_bias": (4 * H,),
        "h2h_bias": (4 * H,), "h2r_weight": (P, H)}


def gluon_rnn():
    """A Gluon HybridBlock with `F.contrib.foreach`, hybridized and exported."""
    from mxnet.gluon import nn

    class Loop(nn.HybridBlock):
        def __init__(self, **kw):
            super().__init__(**kw)
            with self.name_scope():
                self.i2h = nn.Dense(4, flatten=False, in_units=3)
                self.h2h = nn.Dense(4, flatten=False, in_units=4, use_bias=False)

        def hybrid_forward(self, F, x, h0):
            def body(d, st):
                h = F.tanh(self.i2h(d) + self.h2h(st[0]))
                return h, [h]

            outs, states = F.contrib.foreach(body, x, [h0])
            return outs, states[0]

    return Loop


CASES = {
    "cumsum": cumsum,
    "rnn_tanh": lambda: rnn_cell("tanh"),
    "rnn_relu": lambda: rnn_cell("relu", length=3, batch=1, name="rnnrelu"),
    "rnn_len5_batch3": lambda: rnn_cell("tanh", length=5, batch=3, name="rnn5"),
    "lstm": lstm_cell,
    "lstm_clip_copy": lambda: lstm_cell(length=5, batch=3, clip=True, copy=True, name="lstmc"),
    "gru": gru_cell,
    "three_states": three_states,
    "two_data": two_data,
    "two_outputs": two_outputs,
    "states_only": states_only,
    "length_one": length_one,
    "ignores_state": ignores_state,
    "shared_free_var": shared_free_var,
    "two_loops": two_loops,
    "internal_data": internal_data,
    "zeros_state": zeros_state,
    "running_max": running_max,
    "vector_steps": vector_steps,
    "state_is_data": state_is_data,
    "free_var_data_input": free_var_data_input,
    "elmo_like": elmo_like,
}


def save_case(name, sym, inputs, params, rng):
    outdir = os.path.join(OUT, name)
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    args = {}
    for k, shape in inputs.items():
        args[k] = mx.nd.array(rng.uniform(-1, 1, shape).astype(np.float32))
    weights = {}
    for k, shape in params.items():
        weights[k] = mx.nd.array(rng.uniform(-0.8, 0.8, shape).astype(np.float32))
    ex = sym.bind(mx.cpu(), args={**args, **weights}, grad_req="null")
    outs = ex.forward(is_train=False)
    sym.save(os.path.join(outdir, "model-symbol.json"))
    mx.nd.save(os.path.join(outdir, "model-0000.params"),
               {"arg:" + k: v for k, v in weights.items()})
    for k, v in args.items():
        np.save(os.path.join(outdir, "input-%s.npy" % k), v.asnumpy())
    for k, o in enumerate(outs):
        np.save(os.path.join(outdir, "output-%d.npy" % k), o.asnumpy().astype(np.float32))
    meta = {
        "inputs": [{"name": k, "shape": list(inputs[k])} for k in sym.list_arguments()
                   if k in inputs],
        "outputs": sym.list_outputs(),
    }
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print("%-22s outputs %s" % (name, meta["outputs"]))


def main():
    os.makedirs(OUT, exist_ok=True)
    for k, (name, make) in enumerate(sorted(CASES.items())):
        rng = np.random.RandomState(100 + k)
        mx.random.seed(100 + k)
        heads, inputs, params = make()
        sym = heads[0] if len(heads) == 1 else mx.sym.Group(heads)
        save_case(name, sym, inputs, params, rng)

    # The Gluon block, hybridized and exported (its own names and parameter keys).
    name = "gluon_rnn"
    rng = np.random.RandomState(7)
    mx.random.seed(7)
    net = gluon_rnn()(prefix="loop_")
    net.initialize(mx.init.Uniform(0.8))
    net.hybridize()
    x = mx.nd.array(rng.uniform(-1, 1, (4, 2, 3)).astype(np.float32))
    h0 = mx.nd.array(rng.uniform(-1, 1, (2, 4)).astype(np.float32))
    outs = net(x, h0)
    outdir = os.path.join(OUT, name)
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    net.export(os.path.join(outdir, "model"))
    np.save(os.path.join(outdir, "input-data0.npy"), x.asnumpy())
    np.save(os.path.join(outdir, "input-data1.npy"), h0.asnumpy())
    for k, o in enumerate(outs):
        np.save(os.path.join(outdir, "output-%d.npy" % k), o.asnumpy())
    saved = mx.sym.load(os.path.join(outdir, "model-symbol.json"))
    meta = {
        "inputs": [{"name": "data0", "shape": [4, 2, 3]}, {"name": "data1", "shape": [2, 4]}],
        "outputs": saved.list_outputs(),
    }
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print("%-22s outputs %s" % (name, meta["outputs"]))


if __name__ == "__main__":
    main()
