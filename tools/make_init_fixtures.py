#!/usr/bin/env python3
"""Record what MXNet 1.9.1's initializers do to each parameter of two small models, for
ward-train's initializer checks (crates/ward-train/tests/it/init.rs).

Run with the MXNet virtual environment from the repository root:

    .venv-mx/bin/python tools/make_init_fixtures.py

and it writes `tests/fixtures/init/init.json` (a few KB):

* `cases`: for each initializer (its keyword arguments spelled as ward's `InitSpec`), and
  for each model (`lenet`: Convolution/FullyConnected with biases, Module API;
  `batchnorm`: Convolution without bias, BatchNorm with its auxiliary statistics,
  FullyConnected), every parameter's name, shape and outcome after MXNet's own
  `Module.init_params(initializer)`: `zeros`, `ones`, `constant` (with its `value`), or
  `uniform` (with the `bound` MXNet passed to `random.uniform(-bound, bound)`) or `normal`
  (with the `std` MXNet passed to `random.normal(0, std)`);
* `refusals`: parameter names MXNet's initializer refuses (it raises `ValueError`), with
  the message's first words.

The bound and standard deviation are MXNet's own arguments, captured by wrapping the
`random` module `mxnet.initializer` draws through (the values are still drawn by MXNet).
The script checks the draws against them: every uniform value within the bound, the
sample standard deviation of a normal parameter within 20 % of its `std`. Ward's RNG is
not MXNet's, so the bits cannot be compared; the distributions can.

Deterministic: fixed seed, NaiveEngine, one thread.
"""
import json
import os
import warnings

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402

assert mx.__version__ == "1.9.1", mx.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "init")


class Recorder:
    """Stands in for `mxnet.random` inside `mxnet.initializer`: records the arguments of
    each draw and passes it on to MXNet."""

    def __init__(self, real):
        self.real = real
        self.calls = []

    def uniform(self, low, high, shape, out=None, **kw):
        self.calls.append(("uniform", float(low), float(high), tuple(shape)))
        return self.real.uniform(low, high, shape, out=out, **kw)

    def normal(self, loc, scale, shape, out=None, **kw):
        self.calls.append(("normal", float(loc), float(scale), tuple(shape)))
        return self.real.normal(loc, scale, shape, out=out, **kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


def lenet():
    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(data, kernel=(5, 5), num_filter=20, name="conv1")
    x = mx.sym.Activation(x, act_type="tanh")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2))
    x = mx.sym.Convolution(x, kernel=(5, 5), num_filter=50, name="conv2")
    x = mx.sym.Activation(x, act_type="tanh")
    x = mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2))
    x = mx.sym.Flatten(x)
    x = mx.sym.FullyConnected(x, num_hidden=500, name="fc1")
    x = mx.sym.Activation(x, act_type="tanh")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc2")
    return mx.sym.SoftmaxOutput(x, name="softmax"), (2, 1, 28, 28)


def batchnorm():
    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(data, kernel=(3, 3), num_filter=32, no_bias=True, name="conv0")
    x = mx.sym.BatchNorm(x, fix_gamma=False, name="bn0")
    x = mx.sym.Activation(x, act_type="relu")
    x = mx.sym.Flatten(x)
    x = mx.sym.FullyConnected(x, num_hidden=64, name="fc0")
    x = mx.sym.BatchNorm(x, name="bn1")
    x = mx.sym.FullyConnected(x, num_hidden=10, name="fc1")
    return mx.sym.SoftmaxOutput(x, name="softmax"), (2, 3, 16, 16)


MODELS = {"lenet": lenet, "batchnorm": batchnorm}

# (ward's InitSpec, the MXNet initializer)
INITS = [
    ({"name": "xavier"}, lambda: mx.init.Xavier()),
    ({"name": "xavier", "rnd_type": "gaussian", "factor_type": "in", "magnitude": 2.0},
     lambda: mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)),
    ({"name": "xavier", "factor_type": "out", "magnitude": 2.34},
     lambda: mx.init.Xavier(factor_type="out", magnitude=2.34)),
    ({"name": "uniform"}, lambda: mx.init.Uniform()),
    ({"name": "uniform", "scale": 0.1}, lambda: mx.init.Uniform(0.1)),
    ({"name": "normal"}, lambda: mx.init.Normal()),
    ({"name": "normal", "sigma": 0.5}, lambda: mx.init.Normal(0.5)),
    ({"name": "msra_prelu"}, lambda: mx.init.MSRAPrelu()),
    ({"name": "msra_prelu", "factor_type": "out", "slope": 0.1},
     lambda: mx.init.MSRAPrelu(factor_type="out", slope=0.1)),
    ({"name": "zero"}, lambda: mx.init.Zero()),
    ({"name": "one"}, lambda: mx.init.One()),
    ({"name": "constant", "value": 0.3}, lambda: mx.init.Constant(0.3)),
]


def outcome(name, arr, calls):
    """What happened to one parameter: the recorded draw for it, checked against the
    values, or the constant it holds."""
    draws = calls
    flat = arr.ravel()
    if np.all(flat == 0):
        return {"outcome": "zeros"}
    if np.all(flat == 1):
        return {"outcome": "ones"}
    if np.all(flat == flat[0]):
        return {"outcome": "constant", "value": float(flat[0])}
    assert len(draws) >= 1, (name, calls)
    kind, a, b, _ = draws[0]
    if kind == "uniform":
        assert a == -b, (name, a, b)
        assert np.all(np.abs(flat) <= np.float32(b)), name
        return {"outcome": "uniform", "bound": b}
    assert a == 0.0, (name, a)
    if flat.size >= 400:
        assert abs(flat.std() / b - 1) < 0.2, (name, flat.std(), b)
    return {"outcome": "normal", "std": b}


def run_case(make_sym, make_init):
    sym, data_shape = make_sym()
    mod = mx.mod.Module(sym, data_names=["data"], label_names=["softmax_label"],
                        context=mx.cpu())
    mod.bind(data_shapes=[("data", data_shape)],
             label_shapes=[("softmax_label", (data_shape[0],))])
    recorder = Recorder(mx.initializer.random)
    mx.initializer.random = recorder
    try:
        mod.init_params(initializer=make_init())
    finally:
        mx.initializer.random = recorder.real
    args, auxs = mod.get_params()
    params = []
    # Every parameter in the symbol's order (arguments, then auxiliary states), the
    # order ward's importer keeps.
    for name in sym.list_arguments() + sym.list_auxiliary_states():
        arr = (args.get(name) if name in args else auxs.get(name))
        if arr is None:
            continue  # data and label
        arr = arr.asnumpy()
        # Draws are matched to parameters by order and shape: MXNet initializes the
        # parameters one by one, one draw per random parameter.
        entry = {"name": name, "shape": list(arr.shape)}
        entry.update(outcome(name, arr, _pop_draw(recorder, arr.shape)))
        params.append(entry)
    return params


def _pop_draw(recorder, shape):
    """The first not yet matched draw of this shape (MXNet draws in parameter order)."""
    for i, c in enumerate(recorder.calls):
        if c[3] == tuple(shape):
            return [recorder.calls.pop(i)]
    return []


def refusals():
    out = []
    for name in ["prelu0_alpha", "embed", "fc_weights"]:
        arr = mx.nd.zeros((2, 2))
        try:
            mx.init.Xavier()(mx.init.InitDesc(name), arr)
        except ValueError as e:
            out.append({"name": name, "message": str(e)[:60]})
        else:
            raise AssertionError(f"MXNet accepted {name}")
    return out


def main():
    mx.random.seed(20240917)
    np.random.seed(20240917)
    warnings.simplefilter("ignore")
    cases = []
    for spec, make_init in INITS:
        models = {}
        for model, make_sym in MODELS.items():
            models[model] = run_case(make_sym, make_init)
        cases.append({"spec": spec, "models": models})
    os.makedirs(OUT, exist_ok=True)
    doc = {"mxnet_version": mx.__version__, "cases": cases, "refusals": refusals()}
    path = os.path.join(OUT, "init.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} initializers x {len(MODELS)} models")


if __name__ == "__main__":
    main()
