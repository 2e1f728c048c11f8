#!/usr/bin/env python3
"""MXNet 1.9.1's output names (`Symbol.list_outputs()`) for graphs whose heads are not a
single `_output`: an LSTM and a GRU returning their states, SliceChannel with one and with
three outputs. Writes `tests/fixtures/output_names/<case>-symbol.json`,
`<case>-0000.params` (HybridBlock.export, random weights, fixed seeds) and `expected.json`
(each case's input shape and MXNet's output names, in order).

    .venv-mx/bin/python tools/make_output_name_fixtures.py
"""

import json
import os

import mxnet as mx
import numpy as np
from mxnet import gluon

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "output_names")


class Recurrent(gluon.HybridBlock):
    """A recurrent layer returning its output and its final states."""

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.rnn = layer

    def hybrid_forward(self, F, x):
        out, states = self.rnn(x, self.rnn.begin_state(batch_size=2, func=F.zeros))
        return (out, *states)


class Split(gluon.HybridBlock):
    def __init__(self, outputs, **kwargs):
        super().__init__(**kwargs)
        self.outputs = outputs
        with self.name_scope():
            self.dense = gluon.nn.Dense(6, in_units=4)

    def hybrid_forward(self, F, x):
        parts = F.split(self.dense(x), num_outputs=self.outputs, axis=1)
        return tuple(parts) if self.outputs > 1 else parts


CASES = {
    "lstm_states": (lambda: Recurrent(gluon.rnn.LSTM(4, input_size=3), prefix="lstmnet_"), (5, 2, 3)),
    "gru_states": (lambda: Recurrent(gluon.rnn.GRU(4, input_size=3), prefix="grunet_"), (5, 2, 3)),
    "split_one": (lambda: Split(1, prefix="splitone_"), (2, 4)),
    "split_three": (lambda: Split(3, prefix="splitthree_"), (2, 4)),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    for i, (case, (make, shape)) in enumerate(sorted(CASES.items())):
        mx.random.seed(i)
        np.random.seed(i)
        net = make()
        net.initialize(mx.init.Uniform(0.5))
        net.hybridize()
        net(mx.nd.array(np.random.randn(*shape)))
        prefix = os.path.join(OUT, case)
        net.export(prefix)
        symbol = mx.sym.load(prefix + "-symbol.json")
        expected[case] = {"input": {"name": "data", "shape": list(shape)}, "outputs": symbol.list_outputs()}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"mxnet_version": mx.__version__, "cases": expected}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
