#!/usr/bin/env python3
"""Generate one-operator reference fixtures with real Apache MXNet 1.9.1.

Run with the MXNet virtual environment from the repository root:

    .venv-mx/bin/python tools/make_op_fixtures.py                 # all cases
    .venv-mx/bin/python tools/make_op_fixtures.py conv2d_k3 rnn_  # names starting so
    .venv-mx/bin/python tools/make_op_fixtures.py --list          # list the cases

For every case it writes `tests/fixtures/ops/<case>/` in the layout of
`tests/fixtures/models/<name>/` (see tools/README.md):

* `model-symbol.json`: `sym.tojson()` of a symbol with ONE operator node; its
  data inputs and parameters are variables;
* `model-0000.params`: the parameters (`arg:` keys) and auxiliary states
  (`aux:` keys), written by `mx.nd.save`;
* `input-<name>.npy`: one float32 array per data input (labels included, as
  `ignored_inputs`);
* `output-<k>.npy`: float32 output k (the order of `sym.list_outputs()`);
* `meta.json`: inputs (name, dtype, shape), outputs, the operator and its attrs
  as stored in the JSON, notes; training-mode cases also have `is_train` and
  `updated_aux` (see below).

and `tests/fixtures/ops/index.json`, the list of every case with its op and attrs.

Inference cases run `forward(is_train=False)`. BatchNorm training cases
(`is_train: true` in meta.json) run `forward(is_train=True)` and then
`backward()` with a head gradient of ones: MXNet 1.9.1 updates the moving
statistics in the BACKWARD pass, not the forward one, so the moving mean and
variance a training step leaves behind are only visible after it. They are
written as `aux-<name>.npy` and listed in `updated_aux`.

Determinism: every case has a fixed seed derived from its name; MXNet runs with
`MXNET_ENGINE_TYPE=NaiveEngine` and `OMP_NUM_THREADS=1`, and with
`MXNET_SUBGRAPH_BACKEND=NONE`: the default oneDNN (MKLDNN) subgraph pass of the
pip build fuses some operator patterns and computes wrong numbers for some of
them, so these fixtures record MXNet's operators themselves, unfused. The
variables are set before mxnet is imported. Two runs write identical bytes.
"""

import hashlib
import json
import os
import shutil
import sys

# Must be set before mxnet is imported.
os.environ["MXNET_ENGINE_TYPE"] = "NaiveEngine"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
os.environ.setdefault("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_ROOT = os.path.join(ROOT, "tests", "fixtures", "ops")

F32_MIN = float(np.finfo(np.float32).min)


def seed_for(name):
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % (2 ** 31)


# ----------------------------------------------------------------------------
# case definitions
# ----------------------------------------------------------------------------

CASES = []


def case(name, op, attrs=None, data=None, labels=(), shapes=None, values=None,
         build=None, notes="", train=False, head=None, dtypes=None):
    """Registers a case.

    op:     the mx.sym function (a name under mx.sym or mx.sym._internal).
    attrs:  keyword attributes passed to it.
    data:   ordered [(name, shape)] of data inputs, passed positionally unless
            `build` is given; every other argument the operator creates
            (weights, biases, gamma, …) becomes a parameter.
    labels: names of data inputs that are labels (read by no forward pass).
    shapes: {param name: shape} for parameters infer_shape cannot decide.
    values: {name: function(rng, shape) -> array} for non-default values.
    build:  function(var) -> symbol, when positional data is not enough.
    head:   keep only this output of the operator (sym[head]).
    dtypes: {data input name: dtype} for inputs MXNet takes in another type than
            float32 (softmax's integer lengths); their .npy is written in that type.
    """
    assert not any(c["name"] == name for c in CASES), name
    CASES.append(dict(name=name, op=op, attrs=attrs or {}, data=data or [],
                      labels=list(labels), shapes=shapes or {},
                      values=values or {}, build=build, notes=notes,
                      train=train, head=head, dtypes=dtypes or {}))


def special(*vals):
    """Data holding the given values first, then normals."""
    def f(rng, shape):
        a = rng.normal(0, 1, size=shape).astype(np.float32)
        flat = a.reshape(-1)
        for i, v in enumerate(vals):
            flat[i * 3 % flat.size] = v
        return a
    return f


def uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, size=shape)


def scaled(s):
    return lambda rng, shape: rng.normal(0, s, size=shape)


def token_ids(input_dim):
    def f(rng, shape):
        a = rng.randint(0, input_dim, size=shape).astype(np.float32)
        flat = a.reshape(-1)
        extras = [-3, input_dim, input_dim + 5, 2.7, -0.5, input_dim - 0.5, 1.2]
        for i, v in enumerate(extras[:flat.size]):
            flat[i] = v
        return a
    return f


def labels_for(classes):
    return lambda rng, shape: rng.randint(0, classes, size=shape)


def labels_with(classes, every_third):
    """Labels in [0, classes) with every third one set to `every_third` (an ignored
    label, for the loss heads' gradients)."""
    def f(rng, shape):
        a = rng.randint(0, classes, size=shape).astype(np.float32)
        a.reshape(-1)[::3] = every_third
        return a
    return f


# --- Convolution -------------------------------------------------------------
case("conv1d_k3", "Convolution", dict(kernel=(3,), num_filter=4), [("data", (2, 3, 8))])
case("conv1d_s2_p1_d2_nobias", "Convolution",
     dict(kernel=(3,), stride=(2,), pad=(1,), dilate=(2,), num_filter=4, no_bias=True),
     [("data", (2, 3, 9))])
case("conv1d_groups2_s2", "Convolution",
     dict(kernel=(3,), stride=(2,), num_group=2, num_filter=6), [("data", (2, 4, 9))])
case("conv2d_k3", "Convolution", dict(kernel=(3, 3), num_filter=4), [("data", (2, 3, 7, 7))])
case("conv2d_1x1", "Convolution", dict(kernel=(1, 1), num_filter=5), [("data", (2, 3, 4, 5))])
case("conv2d_k3_s2_p1", "Convolution",
     dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), num_filter=4), [("data", (1, 3, 8, 7))])
case("conv2d_asymmetric", "Convolution",
     dict(kernel=(1, 3), stride=(2, 1), pad=(0, 1), dilate=(1, 2), num_filter=3),
     [("data", (2, 2, 6, 7))], notes="kernel 1x3, stride (2,1), pad (0,1), dilate (1,2)")
case("conv2d_dilate2_p2", "Convolution",
     dict(kernel=(3, 3), dilate=(2, 2), pad=(2, 2), num_filter=3), [("data", (1, 2, 7, 6))])
case("conv2d_groups2", "Convolution",
     dict(kernel=(3, 3), pad=(1, 1), num_group=2, num_filter=6), [("data", (2, 4, 5, 5))])
case("conv2d_depthwise", "Convolution",
     dict(kernel=(3, 3), pad=(1, 1), num_group=4, num_filter=4), [("data", (2, 4, 5, 5))])
case("conv2d_depthwise_multiplier2", "Convolution",
     dict(kernel=(3, 3), stride=(2, 2), num_group=3, num_filter=6), [("data", (1, 3, 7, 7))])
case("conv2d_nobias_layout", "Convolution",
     dict(kernel=(2, 2), num_filter=4, no_bias=True, layout="NCHW"), [("data", (2, 3, 5, 4))])
case("conv2d_k2_s3", "Convolution",
     dict(kernel=(2, 2), stride=(3, 3), num_filter=2), [("data", (1, 2, 8, 9))],
     notes="stride larger than the kernel: skipped input rows")
case("conv2d_8ch", "Convolution",
     dict(kernel=(3, 3), pad=(1, 1), num_filter=8), [("data", (1, 8, 5, 5))],
     notes="8 in/out channels: oneDNN's blocked layouts")
case("conv3d_k3_p1", "Convolution",
     dict(kernel=(3, 3, 3), pad=(1, 1, 1), num_filter=3), [("data", (1, 2, 4, 5, 4))])
case("conv3d_groups_strided", "Convolution",
     dict(kernel=(2, 3, 2), stride=(2, 1, 2), dilate=(1, 2, 1), pad=(1, 0, 1),
          num_group=2, num_filter=4),
     [("data", (1, 4, 5, 7, 5))])

# --- Deconvolution -----------------------------------------------------------
case("deconv1d_k3", "Deconvolution", dict(kernel=(3,), num_filter=4), [("data", (2, 3, 5))],
     notes="no_bias defaults to true for Deconvolution")
case("deconv1d_s2_p1_adj1_bias", "Deconvolution",
     dict(kernel=(3,), stride=(2,), pad=(1,), adj=(1,), num_filter=2, no_bias=False),
     [("data", (2, 3, 5))])
case("deconv2d_k3", "Deconvolution", dict(kernel=(3, 3), num_filter=2), [("data", (2, 3, 4, 4))])
case("deconv2d_s2_p1_adj1", "Deconvolution",
     dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), adj=(1, 1), num_filter=3, no_bias=False),
     [("data", (1, 2, 4, 3))])
case("deconv2d_dilate_asym", "Deconvolution",
     dict(kernel=(2, 3), stride=(1, 2), dilate=(2, 1), pad=(1, 0), adj=(0, 1), num_filter=2),
     [("data", (1, 3, 4, 5))])
case("deconv2d_groups2_bias", "Deconvolution",
     dict(kernel=(3, 3), stride=(2, 2), num_group=2, num_filter=6, no_bias=False),
     [("data", (2, 4, 3, 3))])
case("deconv2d_depthwise_k4_s2", "Deconvolution",
     dict(kernel=(4, 4), stride=(2, 2), pad=(1, 1), num_group=4, num_filter=4),
     [("data", (1, 4, 3, 3))], notes="the usual bilinear-upsampling shape")
case("deconv3d_k2_s2_bias", "Deconvolution",
     dict(kernel=(2, 2, 2), stride=(2, 2, 2), num_filter=3, no_bias=False),
     [("data", (1, 2, 3, 2, 3))])
case("deconv3d_p1_adj1_groups", "Deconvolution",
     dict(kernel=(3, 3, 3), stride=(2, 2, 2), pad=(1, 1, 1), adj=(1, 0, 1), num_group=2,
          num_filter=4),
     [("data", (1, 2, 2, 3, 2))])

# --- FullyConnected ----------------------------------------------------------
case("fc_2d", "FullyConnected", dict(num_hidden=7), [("data", (4, 10))])
case("fc_flatten_4d", "FullyConnected", dict(num_hidden=6), [("data", (2, 3, 2, 2))])
case("fc_noflatten_3d", "FullyConnected", dict(num_hidden=4, flatten=False), [("data", (2, 3, 5))])
case("fc_noflatten_4d_nobias", "FullyConnected",
     dict(num_hidden=3, flatten=False, no_bias=True), [("data", (2, 2, 3, 4))])
case("fc_nobias", "FullyConnected", dict(num_hidden=5, no_bias=True), [("data", (3, 6))])

# --- Pooling -----------------------------------------------------------------
for kind in ("max", "avg", "sum"):
    case("pool2d_%s_k2s2" % kind, "Pooling", dict(kernel=(2, 2), stride=(2, 2), pool_type=kind),
         [("data", (2, 3, 6, 6))])
    case("pool2d_%s_k3s1p1" % kind, "Pooling",
         dict(kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type=kind), [("data", (1, 2, 5, 4))],
         notes="overlapping, padded windows")
    case("pool2d_%s_k3s2_full" % kind, "Pooling",
         dict(kernel=(3, 3), stride=(2, 2), pool_type=kind, pooling_convention="full"),
         [("data", (1, 2, 8, 7))], notes="full: the last window is clipped by the input end")
    case("pool1d_%s_k3s2p1_full" % kind, "Pooling",
         dict(kernel=(3,), stride=(2,), pad=(1,), pool_type=kind, pooling_convention="full"),
         [("data", (2, 3, 8))])
    case("pool3d_%s_k2s2p1" % kind, "Pooling",
         dict(kernel=(2, 2, 2), stride=(2, 2, 2), pad=(1, 1, 1), pool_type=kind),
         [("data", (1, 2, 4, 5, 3))])
    case("pool3d_%s_k3s2_full" % kind, "Pooling",
         dict(kernel=(3, 2, 3), stride=(2, 2, 2), pool_type=kind, pooling_convention="full"),
         [("data", (1, 2, 6, 5, 6))])
    for nd, shape in ((1, (2, 3, 7)), (2, (2, 3, 4, 5)), (3, (1, 2, 3, 4, 3))):
        case("pool%dd_%s_global" % (nd, kind), "Pooling",
             dict(kernel=(1,) * nd, global_pool=True, pool_type=kind), [("data", shape)])
for cip in (True, False):
    tag = "cip" if cip else "nocip"
    case("pool2d_avg_k3s2p1_%s" % tag, "Pooling",
         dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg", count_include_pad=cip),
         [("data", (2, 2, 6, 5))])
    case("pool2d_avg_k3s2p1_full_%s" % tag, "Pooling",
         dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg",
              pooling_convention="full", count_include_pad=cip),
         [("data", (1, 3, 8, 8))],
         notes="full with pad: the last window runs past the padded end and is clipped to it")
    case("pool1d_avg_k4s3p2_full_%s" % tag, "Pooling",
         dict(kernel=(4,), stride=(3,), pad=(2,), pool_type="avg", pooling_convention="full",
              count_include_pad=cip),
         [("data", (1, 2, 9))])
    case("pool3d_avg_k3s2p1_full_%s" % tag, "Pooling",
         dict(kernel=(3, 3, 3), stride=(2, 2, 2), pad=(1, 1, 1), pool_type="avg",
              pooling_convention="full", count_include_pad=cip),
         [("data", (1, 2, 4, 5, 4))])
case("pool2d_avg_asym_k2x3", "Pooling",
     dict(kernel=(2, 3), stride=(1, 2), pad=(1, 0), pool_type="avg"), [("data", (1, 2, 4, 7))])
case("pool2d_max_default_stride", "Pooling", dict(kernel=(2, 2)), [("data", (1, 2, 4, 4))],
     notes="pool_type and stride left at their defaults (max, 1)")
case("pool2d_max_global_full_kernel_ignored", "Pooling",
     dict(kernel=(2, 2), stride=(2, 2), global_pool=True, pooling_convention="full"),
     [("data", (2, 3, 5, 3))], notes="global_pool ignores kernel, stride and the convention")
case("pool2d_max_nan_8ch", "Pooling", dict(kernel=(2, 2), stride=(2, 2), pool_type="max"),
     [("data", (1, 8, 4, 4))],
     values={"data": special(np.nan, np.nan, -np.inf, np.nan, np.nan, np.nan, np.nan, np.nan)},
     notes="NaN inputs are skipped by max pooling; -inf never comes out (8 channels: oneDNN)")
case("pool1d_max_nan", "Pooling", dict(kernel=(2,), stride=(2,), pool_type="max"),
     [("data", (1, 1, 6))],
     values={"data": lambda rng, shape: np.array(
         [np.nan, 1.0, 2.0, np.nan, np.nan, -np.inf]).reshape(shape)},
     notes="[nan 1 | 2 nan | nan -inf] -> [1, 2, -3.4028235e38]")
case("pool1d_max_empty_window_full", "Pooling",
     dict(kernel=(2,), stride=(3,), pad=(1,), pool_type="max", pooling_convention="full"),
     [("data", (1, 2, 5))],
     notes="the last full window lies entirely in the padding: MXNet gives -3.4028235e38")
case("pool2d_sum_empty_window_full", "Pooling",
     dict(kernel=(2, 2), stride=(3, 3), pad=(1, 1), pool_type="sum", pooling_convention="full"),
     [("data", (1, 1, 5, 5))], notes="windows wholly in the padding sum to 0")
case("pool2d_avg_nan", "Pooling", dict(kernel=(2, 2), stride=(2, 2), pool_type="avg"),
     [("data", (1, 1, 4, 4))], values={"data": special(np.nan)}, notes="avg propagates NaN")

# --- BatchNorm ---------------------------------------------------------------
case("bn_defaults", "BatchNorm", {}, [("data", (2, 3, 4, 4))],
     notes="all defaults: fix_gamma true (gamma read as 1), eps 1e-3")
case("bn_gamma_eps1e-5", "BatchNorm", dict(fix_gamma=False, eps=1e-5), [("data", (2, 3, 3, 2))])
case("bn_axis_last", "BatchNorm", dict(fix_gamma=False, axis=-1), [("data", (2, 3, 4))])
case("bn_axis0", "BatchNorm", dict(fix_gamma=False, axis=0), [("data", (3, 2, 2))])
case("bn_2d", "BatchNorm", dict(fix_gamma=False, eps=0.01), [("data", (4, 5))])
case("bn_8ch", "BatchNorm", dict(fix_gamma=False, eps=1e-5), [("data", (2, 8, 3, 3))],
     notes="8 channels, 4-D, axis 1: the oneDNN path")
case("bn_5d", "BatchNorm", dict(fix_gamma=False), [("data", (1, 3, 2, 3, 2))])
case("bn_global_stats_momentum", "BatchNorm",
     dict(fix_gamma=False, use_global_stats=True, momentum=0.7), [("data", (2, 3, 2, 2))],
     notes="at inference use_global_stats and momentum change nothing")
case("bn_output_mean_var", "BatchNorm", dict(fix_gamma=False, output_mean_var=True),
     [("data", (2, 3, 2, 2))],
     notes="at inference the extra outputs are the moving mean and 1/sqrt(moving_var + eps) "
           "(not the variance)")
case("bn_train_defaults", "BatchNorm", {}, [("data", (4, 3, 2, 2))], train=True,
     notes="training step: batch statistics, moving stats updated with momentum 0.9 "
           "(fix_gamma true)")
case("bn_train_gamma_momentum", "BatchNorm",
     dict(fix_gamma=False, momentum=0.8, eps=1e-5, output_mean_var=True),
     [("data", (3, 4, 2, 3))], train=True,
     notes="outputs: y, batch mean, 1/sqrt(batch var + eps); moving var takes the BIASED "
           "batch variance")
case("bn_train_axis_last", "BatchNorm", dict(fix_gamma=False, axis=-1, momentum=0.5),
     [("data", (3, 2, 4))], train=True)
case("bn_train_global_stats", "BatchNorm", dict(fix_gamma=False, use_global_stats=True),
     [("data", (2, 3, 2, 2))], train=True,
     notes="use_global_stats: moving stats used and left unchanged in training")
case("bn_train_8ch", "BatchNorm", dict(fix_gamma=False, momentum=0.9),
     [("data", (2, 8, 2, 3))], train=True, notes="oneDNN path in training")

# --- InstanceNorm, LayerNorm, GroupNorm --------------------------------------
case("instancenorm_default_eps", "InstanceNorm", {}, [("data", (2, 3, 4, 4))],
     notes="eps defaults to 1e-3")
case("instancenorm_3d_eps1e-5", "InstanceNorm", dict(eps=1e-5), [("data", (2, 4, 5))])
case("instancenorm_5d", "InstanceNorm", dict(eps=1e-5), [("data", (1, 2, 3, 2, 3))])
case("layernorm_default", "LayerNorm", {}, [("data", (2, 3, 6))], notes="axis -1, eps 1e-5")
case("layernorm_axis1", "LayerNorm", dict(axis=1, eps=1e-3), [("data", (2, 4, 3, 2))])
case("layernorm_axis0_2d", "LayerNorm", dict(axis=0), [("data", (5, 3))])
case("groupnorm_default", "GroupNorm", {}, [("data", (2, 4, 3, 3))],
     notes="num_groups 1; gamma/beta have shape (num_groups,) in 1.9.1")
case("groupnorm_2groups", "GroupNorm", dict(num_groups=2, eps=1e-3), [("data", (2, 6, 2, 3))])
case("groupnorm_per_channel_3d", "GroupNorm", dict(num_groups=4), [("data", (2, 4, 5))])
case("groupnorm_5d", "GroupNorm", dict(num_groups=2), [("data", (1, 4, 2, 2, 3))])

# --- Activation, LeakyReLU, Dropout -------------------------------------------
for act in ("relu", "sigmoid", "tanh", "softrelu", "softsign"):
    case("activation_%s" % act, "Activation", dict(act_type=act), [("data", (2, 3, 4))],
         values={"data": scaled(3.0)} if act != "softrelu" else
         {"data": special(25.0, -30.0, 19.5, 20.5)},
         notes="softrelu: x > 20 returns x" if act == "softrelu" else "")
case("activation_relu_nan_8ch", "Activation", dict(act_type="relu"), [("data", (1, 8, 2, 2))],
     values={"data": special(np.nan, -np.inf, np.inf, np.nan)},
     notes="Activation(relu) maps NaN to 0 (the relu operator keeps it)")
case("leaky_default", "LeakyReLU", {}, [("data", (2, 3, 4))], notes="leaky, slope 0.25")
case("leaky_slope0.1", "LeakyReLU", dict(act_type="leaky", slope=0.1), [("data", (3, 5))])
case("elu_default", "LeakyReLU", dict(act_type="elu"), [("data", (2, 3, 4))],
     notes="elu's slope also defaults to 0.25")
case("elu_slope0.5", "LeakyReLU", dict(act_type="elu", slope=0.5), [("data", (4, 4))])
case("prelu_per_channel", "LeakyReLU", dict(act_type="prelu"), [("data", (2, 3, 4))],
     values={"op_gamma": uniform(0.05, 0.5)})
case("prelu_one_slope_4d", "LeakyReLU", dict(act_type="prelu"), [("data", (2, 3, 2, 2))],
     shapes={"op_gamma": (1,)}, values={"op_gamma": uniform(0.05, 0.5)},
     notes="gamma of shape (1,), as Gluon's PReLU stores it")
case("prelu_per_channel_2d", "LeakyReLU", dict(act_type="prelu"), [("data", (4, 3))],
     values={"op_gamma": uniform(0.05, 0.5)})
case("selu", "LeakyReLU", dict(act_type="selu"), [("data", (2, 3, 4))],
     values={"data": scaled(2.0)})
case("gelu", "LeakyReLU", dict(act_type="gelu"), [("data", (2, 3, 4))],
     values={"data": scaled(2.5)}, notes="the erf form")
case("rrelu_inference", "LeakyReLU", dict(act_type="rrelu"), [("data", (2, 3, 4))], head=0,
     notes="inference: slope (0.125 + 0.334)/2; only output 0 (rrelu also has a mask output)")
case("rrelu_bounds", "LeakyReLU", dict(act_type="rrelu", lower_bound=0.2, upper_bound=0.6),
     [("data", (3, 4))], head=0)
case("dropout_inference", "Dropout", dict(p=0.5), [("data", (3, 4))],
     notes="identity at inference")
case("dropout_always_p0", "Dropout", dict(p=0.0, mode="always"), [("data", (2, 5))],
     notes="mode always with p 0: identity")

# --- softmax family ----------------------------------------------------------
case("softmax_default", "softmax", {}, [("data", (2, 3, 5))], values={"data": scaled(3.0)})
case("softmax_axis1", "softmax", dict(axis=1), [("data", (2, 4, 3))])
case("softmax_axis0_temperature2", "softmax", dict(axis=0, temperature=2.0), [("data", (3, 4))])
case("softmax_axis-2_temperature0.5", "softmax", dict(axis=-2, temperature=0.5),
     [("data", (2, 3, 2, 2))])
case("log_softmax_default", "log_softmax", {}, [("data", (3, 6))], values={"data": scaled(4.0)})
case("log_softmax_axis1_temperature3", "log_softmax", dict(axis=1, temperature=3.0),
     [("data", (2, 5, 2))])
case("softmaxoutput_flatten_4d", "SoftmaxOutput", {},
     [("data", (2, 3, 2, 2)), ("op_label", (2, 3, 2))], labels=["op_label"],
     values={"op_label": labels_for(2)},
     notes="default mode on 4-D data: MXNet's oneDNN kernel normalises over the LAST axis "
           "(its own CPU kernel would flatten); the label has the data's shape without its "
           "last axis")
case("softmaxoutput_flatten_3d", "SoftmaxOutput", {},
     [("data", (2, 3, 4)), ("op_label", (2, 3))], labels=["op_label"],
     values={"op_label": labels_for(4)},
     notes="default mode on 3-D data: softmax over all axes after the first")
case("softmaxoutput_2d", "SoftmaxOutput", dict(grad_scale=2.0, normalization="batch"),
     [("data", (3, 5)), ("op_label", (3,))], labels=["op_label"],
     values={"op_label": labels_for(5)}, notes="training-only attributes set")
case("softmaxoutput_multi_output", "SoftmaxOutput", dict(multi_output=True),
     [("data", (2, 3, 4)), ("op_label", (2, 4))], labels=["op_label"],
     values={"op_label": labels_for(3)}, notes="softmax over axis 1")
case("softmaxoutput_preserve_shape", "SoftmaxOutput", dict(preserve_shape=True),
     [("data", (2, 3, 4)), ("op_label", (2, 3))], labels=["op_label"],
     values={"op_label": labels_for(4)}, notes="softmax over the last axis")
case("softmaxoutput_multi_and_preserve", "SoftmaxOutput",
     dict(multi_output=True, preserve_shape=True),
     [("data", (2, 3, 4)), ("op_label", (2, 4))], labels=["op_label"],
     values={"op_label": labels_for(3)}, notes="multi_output wins")
# The loss settings below change only the gradient (tools/make_grad_fixtures.py).
case("softmaxoutput_valid_ignore", "SoftmaxOutput",
     dict(use_ignore=True, ignore_label=1, normalization="valid", grad_scale=1.5),
     [("data", (6, 4)), ("op_label", (6,))], labels=["op_label"],
     values={"op_label": labels_with(4, 1)},
     notes="gradient: rows of ignored labels zero, divided by the labels not ignored")
case("softmaxoutput_valid_without_use_ignore", "SoftmaxOutput",
     dict(ignore_label=2, normalization="valid"),
     [("data", (6, 3)), ("op_label", (6,))], labels=["op_label"],
     values={"op_label": labels_with(3, 2)},
     notes="gradient: ignore_label without use_ignore still lowers the valid count")
case("softmaxoutput_smooth_alpha", "SoftmaxOutput", dict(smooth_alpha=0.2),
     [("data", (3, 5)), ("op_label", (3,))], labels=["op_label"],
     values={"op_label": labels_for(5)}, notes="gradient: label smoothing")
case("softmaxoutput_out_grad", "SoftmaxOutput", dict(out_grad=True),
     [("data", (3, 4)), ("op_label", (3,))], labels=["op_label"],
     values={"op_label": labels_for(4)}, notes="gradient: times the head gradient")
case("softmaxoutput_multi_output_batch", "SoftmaxOutput",
     dict(multi_output=True, normalization="batch"),
     [("data", (2, 3, 4)), ("op_label", (2, 4))], labels=["op_label"],
     values={"op_label": labels_for(3)}, notes="gradient: multi_output, batch")
case("softmaxoutput_multi_output_valid", "SoftmaxOutput",
     dict(multi_output=True, normalization="valid", use_ignore=True, ignore_label=0),
     [("data", (2, 3, 4)), ("op_label", (2, 4))], labels=["op_label"],
     values={"op_label": labels_with(3, 0)}, notes="gradient: multi_output, valid")
case("softmaxoutput_preserve_shape_batch", "SoftmaxOutput",
     dict(preserve_shape=True, normalization="batch"),
     [("data", (2, 3, 4)), ("op_label", (2, 3))], labels=["op_label"],
     values={"op_label": labels_for(4)}, notes="gradient: preserve_shape, batch")

# --- element-wise ------------------------------------------------------------
for op in ("elemwise_add", "elemwise_sub", "elemwise_mul", "elemwise_div"):
    case(op, op, {}, [("lhs", (2, 3, 4)), ("rhs", (2, 3, 4))],
         values={"rhs": uniform(0.5, 2.0)} if op.endswith("div") else {})
case("maximum_nan", "_internal._maximum", {}, [("lhs", (3, 4)), ("rhs", (3, 4))],
     values={"lhs": special(np.nan, 1.0), "rhs": special(0.0, np.nan)},
     notes="_maximum: NaN in either operand gives NaN")
case("minimum_nan", "_internal._minimum", {}, [("lhs", (3, 4)), ("rhs", (3, 4))],
     values={"lhs": special(np.nan, 1.0), "rhs": special(0.0, np.nan)})
for op, a, b in (("broadcast_add", (2, 3, 4), (1, 3, 1)),
                 ("broadcast_sub", (2, 1, 4), (3, 1)),
                 ("broadcast_mul", (3, 1), (2, 1, 4)),
                 ("broadcast_div", (2, 3, 4), (4,)),
                 ("broadcast_maximum", (2, 3), (1, 3)),
                 ("broadcast_minimum", (4, 1, 2), (1, 3, 1)),
                 ("broadcast_plus", (2, 3), (2, 3)),
                 ("broadcast_minus", (1,), (2, 3))):
    case("%s_%s_%s" % (op, "x".join(map(str, a)), "x".join(map(str, b))), op, {},
         [("lhs", a), ("rhs", b)],
         values={"rhs": uniform(0.5, 2.0)} if op.endswith("div") else {})
case("add_n_3", "add_n", {}, [("a", (2, 3)), ("b", (2, 3)), ("c", (2, 3))])
case("elementwisesum_2", "ElementWiseSum", {}, [("a", (4,)), ("b", (4,))],
     notes="the alias, stored as add_n")
for op, s in (("_plus_scalar", 2.5), ("_minus_scalar", -1.5), ("_rminus_scalar", 3.0),
              ("_mul_scalar", 0.7), ("_div_scalar", 4.0), ("_rdiv_scalar", 2.0)):
    case(op, "_internal." + op, dict(scalar=s), [("data", (2, 3))],
         values={"data": uniform(0.5, 3.0)} if op == "_rdiv_scalar" else {})
for op in ("relu", "sigmoid", "tanh", "exp", "log", "sqrt", "abs", "negative"):
    case("unary_" + op, op, {}, [("data", (2, 5))],
         values={"data": uniform(0.1, 4.0)} if op in ("log", "sqrt") else {"data": scaled(2.0)})
case("unary_relu_nan", "relu", {}, [("data", (2, 3))], values={"data": special(np.nan, -np.inf)},
     notes="the relu operator keeps NaN")
case("unary_log_sqrt_domain", "log", {}, [("data", (3,))],
     values={"data": lambda rng, shape: np.array([-1.0, 0.0, 2.0])},
     notes="log(-1) = NaN, log(0) = -inf")
case("clip_relu6", "clip", dict(a_min=0.0, a_max=6.0), [("data", (2, 6))],
     values={"data": scaled(5.0)})
case("clip_nan", "clip", dict(a_min=-0.5, a_max=0.5), [("data", (3, 3))],
     values={"data": special(np.nan, np.inf, -np.inf)}, notes="NaN passes through clip")

# --- comparison, logic and where (issue 20) ------------------------------------
# MXNet gives 1 or 0 in the data's dtype. Values come from a small set so that ties
# (==, >=, <=) happen, with NaN, ±inf and -0 mixed in; scalars are integers, negative
# and fractional (and cast to float32 by MXNet before comparing: 0.1 against the float32
# nearest 0.1, 1e300 against +inf). Shapes and broadcasting from their own fixed-seed
# generator, so that no other case's attributes move.
_cmp_rng = np.random.RandomState(2020)
_TIES = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
_ODD = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32)


def ties(extra=(), odd=True):
    """Values drawn from a small set (plus `extra`), with NaN, ±inf and -0 at a few
    places when `odd`."""
    pool = np.concatenate([_TIES, np.asarray(extra, dtype=np.float32)])

    def f(rng, shape):
        a = pool[rng.randint(0, pool.size, size=shape)].astype(np.float32)
        flat = a.reshape(-1)
        if odd and flat.size >= 4:
            at = rng.choice(flat.size, size=min(4, flat.size // 2), replace=False)
            flat[at] = _ODD[: at.size]
        return a
    return f


def conditions(rng, shape):
    """where's condition: mostly 0 and 1, with -1, 0.5, -0, NaN and inf."""
    pool = np.array([0.0, 1.0, 0.0, 1.0, -1.0, 0.5, -0.0, np.nan, np.inf], dtype=np.float32)
    return pool[rng.randint(0, pool.size, size=shape)]


def _cmp_shape(rank, lo=1, hi=4):
    return tuple(int(d) for d in _cmp_rng.randint(lo, hi + 1, size=rank))


def _broadcast_pair():
    """Two shapes that broadcast: 1-sized dims on either side, leading dims missing."""
    rank = int(_cmp_rng.randint(1, 5))
    full = _cmp_shape(rank, 2, 4)
    a, b = list(full), list(full)
    for i in range(rank):
        r = _cmp_rng.randint(4)
        if r == 1:
            a[i] = 1
        elif r == 2:
            b[i] = 1
    drop = int(_cmp_rng.randint(0, rank))
    if _cmp_rng.randint(2):
        a = a[drop:]
    else:
        b = b[drop:]
    return tuple(a), tuple(b)


_COMPARISONS = ("greater", "greater_equal", "lesser", "lesser_equal", "equal", "not_equal")
_LOGICAL = ("logical_and", "logical_or", "logical_xor")
for stem in _COMPARISONS + _LOGICAL:
    group = "logic_" if stem in _LOGICAL else "cmp_"
    short = stem.replace("logical_", "")
    # With a scalar: the scalar itself among the values, so that ties happen.
    for j, s in enumerate((1, -0.5, 2.5) if group == "cmp_" else (0, 2, -0.5)):
        rank = 1 + (j + len(stem)) % 4
        case("%sscalar_%s_%d" % (group, short, j), "_internal._%s_scalar" % stem,
             dict(scalar=s), [("data", _cmp_shape(rank, 2, 4))],
             values={"data": ties(extra=(s, s))})
    # Same shapes: `_greater` and friends.
    for j in range(2):
        rank = 1 + (j * 2 + len(stem)) % 4
        shape = _cmp_shape(rank, 2, 4)
        case("%selemwise_%s_%d" % (group, short, j), "_internal._%s" % stem, {},
             [("lhs", shape), ("rhs", shape)],
             values={"lhs": ties(odd=j == 0), "rhs": ties(odd=True)})
    # Broadcast: `broadcast_greater` and friends.
    for j in range(3):
        a, b = _broadcast_pair()
        case("%sbroadcast_%s_%d" % (group, short, j), "broadcast_" + stem, {},
             [("lhs", a), ("rhs", b)], values={"lhs": ties(), "rhs": ties(odd=j != 1)})

# The scalar's spellings and MXNet's float32 cast of it.
case("cmp_scalar_default", "_internal._greater_scalar", {}, [("data", (2, 4))],
     values={"data": ties()}, notes="scalar defaults to 1")
case("cmp_scalar_is_int_false", "_internal._lesser_equal_scalar",
     dict(scalar=1.5, is_int=False), [("data", (3, 3))], values={"data": ties(extra=(1.5,))},
     notes="is_int only changes integer data's output dtype")
case("cmp_scalar_is_int_true", "_internal._not_equal_scalar",
     dict(scalar=-1, is_int=True), [("data", (3, 3))], values={"data": ties()})
case("cmp_scalar_tenth_float32", "_internal._equal_scalar", dict(scalar=0.1),
     [("data", (2, 3))], values={"data": ties(extra=(0.1, 0.1, 0.1), odd=False)},
     notes="MXNet casts the scalar to float32: the float32 nearest 0.1 equals it")
case("cmp_scalar_tenth_greater", "_internal._greater_scalar", dict(scalar=0.1),
     [("data", (2, 3))], values={"data": ties(extra=(0.1, 0.1, 0.1), odd=False)})
case("cmp_scalar_overflow_inf", "_internal._greater_equal_scalar", dict(scalar=1e300),
     [("data", (2, 4))], values={"data": ties()}, notes="1e300 becomes +inf in float32")
case("cmp_scalar_negative_inf", "_internal._lesser_scalar", dict(scalar=-np.inf),
     [("data", (2, 4))], values={"data": ties()})
case("logic_scalar_underflow_zero", "_internal._logical_or_scalar", dict(scalar=1e-50),
     [("data", (2, 4))], values={"data": ties()}, notes="1e-50 becomes 0 in float32")
case("logic_scalar_and_nan_data", "_internal._logical_and_scalar", dict(scalar=3),
     [("data", (3, 4))], values={"data": special(np.nan, 0.0, -0.0, np.inf)},
     notes="NaN is true")

for j in range(8):
    rank = 1 + j % 4
    case("logic_not_%d" % j, "logical_not", {}, [("data", _cmp_shape(rank, 1, 4))],
         values={"data": ties(odd=j % 2 == 0)})

# where: a condition of x's shape, or a vector of x's first dim.
for j in range(24):
    rank = 1 + j % 4
    shape = _cmp_shape(rank, 1, 4)
    cond = shape if j % 3 else (shape[0],)
    case("where_%d_%s" % (j, "rows" if cond != shape or rank == 1 and j % 3 == 0 else "each"),
         "where", {}, [("condition", cond), ("x", shape), ("y", shape)],
         values={"condition": conditions, "x": ties(odd=j % 4 == 1)})

# --- shape -------------------------------------------------------------------
for codes, shape, rev in (
        ((0, -1), (2, 3, 4), False),
        ((-1,), (2, 3, 4), False),
        ((4, 0, 2), (2, 3, 4), False),
        ((6, 1, -1), (2, 3, 4), False),
        ((3, -1, 8), (2, 3, 4), False),
        ((-2,), (2, 3, 4), False),
        ((2, -2), (2, 3, 4), False),
        ((-2, 1, 1), (2, 3, 4), False),
        ((-3, 4), (2, 3, 4), False),
        ((-3, -3), (2, 3, 4, 5), False),
        ((0, -3), (2, 3, 4), False),
        ((-3, -2), (2, 3, 4), False),
        ((-4, 1, 2, -2), (2, 3, 4), False),
        ((2, -4, -1, 3, -2), (2, 3, 4), False),
        ((-1, -4, 3, 2), (2, 6, 4), False),
        ((-1, 0), (10, 5, 4), True),
        ((-1, 0), (10, 5, 4), False),
        ((0, -1), (2, 3, 4, 5), True),
        ((-3, 0, 0), (2, 3, 4, 5), True),
        ((0, 0, -1), (3, 2, 2, 2), True)):
    tag = "_".join(str(c).replace("-", "m") for c in codes) + ("_rev" if rev else "")
    case("reshape_" + tag, "Reshape", dict(shape=codes, reverse=rev) if rev else dict(shape=codes),
         [("data", shape)])
case("flatten_4d", "Flatten", {}, [("data", (2, 3, 2, 2))])
case("flatten_2d", "Flatten", {}, [("data", (3, 4))])
case("concat_dim1", "Concat", {}, [("a", (2, 3, 2)), ("b", (2, 1, 2))], notes="dim defaults to 1")
case("concat_dim0_3", "Concat", dict(dim=0), [("a", (1, 3)), ("b", (2, 3)), ("c", (3, 3))])
case("concat_dim-1", "Concat", dict(dim=-1), [("a", (2, 2, 1)), ("b", (2, 2, 3))])
case("concat_dim2_4d", "Concat", dict(dim=2), [("a", (1, 2, 2, 3)), ("b", (1, 2, 1, 3))])
case("rnn_param_concat", "_internal._rnn_param_concat", dict(dim=0),
     [("a", (6,)), ("b", (4,)), ("c", (3,))])
case("swapaxis_0_1", "SwapAxis", dict(dim1=0, dim2=1), [("data", (2, 3, 4))])
case("swapaxis_1_3", "SwapAxis", dict(dim1=1, dim2=3), [("data", (2, 3, 2, 4))])
case("swapaxis_default", "SwapAxis", {}, [("data", (2, 3))], notes="dim1 = dim2 = 0: identity")
case("swapaxis_neg", "SwapAxis", dict(dim1=-1, dim2=0), [("data", (2, 3, 4))])
case("slicechannel_3_axis1", "SliceChannel", dict(num_outputs=3), [("data", (2, 6, 2))],
     notes="axis defaults to 1")
case("slicechannel_squeeze_last", "SliceChannel", dict(num_outputs=4, axis=-1, squeeze_axis=True),
     [("data", (2, 3, 4))])
case("slicechannel_axis0", "SliceChannel", dict(num_outputs=2, axis=0), [("data", (4, 3))])
case("stack_axis0", "stack", {}, [("a", (2, 3)), ("b", (2, 3))])
case("stack_axis1_3", "stack", dict(axis=1), [("a", (2, 3)), ("b", (2, 3)), ("c", (2, 3))])
case("stack_axis-1", "stack", dict(axis=-1), [("a", (2, 3)), ("b", (2, 3))])
case("stack_axis2_new_last", "stack", dict(axis=2), [("a", (3, 2)), ("b", (3, 2))])
for mode in ("constant", "edge", "reflect"):
    case("pad_%s_4d" % mode, "Pad",
         dict(mode=mode, pad_width=(0, 0, 0, 0, 1, 2, 2, 1)), [("data", (1, 2, 3, 4))])
    case("pad_%s_5d" % mode, "Pad",
         dict(mode=mode, pad_width=(0, 0, 0, 0, 1, 0, 0, 2, 2, 1)), [("data", (1, 2, 3, 3, 4))])
case("pad_constant_value", "Pad",
     dict(mode="constant", pad_width=(0, 0, 0, 0, 2, 1, 0, 3), constant_value=1.5),
     [("data", (2, 1, 2, 3))])
case("sequencelast_axis0", "SequenceLast", {}, [("data", (4, 2, 3))])
case("sequencelast_axis1", "SequenceLast", dict(axis=1), [("data", (2, 4, 3))],
     notes="MXNet accepts only axis 0 or 1")
case("mean_all", "mean", {}, [("data", (2, 3, 4))], notes="axis None: one value, shape (1,)")
case("mean_axis1", "mean", dict(axis=1), [("data", (2, 3, 4))])
case("mean_axes0_2_keepdims", "mean", dict(axis=(0, 2), keepdims=True), [("data", (2, 3, 4))])
case("mean_axis1_exclude", "mean", dict(axis=1, exclude=True), [("data", (2, 3, 4))])
case("mean_axis1_exclude_keepdims", "mean", dict(axis=1, exclude=True, keepdims=True),
     [("data", (2, 3, 4))])
case("mean_empty_axes", "mean", dict(axis=()), [("data", (2, 3, 4))],
     notes="axis=() reduces every axis in MXNet 1.9.1")
case("mean_empty_axes_exclude", "mean", dict(axis=(), exclude=True), [("data", (2, 3))],
     notes="axis=() with exclude reduces every axis too")
case("mean_axis-1", "mean", dict(axis=-1), [("data", (3, 4))])
case("mean_all_listed", "mean", dict(axis=(0, 1, 2)), [("data", (2, 3, 2))],
     notes="every axis listed: shape (1,)")
case("zeros", "zeros", dict(shape=(2, 3)), [])
case("ones", "ones", dict(shape=(3, 1, 2)), [])
case("zeros_like", "zeros_like", {}, [("data", (2, 3))])
case("zeros_like_nan", "zeros_like", {}, [("data", (2, 3))],
     values={"data": special(np.nan, np.inf, -np.inf)}, notes="zeros even where x is NaN or infinite")
case("ones_like", "ones_like", {}, [("data", (3, 2))])

# --- transpose, expand_dims, squeeze, slice, slice_axis (issue 20) -----------
# Attribute values drawn from a fixed-seed generator: random ranks and shapes, every
# sign of axis, None in slices, steps of both signs, ends past the axis (slice clamps
# them). Slices whose begin lies before a positive-step axis start are left out: MXNet's
# own kernel clamps them to 0, its oneDNN kernel (which these fixtures run) fails.
_shape_rng = np.random.RandomState(20)


def _rand_shape(rank, lo=1, hi=4):
    return tuple(int(d) for d in _shape_rng.randint(lo, hi + 1, size=rank))


case("transpose_default_3d", "transpose", {}, [("data", (2, 3, 4))],
     notes="axes=() reverses the axes")
case("transpose_default_1d", "transpose", {}, [("data", (5,))])
for i in range(20):
    rank = 2 + i % 4
    perm = tuple(int(p) for p in _shape_rng.permutation(rank))
    case("transpose_%d_%s" % (i, "".join(map(str, perm))), "transpose", dict(axes=perm),
         [("data", _rand_shape(rank))])

for i in range(22):
    rank = 1 + i % 4
    axis = int(_shape_rng.randint(-rank - 1, rank + 1))
    case("expand_dims_%d_axis%s" % (i, str(axis).replace("-", "m")), "expand_dims",
         dict(axis=axis), [("data", _rand_shape(rank))])

for i in range(22):
    rank = 2 + i % 4
    shape = list(_rand_shape(rank, 2, 4))
    ones = sorted(_shape_rng.choice(rank, size=1 + i % min(rank, 3), replace=False))
    for o in ones:
        shape[o] = 1
    if i % 3 == 0:
        attrs = {}
    else:
        picked = [int(o) - (rank if (i + j) % 2 else 0) for j, o in enumerate(ones)]
        picked = picked[: 1 + i % len(picked)]
        attrs = dict(axis=tuple(picked))
    case("squeeze_%d" % i, "squeeze", attrs, [("data", tuple(shape))])
case("squeeze_all_ones", "squeeze", {}, [("data", (1, 1, 1))], notes="every dim removed: (1,)")


def _slice_len(n, b, e, s):
    """MXNet 1.9.1's output length of one sliced axis (GetIndexRange, native kernel)."""
    s = 1 if s is None else s
    bb = b if b is not None else (n - 1 if s < 0 else 0)
    ee = e if e is not None else (-1 if s < 0 else n)
    if bb < 0:
        bb += n
    if ee < 0 and e is not None:
        ee += n
    if bb < 0 and s > 0:
        bb = 0
    if bb > n - 1 and s < 0:
        bb = n - 1
    if bb < 0 or bb > n - 1:
        return 0
    ee = min(max(ee, -1), n)
    if ee == bb:
        return 0
    if s > 0:
        return (ee - bb - 1) // s + 1 if ee > bb else 0
    return (bb - ee - 1) // (-s) + 1 if ee < bb else 0


def _slice_axis_range(n):
    while True:
        s = [None, 1, 1, 2, 3, -1, -2][_shape_rng.randint(7)]
        b = [None, int(_shape_rng.randint(-n, n + 2))][_shape_rng.randint(2)]
        e = [None, int(_shape_rng.randint(-n - 2, n + 3))][_shape_rng.randint(2)]
        if b is not None and b < -n and (s is None or s > 0):
            continue
        if _slice_len(n, b, e, s) > 0:
            return b, e, s


n_slice = 0
while n_slice < 26:
    rank = 1 + n_slice % 4
    shape = _rand_shape(rank, 2, 6)
    axes = 1 + int(_shape_rng.randint(rank))
    ranges = [_slice_axis_range(shape[a]) for a in range(axes)]
    attrs = dict(begin=tuple(r[0] for r in ranges), end=tuple(r[1] for r in ranges))
    if n_slice % 3:
        attrs["step"] = tuple(r[2] for r in ranges)
    elif any(r[2] not in (None, 1) for r in ranges):
        attrs["step"] = tuple(r[2] for r in ranges)
    case("slice_%d" % n_slice, "slice", attrs, [("data", shape)])
    n_slice += 1
case("slice_end_past_axis", "slice", dict(begin=(1,), end=(20,)), [("data", (6, 2))],
     notes="an end past the axis stops at it")
case("slice_backwards_to_first", "slice", dict(begin=(None, 4), end=(None, -9), step=(None, -1)),
     [("data", (2, 5))], notes="a negative step's end before the axis reaches element 0")

for i in range(22):
    rank = 1 + i % 4
    shape = _rand_shape(rank, 2, 6)
    axis = int(_shape_rng.randint(-rank, rank))
    n = shape[axis]
    begin = int(_shape_rng.randint(-n, n))
    b = begin + n if begin < 0 else begin
    end = [None, int(_shape_rng.randint(b + 1, n + 1)) - (n if i % 2 else 0)][i % 3 != 0]
    if end == 0:
        end = None
    case("slice_axis_%d" % i, "slice_axis", dict(axis=axis, begin=begin, end=end),
         [("data", shape)])

# --- reductions: sum, prod, max, min, nansum, nanprod, norm, argmax, argmin (issue 20)
# Random ranks, shapes and axis lists (None, (), one axis, several, negative), keepdims
# and exclude. Some cases hold NaN (max and min give NaN, the nan* variants skip it,
# argmax and argmin pick the first NaN), ties from small integers (max/min give the
# gradient to every tied element, argmax/argmin the first index), zeros (prod's gradient
# out/x is then NaN or inf, as MXNet computes it).
_red_rng = np.random.RandomState(21)


def small_ints(rng, shape):
    return rng.randint(-2, 3, size=shape).astype(np.float32)


def with_nan(rng, shape):
    a = rng.normal(0, 1, size=shape).astype(np.float32)
    flat = a.reshape(-1)
    flat[rng.randint(flat.size)] = np.nan
    return a


def _red_axes(rank, i):
    """An axis attribute: None, (), one axis or a tuple of distinct axes, some negative."""
    kind = i % 5
    if kind == 0:
        return None
    if kind == 1 and i % 10 == 1:
        return ()
    count = 1 + int(_red_rng.randint(rank))
    picked = sorted(_red_rng.choice(rank, size=count, replace=False))
    picked = [int(a) - (rank if _red_rng.randint(2) else 0) for a in picked]
    return picked[0] if count == 1 and i % 2 else tuple(picked)


for op in ["sum", "prod", "max", "min", "nansum", "nanprod", "norm"]:
    for i in range(20):
        rank = 1 + i % 4
        shape = _rand_shape(rank, 1, 4)
        attrs = {}
        axes = _red_axes(rank, i)
        if axes is not None:
            attrs["axis"] = axes
        if i % 3 == 1:
            attrs["keepdims"] = True
        if op == "norm":
            attrs["ord"] = 1 + i % 2
        elif i % 4 == 3 and axes not in (None, ()):
            attrs["exclude"] = True
        values = {}
        if i % 5 == 2 and op != "norm":
            values = {"data": with_nan}
        elif i % 5 == 4:
            values = {"data": small_ints}
        case("red_%s_%d" % (op, i), op, attrs, [("data", shape)], values=values)

for op in ["argmax", "argmin"]:
    for i in range(20):
        rank = 1 + i % 4
        shape = _rand_shape(rank, 1, 5)
        attrs = {}
        if i % 5:
            attrs["axis"] = int(_red_rng.randint(-rank, rank))
        if i % 3 == 1:
            attrs["keepdims"] = True
        values = {}
        if i % 4 == 2:
            values = {"data": with_nan}
        elif i % 4 == 3:
            values = {"data": small_ints}
        case("red_%s_%d" % (op, i), op, attrs, [("data", shape)], values=values)
case("red_argmax_channel_2d", "argmax_channel", {}, [("data", (3, 5))], values={"data": small_ints})
case("red_argmax_channel_3d", "argmax_channel", {}, [("data", (2, 3, 4))],
     notes="argmax along axis 1, not the last")
case("red_prod_zero", "prod", dict(axis=1), [("data", (2, 3))], values={"data": special(0.0)},
     notes="the gradient out/x at a zero element")
case("red_norm_zero", "norm", dict(axis=1), [("data", (2, 3))],
     values={"data": lambda rng, shape: np.zeros(shape, np.float32)},
     notes="the L2 gradient x/out at a zero norm")


# --- tile, repeat, broadcast_axis, broadcast_to, broadcast_like (issue 20) -----
# Random ranks and shapes with sizes of 1 among them; tile's reps shorter than, as long
# as and longer than the rank (MXNet pads the shorter with leading 1s) and empty (the
# identity); repeat along every axis, negative ones and none (the flattened input);
# broadcasts of one or several axes of size 1 (an axis listed twice, broadcast to 1 the
# first time), broadcast_to's 0 (keep the dim), broadcast_like with and without
# lhs_axes/rhs_axes and negative ones (the rhs's values unused).
_tile_rng = np.random.RandomState(22)


def _ones_in(shape, count):
    """`shape` with `count` distinct axes set to 1, and those axes."""
    shape = list(shape)
    axes = sorted(int(a) for a in _tile_rng.choice(len(shape), size=count, replace=False))
    for a in axes:
        shape[a] = 1
    return tuple(shape), axes


def _mxnet_compact_axes(big, small):
    """The axes MXNet 1.9.1's BroadcastReduceShapeCompact folds a broadcast of `small` to
    `big` into; past 5 it fails ("Too many reduction axes"), forward and backward."""
    if int(np.prod(small)) == 1:
        return 1
    j, bprod, sprod = 0, 1, 1
    for b, s in zip(big, small):
        red = b != s
        if (red and sprod > 1) or (not red and bprod != sprod):
            j, bprod, sprod = j + 1, 1, 1
        bprod *= b
        if not red:
            sprod *= b
    return j + (1 if bprod > 1 or sprod > 1 else 0)


def _mxnet_tiles(shape, reps):
    """Whether MXNet 1.9.1 runs tile: it broadcasts (1, d) pairs to (r, d) pairs."""
    rank = max(len(shape), len(reps))
    dims = (1,) * (rank - len(shape)) + tuple(shape)
    reps = (1,) * (rank - len(reps)) + tuple(reps)
    big = [v for r, d in zip(reps, dims) for v in (r, d)]
    small = [v for d in dims for v in (1, d)]
    return _mxnet_compact_axes(big, small) <= 5


for i in range(22):
    rank = 1 + i % 4
    shape = tuple(int(d) for d in _tile_rng.randint(1, 4, size=rank))
    n = [rank - 1, rank, rank + 1, 1, rank + 2][i % 5] if i % 11 else 0
    # Reps MXNet can run (see _mxnet_compact_axes; ward runs any).
    while True:
        reps = tuple(int(r) for r in _tile_rng.randint(1, 4, size=max(n, 0)))
        if _mxnet_tiles(shape, reps):
            break
    case("tile_%d" % i, "tile", dict(reps=reps), [("data", shape)])
case("tile_ones", "tile", dict(reps=(1, 1)), [("data", (2, 3))], notes="reps of 1: a copy")
case("tile_vector_to_3d", "tile", dict(reps=(2, 1, 3)), [("data", (4,))],
     notes="an input of lower rank gets leading axes of 1")

for i in range(22):
    rank = 1 + i % 4
    shape = tuple(int(d) for d in _tile_rng.randint(1, 4, size=rank))
    attrs = dict(repeats=int(1 + _tile_rng.randint(4)))
    if i % 4:
        attrs["axis"] = int(_tile_rng.randint(-rank, rank))
    case("repeat_%d" % i, "repeat", attrs, [("data", shape)])
case("repeat_once", "repeat", dict(repeats=1, axis=0), [("data", (2, 3))])
case("repeat_flat_3d", "repeat", dict(repeats=3), [("data", (2, 1, 2))],
     notes="no axis: the flattened input, a 1-D output")

for i in range(22):
    rank = 1 + i % 4
    shape, ones = _ones_in(_tile_rng.randint(1, 4, size=rank), 1 + i % min(rank, 3))
    # MXNet 1.9.1's broadcast_axis takes no negative axes (its shape check fails).
    axes = ones[: 1 + int(_tile_rng.randint(len(ones)))]
    sizes = [int(1 + _tile_rng.randint(4)) for _ in axes]
    attrs = dict(axis=axes[0] if len(axes) == 1 and i % 3 == 0 else tuple(axes),
                 size=sizes[0] if len(sizes) == 1 and i % 3 == 0 else tuple(sizes))
    case("bcast_axis_%d" % i, "broadcast_axis", attrs, [("data", shape)])
case("bcast_axes_alias", "broadcast_axes", dict(axis=(0, 2), size=(3, 2)), [("data", (1, 2, 1))],
     notes="broadcast_axes is broadcast_axis")
case("bcast_axis_none", "broadcast_axis", {}, [("data", (2, 3))], notes="no axes: a copy")
case("bcast_axis_twice", "broadcast_axis", dict(axis=(0, 0), size=(1, 3)), [("data", (1, 2))],
     notes="an axis listed twice: to 1, then to 3 (MXNet checks the shape as it goes)")
case("bcast_like_axis_twice", "broadcast_like", dict(lhs_axes=(0, 0), rhs_axes=(0, 1)),
     [("lhs", (1, 2)), ("rhs", (5, 3))], notes="an lhs axis listed twice takes the last")

for i in range(22):
    rank = 1 + i % 4
    shape, ones = _ones_in(_tile_rng.randint(1, 4, size=rank), i % (rank + 1))
    target = []
    for a, d in enumerate(shape):
        if a in ones:
            target.append(int(1 + _tile_rng.randint(4)))
        else:
            target.append([0, d][int(_tile_rng.randint(2))])
    case("bcast_to_%d" % i, "broadcast_to", dict(shape=tuple(target)), [("data", shape)])
case("bcast_to_keep_all", "broadcast_to", dict(shape=(0, 0, 0)), [("data", (2, 1, 3))],
     notes="0 keeps the input's dim")

for i in range(22):
    rank = 1 + i % 4
    shape, ones = _ones_in(_tile_rng.randint(1, 4, size=rank), 1 + i % rank)
    if i % 2:
        # Without axes: the whole rhs, of the lhs's rank.
        rhs = [int(1 + _tile_rng.randint(4)) if a in ones else d for a, d in enumerate(shape)]
        attrs = {}
    else:
        rhs_rank = 1 + int(_tile_rng.randint(4))
        rhs = [int(1 + _tile_rng.randint(4)) for _ in range(rhs_rank)]
        count = 1 + int(_tile_rng.randint(min(len(ones), rhs_rank)))
        lhs_axes = [a - rank if k % 2 else a for k, a in enumerate(ones[:count])]
        rhs_axes = [int(r) for r in _tile_rng.choice(rhs_rank, size=count, replace=False)]
        rhs_axes = [r - rhs_rank if (i // 2 + k) % 2 else r for k, r in enumerate(rhs_axes)]
        attrs = dict(lhs_axes=tuple(lhs_axes), rhs_axes=tuple(rhs_axes))
    case("bcast_like_%d" % i, "broadcast_like", attrs,
         [("lhs", shape), ("rhs", tuple(rhs))])
case("bcast_like_lhs_axes_alone", "broadcast_like", dict(lhs_axes=(0,)),
     [("lhs", (1, 3)), ("rhs", (2, 3))],
     notes="lhs_axes without rhs_axes: MXNet 1.9.1 ignores it and broadcasts to the whole rhs")

# --- take, pick, gather_nd, one_hot (issue 20) -------------------------------
# Indices are float32, truncated toward zero as MXNet casts them: the values mix whole
# and fractional ones, negative ones and ones past the axis (take and pick clip or wrap
# them; gather_nd takes -size..size-1, a negative one from the end after adding the size
# in floating point, and fails on any other, so its cases stay in range).
_index_rng = np.random.RandomState(20)


def _index_values(lo, hi, fixed=()):
    """Indices in [lo, hi]: half whole, half fractional, `fixed` first."""
    def f(rng, shape):
        a = rng.uniform(lo, hi, size=shape)
        whole = rng.randint(0, 2, size=shape).astype(bool)
        a[whole] = np.clip(np.round(a[whole]), lo, hi)
        flat = a.reshape(-1)
        for i, v in enumerate(fixed[:flat.size]):
            flat[i] = v
        return a.astype(np.float32)
    return f


def _gather_nd_values(sizes, negative=True):
    """Row j of (M, ...) indices in [-sizes[j], sizes[j] - 1] (from 0 without
    `negative`), whole or fractional."""
    def f(rng, shape):
        a = np.zeros(shape)
        for j, size in enumerate(sizes):
            lo = -size if negative else 0
            row = rng.uniform(lo, size - 1, size=shape[1:])
            whole = rng.randint(0, 2, size=shape[1:]).astype(bool)
            row[whole] = rng.randint(lo, size, size=shape[1:])[whole]
            a[j] = row
        return a.astype(np.float32)
    return f


def _rand_shape(rank, lo=1, hi=4):
    return tuple(int(d) for d in _index_rng.randint(lo, hi + 1, size=rank))


for i in range(22):
    rank = 1 + i % 4
    shape = _rand_shape(rank)
    axis = int(_index_rng.randint(-rank, rank))
    size = shape[axis]
    ishape = _rand_shape(1 + i % 3, 1, 3)
    attrs = {}
    if i % 5:
        attrs["axis"] = axis
    else:
        axis, size = 0, shape[0]
    if i % 3 == 1:
        attrs["mode"] = "wrap"
    elif i % 3 == 2:
        attrs["mode"] = "clip"
    case("take_%d" % i, "take", attrs, [("a", shape), ("indices", ishape)],
         values={"indices": _index_values(-size - 2, size + 2, (-0.5, size - 0.5, -1.5))})
case("take_axis_of_1", "take", dict(axis=1, mode="wrap"), [("a", (2, 1, 3)), ("indices", (4,))],
     values={"indices": _index_values(-3, 3)}, notes="an axis of size 1: every index reads 0")
case("take_nan_clip", "take", dict(mode="clip"), [("a", (3, 2)), ("indices", (3,))],
     values={"indices": lambda rng, shape: np.array([np.nan, 1.0, -np.inf], np.float32)},
     notes="clip: a NaN reads index 0, -inf index 0")

for i in range(22):
    rank = 1 + i % 4
    shape = _rand_shape(rank)
    axis = int(_index_rng.randint(-rank, rank))
    size = shape[axis]
    keepdims = bool(i % 2)
    kept = tuple(1 if a == axis % rank else d for a, d in enumerate(shape))
    dropped = tuple(d for a, d in enumerate(shape) if a != axis % rank) or (1,)
    # MXNet takes the index in either shape, whatever keepdims says.
    ishape = kept if (i // 2) % 2 else dropped
    attrs = dict(axis=axis) if i % 7 else {}
    if not i % 7:
        axis, size = -1, shape[-1]
        kept = shape[:-1] + (1,)
        dropped = shape[:-1] or (1,)
        ishape = kept if (i // 2) % 2 else dropped
    if keepdims:
        attrs["keepdims"] = True
    elif i % 4 == 2:
        attrs["keepdims"] = False
    if i % 3 == 1:
        attrs["mode"] = "wrap"
    elif i % 3 == 2:
        attrs["mode"] = "clip"
    case("pick_%d" % i, "pick", attrs, [("data", shape), ("index", ishape)],
         values={"index": _index_values(-size - 2, size + 2, (-0.5, -1.5, size))})
case("pick_axis_of_1", "pick", dict(axis=0, mode="wrap", keepdims=True),
     [("data", (1, 4)), ("index", (4,))], values={"index": _index_values(-3, 3)})

for i in range(22):
    rank = 1 + i % 4
    shape = _rand_shape(rank)
    m = 1 + int(_index_rng.randint(rank))
    ishape = (m,) + _rand_shape(1 + i % 2, 1, 3)
    # MXNet 1.9.1's backward (scatter_nd) mishandles negative indices (see
    # gathernd_negative_halves): two cases in three stay non-negative, so that their
    # gradients compare.
    case("gathernd_%d" % i, "gather_nd", {}, [("data", shape), ("indices", ishape)],
         values={"indices": _gather_nd_values(shape[:m], negative=i % 3 == 0)})
case("gathernd_negative_halves", "gather_nd", {}, [("data", (2, 3)), ("indices", (2, 4))],
     values={"indices": lambda rng, shape: np.array(
         [[-0.5, -1.5, -2.0, 1.0], [-0.5, -2.5, 2.0, -3.0]], np.float32)},
     notes="a negative index has the size added before truncation: -0.5 on 2 reads 1, "
           "-1.5 reads 0, -2.5 on 3 reads 0; MXNet's backward writes -0.5's gradient to "
           "row 0 and -1's past the data")
case("gathernd_repeated", "gather_nd", {}, [("data", (3, 2)), ("indices", (1, 5))],
     values={"indices": lambda rng, shape: np.array([[1, 1, 2, 1, 0]], np.float32)},
     notes="a row read three times: its gradient sums")

for i in range(22):
    ishape = _rand_shape(1 + i % 3, 1, 4)
    depth = int(1 + _index_rng.randint(6))
    attrs = dict(depth=depth)
    if i % 4 == 1:
        attrs["on_value"] = float(np.round(_index_rng.uniform(-3, 3), 2))
    if i % 4 == 2:
        attrs["off_value"] = float(np.round(_index_rng.uniform(-3, 3), 2))
    if i % 4 == 3:
        attrs["on_value"] = -1.0
        attrs["off_value"] = 2.5
    if i % 7 == 3:
        attrs["dtype"] = "float32"
    case("onehot_%d" % i, "one_hot", attrs, [("indices", ishape)],
         values={"indices": _index_values(-2, depth + 2, (-0.5, depth - 0.5, depth))})
case("onehot_nan", "one_hot", dict(depth=3), [("indices", (4,))],
     values={"indices": lambda rng, shape: np.array([np.nan, np.inf, -np.inf, 2.0], np.float32)},
     notes="NaN and infinities match no position: rows of off_value")


# --- slice_like, reshape_like (issue 20) ---------------------------------------
# Only the second input's shape is read (its values are random and unused). slice_like:
# every axis (no axes, the same rank), listed axes with negative ones (resolved against
# the first input's rank), an axis listed twice, a second input of another rank; the
# sizes 1 to the first input's. reshape_like: the whole shape, and ranges with begins and
# ends absent, negative and positive, on both sides.
_like_rng = np.random.RandomState(21)

for i in range(22):
    rank = 1 + i % 4
    shape = tuple(int(d) for d in _like_rng.randint(1, 5, size=rank))
    if i % 4 == 0:
        like = tuple(int(1 + _like_rng.randint(d)) for d in shape)
        attrs = {} if i % 8 == 0 else dict(axes=())
    else:
        count = 1 + int(_like_rng.randint(rank))
        axes = sorted(int(a) for a in _like_rng.choice(rank, size=count, replace=False))
        like_rank = max(axes) + 1 + int(_like_rng.randint(2))
        like = [int(1 + _like_rng.randint(4)) for _ in range(like_rank)]
        for a in axes:
            like[a] = int(1 + _like_rng.randint(shape[a]))
        like = tuple(like)
        axes = [a - rank if (i + k) % 2 else a for k, a in enumerate(axes)]
        attrs = dict(axes=tuple(axes))
    case("slicelike_%d" % i, "slice_like", attrs, [("data", shape), ("like", like)])
case("slicelike_axis_twice", "slice_like", dict(axes=(1, -2)), [("data", (2, 4, 3)), ("like", (5, 2))],
     notes="an axis listed twice (1 and -2 of rank 3)")
case("slicelike_whole", "slice_like", {}, [("data", (2, 3)), ("like", (2, 3))],
     notes="the same shape: a copy")


def _split_factors(n):
    """A random factorisation of n into 1 to 3 factors."""
    out = []
    while n > 1 and len(out) < 2:
        divisors = [d for d in range(2, n + 1) if n % d == 0]
        d = int(divisors[_like_rng.randint(len(divisors))])
        out.append(d)
        n //= d
    if n > 1 or not out:
        out.append(n)
    _like_rng.shuffle(out)
    return [int(v) for v in out]


for i in range(22):
    rank = 1 + i % 4
    shape = tuple(int(d) for d in _like_rng.randint(1, 5, size=rank))
    lb = int(_like_rng.randint(rank))
    le = int(lb + 1 + _like_rng.randint(rank - lb))
    middle = _split_factors(int(np.prod(shape[lb:le])))
    pre = [int(1 + _like_rng.randint(3)) for _ in range(int(_like_rng.randint(2)))]
    post = [int(1 + _like_rng.randint(3)) for _ in range(int(_like_rng.randint(2)))]
    like = tuple(pre + middle + post)
    rb, re_ = len(pre), len(pre) + len(middle)
    attrs = {}
    if (lb, le) != (0, rank) or i % 3 == 0:
        if lb or i % 2:
            attrs["lhs_begin"] = lb - rank if i % 4 == 1 else lb
        if le != rank or i % 3:
            attrs["lhs_end"] = le - rank if i % 4 == 3 and le < rank else le
    if (rb, re_) != (0, len(like)) or i % 3 == 1:
        if rb or i % 2:
            attrs["rhs_begin"] = rb - len(like) if i % 4 == 2 else rb
        if re_ != len(like) or i % 3:
            attrs["rhs_end"] = re_ - len(like) if i % 4 == 0 and re_ < len(like) else re_
    if attrs.keys() & {"lhs_begin", "lhs_end"} and (lb, le) == (0, rank) and \
            not attrs.keys() & {"rhs_begin", "rhs_end"} and len(like) != len(middle):
        attrs["rhs_begin"], attrs["rhs_end"] = rb, re_
    if not attrs and (rb, re_) != (0, len(like)):
        attrs = dict(rhs_begin=rb, rhs_end=re_)
    case("reshapelike_%d" % i, "reshape_like", attrs, [("lhs", shape), ("rhs", like)])
case("reshapelike_whole", "reshape_like", {}, [("lhs", (2, 3, 4)), ("rhs", (4, 6))],
     notes="no ranges: the whole of the second input's shape")
case("reshapelike_lhs_begin_only", "reshape_like", dict(lhs_begin=1),
     [("lhs", (2, 3, 4)), ("rhs", (12,))], notes="lhs_end absent: to the end")


# --- topk, sort, argsort (issue 20) -------------------------------------------
# MXNet's CPU order among equal elements is libstdc++'s: std::sort (introsort, unstable
# past 16 elements) when k*8 > n, else std::partial_sort (a heap); NaN compares false
# both ways. Lanes of small integers (many ties) and NaN, short (<= 16: insertion sort)
# and long (introsort partitions, its heapsort fallback, the heap of partial_sort), every
# ret_typ, both orders, axes negative and None, k <= 0 (every element), k = n. Random
# normals elsewhere, for gradients with no ties.
_ord_rng = np.random.RandomState(2031)


def tie_ints(hi, nan=0.0):
    """Integers in [0, hi) (ties), with a share `nan` of NaN."""
    def f(rng, shape):
        a = rng.randint(0, hi, size=shape).astype(np.float32)
        if nan:
            a[rng.rand(*shape) < nan] = np.nan
        return a
    return f


def _ord_case(prefix, i, op, attrs, shape, values):
    case("%s_%d" % (prefix, i), op, attrs, [("data", shape)],
         values={"data": values} if values is not None else {})


def _ord_values(i):
    kind = i % 4
    if kind == 0:
        return None
    if kind == 1:
        return tie_ints(3)
    if kind == 2:
        return tie_ints(6, nan=0.15)
    return tie_ints(20)


def _ord_shape(i):
    rank = 1 + i % 4
    shape = [int(d) for d in _ord_rng.randint(1, 5, size=rank)]
    # One long axis in most cases, so that the introsort and the heap run.
    if i % 3:
        shape[int(_ord_rng.randint(rank))] = int(_ord_rng.choice([17, 24, 40, 70]))
    return tuple(shape)


def _ord_axis(shape, i):
    rank = len(shape)
    if i % 6 == 5:
        return None, int(np.prod(shape))
    # The longest axis, spelt negative half the time.
    a = int(np.argmax(shape)) if i % 5 else int(_ord_rng.randint(rank))
    return (a - rank if i % 2 else a), shape[a]


_RET = ["indices", "value", "mask", "both"]
for i in range(28):
    shape = _ord_shape(i)
    axis, n = _ord_axis(shape, i)
    attrs = {"ret_typ": _RET[i % 4]}
    if axis != -1 or i % 7 == 0:
        attrs["axis"] = axis
    # k: 1 (the default), small (the heap: k*8 <= n), large, n, and <= 0 (every element).
    choice = i % 5
    if choice == 1:
        attrs["k"] = max(1, n // 9)
    elif choice == 2:
        attrs["k"] = max(1, (n * 2) // 3)
    elif choice == 3:
        attrs["k"] = n
    elif choice == 4:
        attrs["k"] = [0, -1][i % 2]
    if i % 2 == 1:
        attrs["is_ascend"] = True
    elif i % 8 == 2:
        attrs["is_ascend"] = False
    if i % 9 == 4:
        attrs["dtype"] = "float32"
    _ord_case("topk", i, "topk", attrs, shape, _ord_values(i))
case("topk_default", "topk", {}, [("data", (3, 5))], notes="k 1, indices, descending, last axis")
case("topk_none_ties_long", "topk", dict(axis=None, k=30, ret_typ="both"), [("data", (4, 25))],
     values={"data": tie_ints(3)}, notes="the flattened input: one lane of 100 ties")
case("topk_heap_ties", "topk", dict(k=3, ret_typ="both"), [("data", (2, 64))],
     values={"data": tie_ints(2)}, notes="k*8 <= n: std::partial_sort's heap over ties")
case("topk_mask_axis0_nan", "topk", dict(axis=0, k=2, ret_typ="mask", is_ascend=True),
     [("data", (20, 3))], values={"data": tie_ints(4, nan=0.2)})
case("topk_one_element", "topk", dict(ret_typ="both"), [("data", (3, 1))])
case("topk_value_heap", "topk", dict(axis=1, k=2, ret_typ="value"), [("data", (3, 40, 2))],
     notes="no ties: the gradient against finite differences, k*8 <= n")
case("topk_value_ascend", "topk", dict(axis=-1, k=7, ret_typ="value", is_ascend=True),
     [("data", (2, 3, 9))], notes="no ties: the gradient against finite differences")

for i in range(22):
    shape = _ord_shape(i + 1)
    axis, n = _ord_axis(shape, i)
    attrs = {}
    # MXNet 1.9.1's gradient of sort fails when axis is left to its default (its
    # backward node reads axis=""): most cases spell it.
    if i % 4 or axis != -1:
        attrs["axis"] = axis
    if i % 3 == 1:
        attrs["is_ascend"] = False
    elif i % 3 == 2:
        attrs["is_ascend"] = True
    _ord_case("sort", i, "sort", attrs, shape, _ord_values(i + 1))
case("sort_none_2d", "sort", dict(axis=None), [("data", (3, 7))], values={"data": tie_ints(5)})

for i in range(22):
    shape = _ord_shape(i + 2)
    axis, n = _ord_axis(shape, i + 1)
    attrs = {}
    if axis != -1 or i % 5 == 0:
        attrs["axis"] = axis
    if i % 3 == 1:
        attrs["is_ascend"] = False
    elif i % 3 == 2:
        attrs["is_ascend"] = True
    if i % 7 == 3:
        attrs["dtype"] = "float32"
    _ord_case("argsort", i, "argsort", attrs, shape, _ord_values(i + 2))
case("argsort_ties_1000", "argsort", dict(is_ascend=False), [("data", (1000,))],
     values={"data": tie_ints(4, nan=0.05)}, notes="deep introsort over ties and NaN")


# --- Embedding ---------------------------------------------------------------
case("embedding_2d_ids", "Embedding", dict(input_dim=10, output_dim=4), [("data", (2, 5))],
     values={"data": token_ids(10)},
     notes="ids -3, 10, 15, 2.7, -0.5, 9.5, 1.2: truncated toward zero and clipped to [0, 9]")
case("embedding_1d_ids", "Embedding", dict(input_dim=6, output_dim=3), [("data", (7,))],
     values={"data": token_ids(6)})
case("embedding_3d_ids", "Embedding", dict(input_dim=5, output_dim=2), [("data", (2, 2, 3))],
     values={"data": token_ids(5)})


# --- batch_dot and the interleaved attention products ------------------------
# batch_dot over ranks 3 to 5 with every pair of transposes (MXNet 1.9.1 takes equal
# leading batch dims only, no broadcasting, and no zero dims: its shape inference reads
# 0 as unknown). The interleaved products of MXNet's Transformer (contrib/transformer.cc):
# each head's q, k, v (or k, v) interleaved along the last axis, qk scaled by 1/sqrt(D).
_bd_rng = np.random.RandomState(31)
for i in range(22):
    rank = 3 + i % 3
    batch = tuple(int(d) for d in _bd_rng.randint(1, 4, size=rank - 2))
    m, k, n = (int(d) for d in _bd_rng.randint(1, 5, size=3))
    ta, tb = bool(i & 1), bool(i & 2)
    attrs = {}
    if ta or i % 5 == 0:
        attrs["transpose_a"] = ta
    if tb or i % 5 == 0:
        attrs["transpose_b"] = tb
    case("batchdot_%d" % i, "batch_dot", attrs,
         [("lhs", batch + ((k, m) if ta else (m, k))), ("rhs", batch + ((n, k) if tb else (k, n)))])
case("batchdot_ones", "batch_dot", {}, [("lhs", (1, 1, 1)), ("rhs", (1, 1, 1))])
case("batchdot_stype_default", "batch_dot", dict(forward_stype="default", transpose_b=True),
     [("lhs", (2, 3, 4)), ("rhs", (2, 5, 4))], notes="forward_stype default: dense, as None")

for i in range(20):
    L, B, H, D = (int(v) for v in _bd_rng.randint(1, 4, size=4))
    Lk = int(_bd_rng.randint(1, 5))
    if i == 0:
        L, B, H, D, Lk = 1, 1, 1, 1, 1
    case("imm_selfatt_qk_%d" % i, "contrib.interleaved_matmul_selfatt_qk", dict(heads=H),
         [("queries_keys_values", (L, B, H * 3 * D))])
    case("imm_selfatt_valatt_%d" % i, "contrib.interleaved_matmul_selfatt_valatt", dict(heads=H),
         [("queries_keys_values", (L, B, H * 3 * D)), ("attention", (B * H, L, L))])
    case("imm_encdec_qk_%d" % i, "contrib.interleaved_matmul_encdec_qk", dict(heads=H),
         [("queries", (L, B, H * D)), ("keys_values", (Lk, B, H * 2 * D))])
    case("imm_encdec_valatt_%d" % i, "contrib.interleaved_matmul_encdec_valatt", dict(heads=H),
         [("keys_values", (Lk, B, H * 2 * D)), ("attention", (B * H, L, Lk))])


# --- SequenceMask, SequenceReverse, SequenceLast with lengths -----------------
# The lengths are a parameter here (the variable MXNet creates, `op_sequence_length`),
# so that the conformance test's random data leaves them valid: MXNet 1.9.1 reads or
# writes outside the data for a length outside the range each operator allows (a
# negative one for SequenceMask, one past the steps for SequenceReverse and
# SequenceLast, and 0 for SequenceLast), which ward refuses. Lengths are truncated
# toward zero (2.7 reads as 2, -0.5 as 0); SequenceMask takes lengths past the steps.
_seq_rng = np.random.RandomState(41)


def seq_lengths(lo, hi, extras=()):
    """Integer lengths in [lo, hi] with the given values first."""
    def f(rng, shape):
        a = rng.randint(lo, hi + 1, size=shape).astype(np.float32)
        for j, v in enumerate(extras[:a.size]):
            a[j] = v
        return a
    return f


def _seq_shape(i):
    rank = 2 + i % 3
    return tuple(int(d) for d in _seq_rng.randint(1, 5, size=rank))


for i in range(22):
    shape = _seq_shape(i)
    axis = (i // 3) % 2
    steps = shape[axis]
    attrs = dict(use_sequence_length=i % 7 != 6)
    if axis or i % 4 == 0:
        attrs["axis"] = axis
    if i % 3 == 1:
        attrs["value"] = [-1e4, 1.5, -7.0, 0.25][i % 4]
    extras = [[steps + 0.7, -0.5], [steps - 0.3, 0.5], [steps + 2]][i % 3]
    case("seqmask_%d" % i, "SequenceMask", attrs, [("data", shape)],
         values={"op_sequence_length": seq_lengths(0, steps + 1, extras)})
case("seqmask_inf", "SequenceMask", dict(use_sequence_length=True, value=float("-inf")),
     [("data", (3, 2, 2))], values={"op_sequence_length": seq_lengths(0, 3, [1, 2.5])},
     notes="masked with -inf, as attention masks do")

for i in range(22):
    shape = _seq_shape(i)
    steps = shape[0]
    attrs = dict(use_sequence_length=i % 5 != 4)
    if i % 3 == 0:
        attrs["axis"] = 0
    extras = [[steps + 0.9, 0.5], [steps, 0], [steps - 0.5]][i % 3]
    case("seqrev_%d" % i, "SequenceReverse", attrs, [("data", shape)],
         values={"op_sequence_length": seq_lengths(0, steps, extras)})

for i in range(22):
    shape = _seq_shape(i)
    axis = (i // 2) % 2
    steps = shape[axis]
    attrs = dict(use_sequence_length=True)
    if axis or i % 4 == 0:
        attrs["axis"] = axis
    extras = [[steps + 0.9, 1], [steps, 1.5], [1.99]][i % 3]
    case("seqlast_len_%d" % i, "SequenceLast", attrs, [("data", shape)],
         values={"op_sequence_length": seq_lengths(1, steps, extras)})


# --- RNN ---------------------------------------------------------------------
def rnn_case(mode, layers, bidirectional, state_outputs, t=4, n=2, i=3, h=3, suffix=""):
    d = 2 if bidirectional else 1
    name = "rnn_%s_l%d_%s%s%s" % (mode, layers, "bi" if bidirectional else "uni",
                                  "" if state_outputs else "_nostate", suffix)
    data = [("data", (t, n, i)), ("state", (layers * d, n, h))]
    if mode == "lstm":
        data.append(("state_cell", (layers * d, n, h)))

    def build(v, mode=mode, layers=layers, bidirectional=bidirectional, h=h,
              state_outputs=state_outputs):
        kw = dict(data=v("data"), parameters=v("op_parameters"), state=v("state"),
                  mode=mode, state_size=h, num_layers=layers, bidirectional=bidirectional,
                  state_outputs=state_outputs, name="op")
        if mode == "lstm":
            kw["state_cell"] = v("state_cell")
        return mx.sym.RNN(**kw)

    case(name, "RNN", dict(mode=mode, state_size=h, num_layers=layers,
                           bidirectional=bidirectional, state_outputs=state_outputs),
         data, build=build, values={"op_parameters": uniform(-0.6, 0.6),
                                    "state": scaled(0.5), "state_cell": scaled(0.5)},
         notes="TNC; packed parameters; random initial states")


for mode in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
    for layers in (1, 2):
        for bi in (False, True):
            rnn_case(mode, layers, bi, True)
    rnn_case(mode, 2, True, False)
rnn_case("lstm", 1, False, True, t=1, n=3, i=2, h=2, suffix="_one_step")

# --- loss heads and gradient control -----------------------------------------
case("linearregressionoutput", "LinearRegressionOutput", {},
     [("data", (3, 4)), ("op_label", (3, 4))], labels=["op_label"])
case("logisticregressionoutput", "LogisticRegressionOutput", dict(grad_scale=0.5),
     [("data", (3, 4)), ("op_label", (3, 4))], labels=["op_label"], values={"data": scaled(3.0)})
case("maeregressionoutput", "MAERegressionOutput", {},
     [("data", (2, 5)), ("op_label", (2, 5))], labels=["op_label"])
case("makeloss", "MakeLoss", {}, [("data", (2, 3))])
case("makeloss_batch_norm_scale", "MakeLoss", dict(grad_scale=2.0, normalization="batch"),
     [("data", (4,))])
case("makeloss_batch_3d", "MakeLoss", dict(grad_scale=3.0, normalization="batch"),
     [("data", (2, 3, 4))], notes="gradient: batch is the rows of all axes but the last")
case("makeloss_valid", "MakeLoss", dict(normalization="valid", valid_thresh=0.3),
     [("data", (3, 4))], notes="gradient: divided by the elements over valid_thresh")
case("linearregressionoutput_vector_label", "LinearRegressionOutput", dict(grad_scale=2.0),
     [("data", (4, 1)), ("op_label", (4,))], labels=["op_label"])
case("maeregressionoutput_3d", "MAERegressionOutput", dict(grad_scale=0.5),
     [("data", (2, 3, 2)), ("op_label", (2, 3, 2))], labels=["op_label"])
case("blockgrad", "BlockGrad", {}, [("data", (2, 3))])
case("stop_gradient", "stop_gradient", {}, [("data", (3, 2))], notes="the alias, stored as BlockGrad")


# --- resizing: adaptive pooling, bilinear resize, upsampling ------------------
AAP = "contrib.AdaptiveAvgPooling2D"
for name, attrs, shape in [
    ("default", {}, (2, 3, 7, 5)),
    ("one", dict(output_size=1), (2, 3, 7, 5)),
    ("square3", dict(output_size=3), (2, 3, 7, 5)),
    ("h2_w4", dict(output_size=(2, 4)), (2, 3, 7, 5)),
    ("identity", dict(output_size=(7, 5)), (1, 2, 7, 5)),
    ("up_10x11", dict(output_size=(10, 11)), (1, 2, 7, 5)),
    ("h1_w5", dict(output_size=(1, 5)), (2, 2, 7, 5)),
    ("h5_w1", dict(output_size=(5, 1)), (2, 2, 7, 5)),
    ("none", dict(output_size=None), (1, 3, 4, 6)),
    ("empty_tuple", dict(output_size=()), (1, 3, 4, 6)),
    ("from_1x1", dict(output_size=(3, 2)), (2, 2, 1, 1)),
    ("13x17_to_4x6", dict(output_size=(4, 6)), (1, 2, 13, 17)),
    ("divisible", dict(output_size=3), (1, 2, 6, 6)),
    ("6_to_4", dict(output_size=4), (1, 2, 6, 6)),
    ("row", dict(output_size=(1, 4)), (1, 2, 1, 9)),
    ("column", dict(output_size=(2, 1)), (1, 2, 9, 1)),
    ("batch3_16_to_7", dict(output_size=7), (3, 1, 16, 16)),
    ("5_to_5", dict(output_size=5), (1, 1, 5, 5)),
    ("3x8_to_2x3", dict(output_size=(2, 3)), (2, 2, 3, 8)),
    ("8x3_to_6x2", dict(output_size=(6, 2)), (2, 2, 8, 3)),
    ("2x2_to_5x5", dict(output_size=5), (1, 3, 2, 2)),
    ("11x7_to_3x7", dict(output_size=(3, 7)), (1, 2, 11, 7)),
]:
    case("adaptiveavgpool_" + name, AAP, attrs, [("data", shape)])

BR = "contrib.BilinearResize2D"
for name, attrs, data in [
    ("size_7x2", dict(height=7, width=2), [("data", (1, 2, 3, 5))]),
    ("size_7x2_noalign", dict(height=7, width=2, align_corners=False), [("data", (1, 2, 3, 5))]),
    ("size_1x1", dict(height=1, width=1), [("data", (2, 2, 3, 5))]),
    ("size_1x1_noalign", dict(height=1, width=1, align_corners=False), [("data", (2, 2, 3, 5))]),
    ("size_1x4_noalign", dict(height=1, width=4, align_corners=False), [("data", (1, 2, 3, 5))]),
    ("size_identity", dict(height=3, width=5), [("data", (1, 2, 3, 5))]),
    ("size_down_noalign", dict(height=2, width=3, align_corners=False), [("data", (2, 3, 6, 9))]),
    ("size_down", dict(height=2, width=3), [("data", (2, 3, 6, 9))]),
    ("scale_1.5_0.7", dict(scale_height=1.5, scale_width=0.7), [("data", (1, 2, 5, 6))]),
    ("scale_2_noalign", dict(scale_height=2.0, scale_width=2.0, align_corners=False),
     [("data", (2, 2, 3, 4))]),
    ("scale_half_noalign", dict(scale_height=0.5, scale_width=0.5, align_corners=False),
     [("data", (1, 3, 8, 6))]),
    ("scale_width_alone_ignored", dict(height=3, width=4, scale_width=2.0),
     [("data", (1, 2, 5, 6))]),
    ("odd_scale_2.5_0.5", dict(mode="odd_scale", scale_height=2.5, scale_width=0.5),
     [("data", (1, 2, 5, 6))]),
    ("odd_scale_2_noalign", dict(mode="odd_scale", scale_height=2.0, scale_width=2.0,
                                 align_corners=False), [("data", (1, 2, 4, 5))]),
    ("like", dict(mode="like"), [("data", (1, 2, 4, 5)), ("like", (2, 3, 7, 3))]),
    ("like_noalign", dict(mode="like", align_corners=False),
     [("data", (2, 2, 4, 5)), ("like", (1, 1, 9, 8))]),
    ("to_even_down", dict(mode="to_even_down"), [("data", (1, 2, 5, 6))]),
    ("to_even_up_noalign", dict(mode="to_even_up", align_corners=False), [("data", (1, 2, 5, 6))]),
    ("to_odd_down", dict(mode="to_odd_down"), [("data", (1, 2, 5, 6))]),
    ("to_odd_up_noalign", dict(mode="to_odd_up", align_corners=False), [("data", (1, 2, 4, 7))]),
    ("from_1x1", dict(height=3, width=4), [("data", (1, 2, 1, 1))]),
    ("from_1x1_noalign", dict(height=3, width=4, align_corners=False), [("data", (1, 2, 1, 1))]),
    ("up_17x13_noalign", dict(height=17, width=13, align_corners=False), [("data", (1, 2, 3, 3))]),
    ("up_17x13", dict(height=17, width=13), [("data", (1, 2, 3, 3))]),
]:
    case("bilinearresize_" + name, BR, attrs, data)

UP = "UpSampling"
for name, attrs, data in [
    ("nearest_2", dict(scale=2, num_args=1), [("data", (1, 2, 2, 3))]),
    ("nearest_1", dict(scale=1, num_args=1), [("data", (1, 2, 2, 3))]),
    ("nearest_3", dict(scale=3, num_args=1), [("data", (2, 3, 4, 5))]),
    ("nearest_2_from_1x1", dict(scale=2, num_args=1), [("data", (1, 2, 1, 1))]),
    ("nearest_hints_ignored", dict(scale=3, num_args=1, num_filter=5, workspace=100),
     [("data", (1, 2, 2, 3))]),
    ("nearest_concat_2", dict(scale=2, num_args=2), [("a", (1, 2, 2, 3)), ("b", (1, 3, 4, 6))]),
    ("nearest_concat_smaller_second", dict(scale=1, num_args=2),
     [("a", (1, 2, 4, 6)), ("b", (1, 3, 2, 3))]),
    ("nearest_concat_3", dict(scale=3, num_args=3),
     [("a", (2, 1, 2, 2)), ("b", (2, 2, 3, 3)), ("c", (2, 1, 6, 6))]),
    ("nearest_sum_2", dict(scale=2, num_args=2, multi_input_mode="sum"),
     [("a", (1, 2, 2, 3)), ("b", (1, 2, 4, 6))]),
    ("nearest_sum_3", dict(scale=4, num_args=3, multi_input_mode="sum"),
     [("a", (1, 3, 1, 2)), ("b", (1, 3, 2, 4)), ("c", (1, 3, 4, 8))]),
    ("nearest_4_nonsquare", dict(scale=4, num_args=1), [("data", (1, 1, 3, 2))]),
    ("nearest_5", dict(scale=5, num_args=1), [("data", (1, 2, 1, 3))]),
    ("nearest_batch3", dict(scale=2, num_args=1), [("data", (3, 2, 3, 3))]),
    ("nearest_concat_explicit", dict(scale=2, num_args=1, multi_input_mode="concat"),
     [("data", (1, 2, 2, 2))]),
    ("nearest_sum_single", dict(scale=2, num_args=1, multi_input_mode="sum"),
     [("data", (1, 2, 2, 2))]),
    ("nearest_concat_1x1", dict(scale=2, num_args=2), [("a", (1, 1, 1, 1)), ("b", (1, 2, 2, 2))]),
    ("nearest_concat_full_size_second", dict(scale=3, num_args=2),
     [("a", (1, 2, 2, 2)), ("b", (1, 1, 6, 6))]),
    ("bilinear_2", dict(scale=2, num_args=2, sample_type="bilinear", num_filter=2),
     [("data", (1, 2, 5, 5))]),
    ("bilinear_3", dict(scale=3, num_args=2, sample_type="bilinear", num_filter=3),
     [("data", (1, 3, 4, 4))]),
    ("bilinear_4_nonsquare", dict(scale=4, num_args=2, sample_type="bilinear", num_filter=1),
     [("data", (2, 1, 3, 2))]),
    ("bilinear_1", dict(scale=1, num_args=2, sample_type="bilinear", num_filter=2),
     [("data", (1, 2, 3, 3))]),
]:
    if "sample_type" not in attrs:
        attrs["sample_type"] = "nearest"
    case("upsampling_" + name, UP, attrs, data)


# --- element-wise math functions (issue 20) ------------------------------------
# Each function over 4 random shapes of rank 1 to 4 (values in its domain) and one
# vector of its edge values: NaN, infinities, zeros, domain ends, and for the rounding
# functions the halves (C's round takes them away from zero, rint to even) and the
# float32 just below 0.5, which floor(x + 0.5) would round the wrong way.
_math_rng = np.random.RandomState(2020)
_ROUNDING_EDGES = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997,
                   8388607.5, -8388607.5, 0.0, -0.0, np.nan, np.inf, -np.inf, 3.0, -7.25]


def _away_from_zero(lo, hi):
    def f(rng, shape):
        return rng.uniform(lo, hi, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return f


def _fixed(vals):
    return lambda rng, shape: np.array(vals, dtype=np.float32).reshape(shape)


_MATH = [
    # (operator, random values, edge values)
    ("erf", scaled(1.5), [0.0, -0.0, 1e-4, -3.0, 5.0, np.nan, np.inf, -np.inf]),
    ("square", scaled(3.0), [0.0, -1e19, 1e19, np.nan, np.inf, -np.inf]),
    ("rsqrt", uniform(0.05, 6.0), [1.0, 0.0, -1.0, np.inf, np.nan, 1e-20]),
    ("reciprocal", _away_from_zero(0.1, 4.0), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e30]),
    ("cbrt", scaled(4.0), [0.0, -8.0, 27.0, np.nan, np.inf, -np.inf]),
    ("rcbrt", _away_from_zero(0.1, 6.0), [-8.0, 27.0, np.nan, np.inf, 0.125]),
    ("log1p", uniform(-0.9, 4.0), [0.0, 1e-7, -1.0, -2.0, np.inf, np.nan]),
    ("expm1", scaled(2.0), [0.0, 1e-7, -1e-7, 50.0, -np.inf, np.nan]),
    ("log2", uniform(0.05, 8.0), [1.0, 2.0, 0.0, -1.0, np.inf, np.nan]),
    ("log10", uniform(0.05, 8.0), [1.0, 10.0, 0.0, -1.0, np.inf, np.nan]),
    ("sin", scaled(3.0), [0.0, np.pi, -np.pi / 2, np.nan, np.inf]),
    ("cos", scaled(3.0), [0.0, np.pi, -np.pi / 2, np.nan, -np.inf]),
    ("tan", uniform(-1.4, 1.4), [0.0, 0.785, -1.0, np.nan, np.inf]),
    ("arcsin", uniform(-0.98, 0.98), [1.0, -1.0, 0.0, 1.5, np.nan]),
    ("arccos", uniform(-0.98, 0.98), [1.0, -1.0, 0.0, -1.5, np.nan]),
    ("arctan", scaled(3.0), [0.0, np.inf, -np.inf, 1e10, np.nan]),
    ("sinh", scaled(2.0), [0.0, 20.0, -20.0, np.nan, np.inf]),
    ("cosh", scaled(2.0), [0.0, 20.0, -20.0, np.nan, -np.inf]),
    ("arcsinh", scaled(3.0), [0.0, 1e5, -1e5, np.nan, np.inf]),
    ("arccosh", uniform(1.05, 6.0), [1.0, 0.5, 1e5, np.nan, np.inf]),
    ("arctanh", uniform(-0.95, 0.95), [0.0, 1.0, -1.0, 2.0, np.nan]),
    ("degrees", scaled(3.0), [0.0, np.pi, np.nan, np.inf]),
    ("radians", scaled(200.0), [0.0, 180.0, np.nan, -np.inf]),
    ("floor", scaled(3.0), _ROUNDING_EDGES),
    ("ceil", scaled(3.0), _ROUNDING_EDGES),
    ("round", scaled(3.0), _ROUNDING_EDGES),
    ("rint", scaled(3.0), _ROUNDING_EDGES),
    ("trunc", scaled(3.0), _ROUNDING_EDGES),
    ("fix", scaled(3.0), _ROUNDING_EDGES),
    ("sign", scaled(2.0), [0.0, -0.0, 3.0, -2.0, np.nan, np.inf, -np.inf]),
    ("softsign", scaled(3.0), [0.0, np.inf, -np.inf, np.nan, 1e30]),
]
for op, values, edges in _MATH:
    for k in range(4):
        shape = tuple(int(d) for d in _math_rng.randint(1, 5, size=k + 1))
        case("math_%s_%d" % (op, k), op, {}, [("data", shape)], values={"data": values})
    case("math_%s_edges" % op, op, {}, [("data", (len(edges),))],
         values={"data": _fixed(edges)})


# --- L2Normalization (issue 20) -----------------------------------------------
# Every mode over random shapes (instance from rank 1, channel and spatial from rank 3,
# as MXNet requires), MXNet's default eps and others, and data with an all-zero sample
# (its norm is √eps, so it stays 0).
_l2_rng = np.random.RandomState(2021)


def _zero_first(rng, shape):
    a = rng.normal(0, 2, size=shape)
    a[0] = 0
    return a


for i in range(24):
    mode = ("instance", "channel", "spatial")[i % 3]
    rank = 1 + i % 5 if mode == "instance" else 3 + i % 3
    shape = tuple(int(d) for d in _l2_rng.randint(1, 5, size=rank))
    attrs = {} if i % 3 == 0 and i % 2 == 0 else dict(mode=mode)
    if i % 4 == 1:
        attrs["eps"] = (1e-3, 0.5, 1e-6)[i % 3]
    values = {"data": _zero_first} if i % 5 == 2 else {}
    case("l2norm_%d_%s" % (i, mode), "L2Normalization", attrs, [("data", shape)], values=values)


# --- _arange and _contrib_arange_like (issue 20) --------------------------------
# _arange: MXNet's float32 arithmetic (start + k·step in float32) over counts from
# ⌈(stop − start) / step⌉, with no stop ([0, start)), negative and fractional steps
# (0.1 is not exact in float32), repeats and a long range. arange_like: the shape or one
# dim of its input, negative axes, start, step and repeat.
_ARANGES = [
    dict(start=0, stop=5), dict(start=3), dict(start=2.5), dict(start=1, stop=4, step=0.5),
    dict(start=5, stop=1, step=-1.5), dict(start=-3, stop=3, step=0.1),
    dict(start=0, stop=1, step=0.3), dict(start=10, stop=-10, step=-0.7),
    dict(start=1, stop=4, step=0.5, repeat=2), dict(start=0, stop=3, repeat=3),
    dict(start=0, stop=1000), dict(start=100000, stop=100050, step=1.3),
    dict(start=-1e-3, stop=1e-3, step=1e-4), dict(start=0.5, stop=0.6, step=1),
    dict(start=7, stop=8, step=0.25, repeat=4), dict(start=2, stop=-2, step=-0.5, repeat=2),
    dict(start=-5, stop=5, step=2), dict(start=1e6, stop=1e6 + 8, step=1),
    dict(start=0, stop=6, step=3), dict(start=1, stop=2, step=0.0625),
]
for i, attrs in enumerate(_ARANGES):
    case("arange_%d" % i, "_internal._arange", attrs, [])
_arange_rng = np.random.RandomState(2022)
for i in range(22):
    rank = 1 + i % 4
    shape = tuple(int(d) for d in _arange_rng.randint(1, 5, size=rank))
    attrs = {}
    if i % 3 == 1:
        attrs["axis"] = int(_arange_rng.randint(-rank, rank))
    if i % 2 == 1:
        attrs["start"] = float(_arange_rng.choice([-2.0, 0.5, 3.0]))
    if i % 4 == 2:
        attrs["step"] = float(_arange_rng.choice([-1.0, 0.25, 2.0]))
    if i % 5 == 3:
        attrs["repeat"] = int(_arange_rng.randint(2, 4))
    case("arangelike_%d" % i, "contrib.arange_like", attrs, [("data", shape)])


# --- Cast and amp_cast to float dtypes (issue 20) --------------------------------
# float16 rounds (ties to even, ±inf past 65504, subnormals), float32 and float64 keep the
# value; each over random shapes and values spanning float16's range.
_cast_rng = np.random.RandomState(2023)
_HALF_EDGES = [1.0001, 65519.0, 65520.0, 70000.0, -1e-8, 6e-8, 1e-5, np.nan, np.inf,
               -np.inf, 0.1, -2049.0, 2049.0, 0.0]


def _wide(rng, shape):
    return rng.normal(0, 1, size=shape) * 10.0 ** rng.randint(-6, 5, size=shape)


# MXNet 1.9.1's oneDNN build fails amp_cast to float64 ("unknown type for MKLDNN"), so
# those are Cast only.
for i in range(21):
    dtype = ("float16", "float32", "float64")[i % 3]
    op = "Cast" if dtype == "float64" else ("Cast", "amp_cast")[i % 2]
    shape = tuple(int(d) for d in _cast_rng.randint(1, 5, size=1 + i % 4))
    case("cast_%d_%s_%s" % (i, op.lower(), dtype), op, dict(dtype=dtype), [("data", shape)],
         values={"data": _wide})
for op in ("Cast", "amp_cast"):
    case("cast_%s_float16_edges" % op.lower(), op, dict(dtype="float16"),
         [("data", (len(_HALF_EDGES),))], values={"data": _fixed(_HALF_EDGES)})


# --- mod, power, hypot, and maximum/minimum with a scalar (issue 20) ----------------
# mod: C's fmod in double, plus the divisor where the remainder's sign differs from it
# (Python's sign rule), 0 for a zero divisor; power: powf; hypot: hypotf. Each as
# `_op` (same shapes), `broadcast_op` and with a scalar on either side.
_arith_rng = np.random.RandomState(2031)


def _divisors(rng, shape):
    # Magnitudes 0.5 to 3 of either sign: no zero divisor in the random cases.
    return rng.uniform(0.5, 3.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


_ARITH = [
    # (binary stem, lhs values, rhs values)
    ("mod", scaled(4.0), _divisors),
    ("power", uniform(0.1, 3.0), scaled(1.5)),
    ("hypot", scaled(3.0), scaled(3.0)),
]
_ARITH_SHAPES = [((2, 3), (2, 3)), ((2, 3, 4), (1, 3, 1)), ((4,), (2, 3, 4)),
                 ((3, 1), (1, 5)), ((1,), (2, 2)), ((2, 1, 3), (2, 4, 1)),
                 ((5,), (5,)), ((1, 1), (3, 2))]
for stem, lhs, rhs in _ARITH:
    for i, (a, b) in enumerate(_ARITH_SHAPES):
        case("arith_broadcast_%s_%d" % (stem, i), "broadcast_" + stem, {},
             [("lhs", a), ("rhs", b)], values={"lhs": lhs, "rhs": rhs})
    for i, shape in enumerate([(2, 3), (4,), (1, 2, 3, 2), (3, 3)]):
        case("arith_%s_%d" % (stem, i), "_internal._" + stem, {},
             [("lhs", shape), ("rhs", shape)], values={"lhs": lhs, "rhs": rhs})
case("arith_broadcast_mod_edges", "broadcast_mod", {}, [("lhs", (10,)), ("rhs", (10,))],
     values={"lhs": _fixed([5.0, -5.0, 5.0, -5.0, 7.5, -0.0, 3.0, np.nan, np.inf, 4.0]),
             "rhs": _fixed([3.0, 3.0, -3.0, -3.0, 2.5, 2.0, 0.0, 2.0, 2.0, np.inf])},
     notes="sign rules, a zero divisor gives 0, NaN and infinities")
case("arith_broadcast_power_edges", "broadcast_power", {}, [("lhs", (9,)), ("rhs", (9,))],
     values={"lhs": _fixed([-2.0, -2.0, 0.0, 0.0, 2.0, np.nan, 1.0, -8.0, 10.0]),
             "rhs": _fixed([3.0, 0.5, 0.0, -1.0, 40.0, 0.0, np.nan, 1.0 / 3.0, -40.0])},
     notes="negative bases, 0^0, 0^-1, overflow, NaN")
case("arith_broadcast_hypot_edges", "broadcast_hypot", {}, [("lhs", (7,)), ("rhs", (7,))],
     values={"lhs": _fixed([0.0, 3.0, -3.0, 1e30, 1e-30, np.inf, 5.0]),
             "rhs": _fixed([0.0, 4.0, -4.0, 1e30, 1e-30, 1.0, -np.inf])},
     notes="no overflow past float32's square root, infinities")
_SCALARS = [
    ("_mod_scalar", scaled(4.0), [2.5, -2.5, 0.7, 3.0]),
    ("_rmod_scalar", _divisors, [2.5, -2.5, 7.0, 0.0]),
    ("_power_scalar", uniform(0.1, 3.0), [2.0, 3.0, 0.5, -1.5]),
    ("_rpower_scalar", scaled(1.5), [2.0, 0.5, 10.0, 1.0]),
    ("_maximum_scalar", scaled(2.0), [0.0, 0.5, -1.0, 3.0]),
    ("_minimum_scalar", scaled(2.0), [0.0, 0.5, -1.0, 3.0]),
    ("_hypot_scalar", scaled(3.0), [0.0, 4.0, -2.5, 1e-3]),
]
for op, values, scalars in _SCALARS:
    for i, sc in enumerate(scalars):
        shape = tuple(int(d) for d in _arith_rng.randint(1, 5, size=1 + i % 3))
        case("arith_%s_%d" % (op.strip("_"), i), "_internal." + op, dict(scalar=sc),
             [("data", shape)], values={"data": values})
case("arith_maximum_scalar_nan", "_internal._maximum_scalar", dict(scalar=0.5),
     [("data", (6,))], values={"data": _fixed([np.nan, 0.5, -np.inf, np.inf, 0.4, 0.6])},
     notes="NaN propagates; a tie sends the gradient to the data (ge)")
case("arith_minimum_scalar_nan", "_internal._minimum_scalar", dict(scalar=0.5),
     [("data", (6,))], values={"data": _fixed([np.nan, 0.5, -np.inf, np.inf, 0.4, 0.6])})
case("arith_mod_scalar_default", "_internal._mod_scalar", {}, [("data", (2, 3))],
     values={"data": scaled(3.0)}, notes="the default scalar is 1")


# --- softmax with use_length, shape_array and size_array (issue 20) -----------------
# use_length: the softmax over the first `length` elements of each lane, zeros after; a
# length of 0 gives zeros. MXNet takes integer lengths
# only (float ones are refused), shaped as the data without the axis; its axis is -1 or
# non-negative (other negative axes fail MXNet's own shape inference).
_sml_rng = np.random.RandomState(2037)


def _lengths(hi):
    # Up to the axis's length: past it MXNet's kernel writes past the lane (the process
    # died of heap corruption after a run of such cases); ward clamps to the axis.
    return lambda rng, shape: rng.randint(0, hi + 1, size=shape)


for i in range(20):
    rank = 2 + i % 3
    shape = tuple(int(d) for d in _sml_rng.randint(1, 6, size=rank))
    # MXNet 1.9.1's shape inference fails for a negative axis other than -1 here.
    axis = int(_sml_rng.randint(-1, rank))
    a = axis % rank
    lanes = tuple(d for k, d in enumerate(shape) if k != a)
    attrs = dict(axis=axis, use_length=True)
    if i % 4 == 3:
        attrs["temperature"] = 0.5 + i / 10.0
    case("softmax_length_%d" % i, "softmax", attrs, [("data", shape), ("length", lanes)],
         values={"length": _lengths(shape[a])}, dtypes={"length": ("int32", "int64")[i % 2]})
case("softmax_length_bert", "softmax", dict(axis=-1, use_length=True),
     [("data", (2, 2, 5, 5)), ("length", (2, 2, 5))],
     values={"length": lambda rng, shape: np.array([3, 5, 0, 1] * 5).reshape(shape)},
     dtypes={"length": "int32"}, notes="BERT's masked attention: lengths by sequence")
for i in range(20):
    rank = 1 + i % 5
    shape = tuple(int(d) for d in _sml_rng.randint(1, 5, size=rank))
    op = ("shape_array", "size_array")[i % 2]
    case("%s_%d" % (op.replace("_array", "array"), i), op, {}, [("data", shape)])


# --- Cast to integer types (issue 20) ----------------------------------------------
# Truncation toward zero; past the type's range and for NaN/inf MXNet's build gives what
# x86's conversion gives (the minimum of int32 and int64; an 8-bit type keeps the low
# byte of the int32 conversion: 300 -> 44, -129 -> 127 in int8). The output is written in
# float32, which holds every result here exactly.
_icast_rng = np.random.RandomState(2029)
_INT_EDGES = [-2.7, -0.5, 0.5, 2.7, 3e9, -3e9, np.nan, np.inf, -np.inf, 300.0, -129.0,
              255.9, 256.5, 127.5, -128.5, 2147483520.0, -2147483648.0, 16777216.0]


def _int_range(rng, shape):
    return rng.uniform(-400, 400, size=shape) * 10.0 ** rng.randint(0, 3, size=shape)


for i in range(20):
    dtype = ("int32", "int64", "int8", "uint8")[i % 4]
    shape = tuple(int(d) for d in _icast_rng.randint(1, 5, size=1 + i % 3))
    case("cast_int_%d_%s" % (i, dtype), "Cast", dict(dtype=dtype), [("data", shape)],
         values={"data": _int_range})
for dtype in ("int32", "int64", "int8", "uint8"):
    case("cast_int_edges_%s" % dtype, "Cast", dict(dtype=dtype),
         [("data", (len(_INT_EDGES),))], values={"data": _fixed(_INT_EDGES)})


# --- _copy (identity) and SyncBatchNorm (issue 20) --------------------------------
for i, (op, shape) in enumerate([("_internal._copy", (3,)), ("_internal._copy", (2, 3, 4)),
                                 ("identity", (1, 5)), ("identity", (2, 1, 2, 3))]):
    case("copy_%d" % i, op, {}, [("data", shape)],
         values={"data": special(np.nan, np.inf, -0.0)} if i == 1 else {})
_SYNC = "contrib.SyncBatchNorm"
case("syncbn_defaults", _SYNC, dict(key="g"), [("data", (2, 3, 4, 4))])
case("syncbn_gamma_eps", _SYNC, dict(key="g", fix_gamma=False, eps=1e-5), [("data", (2, 3, 3, 2))])
case("syncbn_2d", _SYNC, dict(key="g", fix_gamma=False, ndev=1), [("data", (4, 5))])
case("syncbn_global_stats", _SYNC, dict(key="g", fix_gamma=False, use_global_stats=True),
     [("data", (2, 4, 3))])
case("syncbn_train", _SYNC, dict(key="g", fix_gamma=False, momentum=0.8),
     [("data", (4, 3, 2, 2))], train=True,
     notes="training mode on one device: batch statistics, moving ones updated in backward")


# --- _contrib_div_sqrt_dim (issue 20): x / sqrt(last dim), the root in float32 -------
for i, shape in enumerate([(3,), (2, 5), (2, 3, 7), (1, 2, 2, 16), (4, 1)]):
    case("divsqrtdim_%d" % i, "contrib.div_sqrt_dim", {}, [("data", shape)])


# --- _contrib_box_nms, box_decode, box_encode (issue 20): GluonCV's detectors -------
# box_nms: rows of (…, boxes, width) holding a score, 4 coordinates and maybe a class;
# boxes clustered so that they overlap, scores with ties (MXNet sorts stably: equal
# scores keep their row order), negative and NaN scores (never valid), fractional and
# background classes, coordinates below 0 (MXNet leaves such a surviving row unconverted
# when out_format differs), negative widths (area 0). Every attribute, batch dims of
# rank 0 to 2, one box (MXNet 1.9.1's symbols take no dim of 0: its shape inference
# reads 0 as unknown).
_box_rng = np.random.RandomState(2040)


def nms_rows(coord_start=2, score_index=1, id_index=None, classes=3, center=False,
             ties=False, nan=0.0, negative=0.1, frac_ids=False, clusters=3):
    def f(rng, shape):
        a = rng.normal(0, 1, size=shape).astype(np.float32)
        flat = a.reshape(-1, shape[-1])
        n = flat.shape[0]
        if n == 0:
            return a
        cx = rng.uniform(-0.1, 0.9, size=clusters)
        cy = rng.uniform(-0.1, 0.9, size=clusters)
        k = rng.randint(0, clusters, size=n)
        x = cx[k] + rng.normal(0, 0.04, size=n)
        y = cy[k] + rng.normal(0, 0.04, size=n)
        w = rng.uniform(0.1, 0.4, size=n)
        h = rng.uniform(0.1, 0.4, size=n)
        if center:
            box = np.stack([x + w / 2, y + h / 2, w, h], axis=1)
        else:
            box = np.stack([x, y, x + w, y + h], axis=1)
        flat[:, coord_start:coord_start + 4] = box
        if ties:
            score = rng.randint(1, 4, size=n) / 4.0
        else:
            score = rng.uniform(0, 1, size=n)
        score[rng.rand(n) < negative] *= -1
        if nan:
            score[rng.rand(n) < nan] = np.nan
        flat[:, score_index] = score
        if id_index is not None:
            ids = rng.randint(0, classes, size=n).astype(np.float32)
            if frac_ids:
                ids += rng.choice([0.0, 0.3, 0.7], size=n)
            flat[:, id_index] = ids
        return a
    return f


def _nms_case(name, attrs, shape, **rows):
    layout = {k: attrs[k] for k in ("coord_start", "score_index") if k in attrs}
    if attrs.get("id_index", -1) >= 0:
        layout["id_index"] = attrs["id_index"]
    rows = dict(rows)
    rows.update(layout)
    rows.setdefault("center", attrs.get("in_format") == "center")
    case("boxnms_" + name, "contrib.box_nms", attrs, [("data", shape)],
         values={"data": nms_rows(**rows)})


_nms_case("default", {}, (10, 6))
_nms_case("ids", dict(id_index=0), (2, 12, 6))
_nms_case("ids_force", dict(id_index=0, force_suppress=True, overlap_thresh=0.3), (12, 6))
_nms_case("topk3", dict(topk=3), (3, 15, 6))
_nms_case("topk0_identity", dict(topk=0, out_format="center"), (2, 6, 6))
_nms_case("topk_past_n", dict(topk=50, valid_thresh=0.2), (8, 6))
_nms_case("valid_thresh", dict(valid_thresh=0.45, overlap_thresh=0.2), (2, 14, 6))
_nms_case("overlap_zero", dict(overlap_thresh=0.0), (12, 6))
_nms_case("overlap_one", dict(overlap_thresh=1.0), (9, 6))
_nms_case("center", dict(in_format="center", out_format="center"), (2, 10, 6))
_nms_case("corner_to_center", dict(out_format="center", overlap_thresh=0.35), (2, 11, 6),
          negative=0.0)
_nms_case("center_to_corner", dict(in_format="center", out_format="corner"), (13, 6))
_nms_case("layout", dict(coord_start=0, score_index=4, id_index=5, background_id=1), (2, 9, 7))
_nms_case("background", dict(id_index=0, background_id=0, topk=6), (2, 10, 6))
_nms_case("batch_rank4", dict(id_index=0, overlap_thresh=0.4), (2, 2, 8, 6))
_nms_case("ties", {}, (2, 16, 6), ties=True, clusters=2)
_nms_case("ties_topk", dict(topk=5, id_index=0, force_suppress=True), (20, 6), ties=True)
_nms_case("nan", dict(id_index=0), (14, 6), nan=0.2)
_nms_case("one_box", dict(id_index=0), (3, 1, 6))
_nms_case("large_topk", dict(topk=40, id_index=0, overlap_thresh=0.45), (2, 120, 6),
          clusters=12)
_nms_case("score_first", dict(score_index=0, coord_start=1), (11, 5))
_nms_case("frac_ids", dict(id_index=5, coord_start=1, score_index=0, background_id=2),
          (12, 6), frac_ids=True)
_nms_case("center_ids_force", dict(in_format="center", id_index=0, force_suppress=True,
                                   overlap_thresh=0.25), (2, 9, 6))
_nms_case("all_invalid", dict(valid_thresh=2.0, out_format="center"), (2, 5, 6))
_nms_case("extra_cols", dict(coord_start=3, score_index=1, id_index=8, topk=7), (2, 10, 9),
          classes=2)
case("boxnms_alias", "contrib.box_non_maximum_suppression", dict(overlap_thresh=0.3),
     [("data", (8, 6))], values={"data": nms_rows()})
# Negative widths and heights: MXNet's area is 0 there.
case("boxnms_negative_size", "contrib.box_nms", dict(overlap_thresh=0.1), [("data", (10, 6))],
     values={"data": lambda rng, shape: np.concatenate(
         [rng.uniform(0, 1, size=(shape[0], 2)), rng.uniform(0, 1, size=(shape[0], 4))],
         axis=1)})


# box_decode: offsets (batch, n, 4) against anchors (1, n, 4) in either format, with
# every std and clip (<= 0 is none), anchors of rank 4 and n of 1.
def anchors_for(center):
    def f(rng, shape):
        flat = np.zeros((int(np.prod(shape[:-1])), 4), dtype=np.float32)
        n = flat.shape[0]
        x = rng.uniform(0, 1, size=n)
        y = rng.uniform(0, 1, size=n)
        w = rng.uniform(0.05, 0.5, size=n)
        h = rng.uniform(0.05, 0.5, size=n)
        if center:
            flat[:] = np.stack([x, y, w, h], axis=1)
        else:
            flat[:] = np.stack([x, y, x + w, y + h], axis=1)
        return flat.reshape(shape)
    return f


def _dec_case(name, attrs, data, anchors, scale=1.0):
    case("boxdec_" + name, "contrib.box_decode", attrs, [("data", data), ("anchors", anchors)],
         values={"data": scaled(scale),
                 "anchors": anchors_for(attrs.get("format", "center") == "center")})


for i in range(16):
    b = int(_box_rng.randint(1, 4))
    n = int(_box_rng.randint(1, 12))
    attrs = {}
    if i % 2:
        attrs["format"] = "corner"
    elif i % 4 == 2:
        attrs["format"] = "center"
    if i % 3 == 1:
        for k in range(4):
            attrs["std%d" % k] = float(np.float32(_box_rng.choice([0.1, 0.2, 0.5, 2.0])))
    if i % 4 == 3:
        attrs["clip"] = float(np.float32(_box_rng.choice([0.5, 1.0, 4.135])))
    elif i % 8 == 4:
        attrs["clip"] = -2.0
    _dec_case("%d" % i, attrs, (b, n, 4), (1, n, 4), scale=[0.5, 1.0, 2.0][i % 3])
_dec_case("anchors_rank4", dict(format="corner"), (2, 5, 4), (1, 1, 5, 4))
_dec_case("anchors_n1", dict(format="corner"), (1, 5, 4), (5, 1, 4))
_dec_case("one", {}, (1, 1, 4), (1, 1, 4))
_dec_case("clip_big", dict(clip=1.0, std2=0.2, std3=0.2, format="corner"), (2, 6, 4),
          (1, 6, 4), scale=8.0)


# box_encode: samples (> 0.5 positive), matches (an index into refs, truncated), anchors
# and refs in corner format, means and stds. MXNet reads refs at a negative sample's
# match too (its value is not used): those stay in range here.
def _enc_case(name, b, n, m, pos=0.5, frac=False):
    def samples(rng, shape):
        s = rng.choice([-1.0, 0.0, 1.0, 0.5, 0.7], size=shape)
        s[rng.rand(*shape) < pos] = 1.0
        return s

    def matches(rng, shape):
        v = rng.randint(0, max(m, 1), size=shape).astype(np.float32)
        if frac:
            v += rng.choice([0.0, 0.4, 0.9], size=shape)
        return v

    case("boxenc_" + name, "contrib.box_encode", {},
         [("samples", (b, n)), ("matches", (b, n)), ("anchors", (b, n, 4)),
          ("refs", (b, m, 4)), ("means", (4,)), ("stds", (4,))],
         values={"samples": samples, "matches": matches,
                 "anchors": anchors_for(False), "refs": anchors_for(False),
                 "means": lambda rng, shape: rng.normal(0, 0.1, size=shape),
                 "stds": lambda rng, shape: rng.uniform(0.1, 1.0, size=shape)})


for i in range(18):
    b = int(_box_rng.randint(1, 4))
    n = int(_box_rng.randint(1, 10))
    m = int(_box_rng.randint(1, 6))
    _enc_case("%d" % i, b, n, m, pos=[0.3, 0.6, 1.0][i % 3], frac=(i % 4 == 1))
_enc_case("one", 1, 1, 1, pos=1.0)
_enc_case("none_positive", 2, 4, 3, pos=0.0)
# --- _contrib_ROIAlign (issue 20) -----------------------------------------------
# The rois are a parameter (the variable `rois`), so that the conformance test's random
# data leaves them valid: rows [batch, x1, y1, x2, y2] in image coordinates (the feature
# map's size over spatial_scale). Batch indices whole and fractional (truncated toward
# zero: -0.5 reads image 0); boxes inside, partly and wholly outside the map, reversed
# and thinner than a pixel (stretched to 1 without `aligned`; MXNet aborts on them with
# it, so aligned cases keep positive sizes); every sample_ratio kind (-1 and 0 adaptive,
# 1 to 3 fixed); position-sensitive channel blocks; pooled sizes 1x1 to 14x14.
_roi_rng = np.random.RandomState(2050)


def _roi_rows(batch, height, width, scale, count, aligned, extremes):
    def f(rng, shape):
        img_h, img_w = height / scale, width / scale
        rows = []
        for i in range(count):
            b = float(_roi_rng.randint(batch))
            if i % 5 == 3:
                b += 0.7
            if i % 7 == 4:
                b = -0.5 if b < 1 else b
            x1 = _roi_rng.uniform(-0.2 * img_w, img_w)
            y1 = _roi_rng.uniform(-0.2 * img_h, img_h)
            x2 = x1 + _roi_rng.uniform(0.5, 1.2) * img_w * _roi_rng.uniform(0.1, 1.0)
            y2 = y1 + _roi_rng.uniform(0.5, 1.2) * img_h * _roi_rng.uniform(0.1, 1.0)
            rows.append([b, x1, y1, x2, y2])
        if extremes and not aligned:
            rows[0][1:] = [img_w * 0.6, img_h * 0.6, img_w * 0.2, img_h * 0.1]  # reversed
            if count > 1:
                rows[1][1:] = [img_w * 0.3, img_h * 0.3, img_w * 0.3 + 0.1, img_h * 0.3]
            if count > 2:
                rows[2][1:] = [img_w * 1.5, img_h * 1.5, img_w * 2.5, img_h * 2.0]  # outside
        elif extremes:
            if count > 2:
                rows[2][1:] = [-img_w, -img_h, -img_w * 0.5, -img_h * 0.2]  # outside
        return np.array(rows, dtype=np.float32).reshape(shape)
    return f


def _roialign_case(i, batch, channels, height, width, pooled, scale, ratio, count,
                   ps=False, aligned=False, extremes=True):
    attrs = dict(pooled_size=pooled, spatial_scale=scale)
    if ratio is not None:
        attrs["sample_ratio"] = ratio
    if ps:
        attrs["position_sensitive"] = True
    if aligned is not None and (aligned or i % 3 == 0):
        attrs["aligned"] = aligned

    def build(v, attrs=attrs):
        return mx.sym.contrib.ROIAlign(v("data"), v("rois"), name="op", **attrs)
    case("roialign_%d" % i, "contrib.ROIAlign", attrs, [("data", (batch, channels, height, width))],
         shapes={"rois": (count, 5)}, build=build,
         values={"rois": _roi_rows(batch, height, width, scale, count, bool(aligned), extremes)})


_ROI_SPECS = [
    # batch, channels, height, width, pooled, scale, ratio, rois
    (1, 2, 6, 7, (2, 2), 1.0, None, 3),
    (2, 3, 8, 8, (3, 3), 0.5, 2, 4),
    (2, 1, 5, 9, (2, 3), 0.25, -1, 5),
    (1, 4, 10, 6, (4, 2), 0.0625, 0, 3),
    (3, 2, 7, 7, (1, 1), 0.125, 1, 6),
    (1, 3, 12, 12, (7, 7), 0.0625, 2, 3),
    (2, 2, 9, 11, (3, 2), 1.0, 3, 4),
    (1, 1, 16, 16, (14, 14), 0.5, 2, 2),
    (2, 4, 6, 5, (2, 2), 0.5, None, 5),
    (1, 2, 3, 4, (5, 3), 1.0, -1, 3),
    (2, 3, 1, 1, (2, 2), 1.0, 2, 3),
    (1, 2, 13, 5, (2, 4), 0.333, None, 4),
]
for i, spec in enumerate(_ROI_SPECS):
    _roialign_case(i, *spec)
for i, spec in enumerate(_ROI_SPECS[:6]):
    _roialign_case(100 + i, *spec, aligned=True)
_roialign_case(200, 1, 8, 6, 6, (2, 2), 0.5, 2, 3, ps=True)
_roialign_case(201, 2, 18, 7, 5, (3, 3), 1.0, None, 4, ps=True)
_roialign_case(202, 1, 6, 8, 8, (1, 3), 0.25, -1, 3, ps=True, aligned=True)
_roialign_case(203, 2, 4, 5, 6, (1, 2), 1.0, 1, 2, ps=True)


# --- _contrib_MultiBoxPrior (issue 20) ------------------------------------------
# The boxes depend only on the data's height and width (dims 2 and 3; more dims are
# allowed). Sizes and ratios of one and several values (a first ratio other than 1
# reshapes the boxes of every size), clip, steps given and automatic (-1, or 0 in either
# axis: both become 1/H and 1/W), offsets from 0 to 1, planes of size 1.
_mbp_rng = np.random.RandomState(2051)
_MBP_SPECS = [
    # data shape, attrs
    ((1, 3, 4, 5), {}),
    ((2, 2, 3, 3), dict(sizes=(0.5, 0.25), ratios=(1, 2, 0.5))),
    ((1, 1, 6, 4), dict(sizes=(0.3,), ratios=(1, 2, 0.5, 3, 1.0 / 3), clip=True)),
    ((1, 4, 1, 1), dict(sizes=(0.9, 0.7, 0.1))),
    ((3, 2, 5, 2), dict(sizes=(0.2,), ratios=(2, 0.5), steps=(0.1, 0.2))),
    ((1, 2, 2, 7), dict(sizes=(0.75, 0.4), ratios=(1, 4), offsets=(0, 1), clip=True)),
    ((1, 1, 8, 8), dict(sizes=(0.1, 0.2, 0.3), ratios=(1,), steps=(0.125, 0.125), offsets=(0.25, 0.75))),
    ((2, 3, 3, 5), dict(sizes=(1.2,), ratios=(1, 2), clip=True)),
    ((1, 1, 4, 4), dict(sizes=(0.5,), steps=(0, 0.3))),
    ((1, 2, 3, 4, 2), dict(sizes=(0.6, 0.3), ratios=(0.5, 1, 2))),
    ((1, 5, 10, 1), dict(sizes=(0.05,), ratios=(1, 2, 0.5), steps=(-1, -1), offsets=(0.5, 0.5))),
    ((1, 1, 1, 9), dict(sizes=(0.33, 0.66), ratios=(3,), clip=False)),
]
for i, (shape, attrs) in enumerate(_MBP_SPECS):
    case("mbprior_%d" % i, "contrib.MultiBoxPrior", attrs, [("data", shape)])
for i in range(8):
    rank = 4
    shape = tuple(int(d) for d in _mbp_rng.randint(1, 9, size=rank))
    ns, nr = int(_mbp_rng.randint(1, 4)), int(_mbp_rng.randint(1, 5))
    attrs = dict(sizes=tuple(round(float(v), 4) for v in _mbp_rng.uniform(0.05, 1.0, ns)),
                 ratios=tuple(round(float(v), 4) for v in _mbp_rng.uniform(0.3, 3.0, nr)))
    if i % 2:
        attrs["clip"] = True
    if i % 3 == 1:
        attrs["steps"] = tuple(round(float(v), 4) for v in _mbp_rng.uniform(0.05, 0.5, 2))
    if i % 4 == 2:
        attrs["offsets"] = tuple(round(float(v), 4) for v in _mbp_rng.uniform(0, 1, 2))
    case("mbprior_r%d" % i, "contrib.MultiBoxPrior", attrs, [("data", shape)])


# --- ROIPooling (issue 20) -----------------------------------------------------------
# The rois are a parameter, as ROIAlign's. Coordinates scaled and rounded half away from
# zero (some land on .5 exactly), boxes reversed (one pixel), partly and wholly outside
# the map (empty bins give 0), batch indices fractional, negative and past the batch
# (MXNet 1.9.1 gives such a roi zeros and no gradient), pooled sizes larger than the box
# (overlapping bins share a pixel, whose gradient adds up). Data random normals (no ties).
_roipool_rng = np.random.RandomState(2052)


def _roipool_rows(batch, height, width, scale, count, extremes):
    def f(rng, shape):
        img_h, img_w = height / scale, width / scale
        rows = []
        for i in range(count):
            b = float(_roipool_rng.randint(batch))
            if i % 4 == 3:
                b += 0.6
            x1 = _roipool_rng.uniform(-0.2 * img_w, img_w)
            y1 = _roipool_rng.uniform(-0.2 * img_h, img_h)
            x2 = x1 + _roipool_rng.uniform(0.2, 1.0) * img_w
            y2 = y1 + _roipool_rng.uniform(0.2, 1.0) * img_h
            rows.append([b, x1, y1, x2, y2])
        if extremes:
            rows[0][1:] = [img_w * 0.7, img_h * 0.6, img_w * 0.2, img_h * 0.1]  # reversed
            if count > 1:
                rows[1][1:] = [0.5 / scale, 1.5 / scale, 2.5 / scale, 2.5 / scale]  # halves
            if count > 2:
                rows[2][0] = [-1.0, float(batch), -3.0][count % 3]  # outside the batch
            if count > 3:
                rows[3][1:] = [img_w * 1.5, img_h * 1.5, img_w * 2.5, img_h * 2.0]  # outside
        return np.array(rows, dtype=np.float32).reshape(shape)
    return f


_ROIPOOL_SPECS = [
    # batch, channels, height, width, pooled, scale, rois
    (1, 2, 6, 7, (2, 2), 1.0, 4),
    (2, 3, 8, 8, (3, 3), 0.5, 5),
    (2, 1, 5, 9, (2, 3), 0.25, 4),
    (1, 4, 10, 6, (4, 2), 0.0625, 3),
    (3, 2, 7, 7, (1, 1), 0.125, 6),
    (1, 3, 12, 12, (7, 7), 0.0625, 4),
    (2, 2, 9, 11, (3, 2), 1.0, 5),
    (1, 1, 16, 16, (6, 6), 0.5, 3),
    (2, 4, 6, 5, (2, 2), 0.5, 4),
    (1, 2, 3, 4, (5, 3), 1.0, 4),
    (2, 3, 1, 1, (2, 2), 1.0, 3),
    (1, 2, 13, 5, (2, 4), 0.333, 4),
    (2, 2, 4, 4, (4, 4), 1.0, 2),
    (1, 3, 9, 9, (3, 3), 0.7, 5),
]
for i, (n, c, h, w, pooled, scale, count) in enumerate(_ROIPOOL_SPECS):
    attrs = dict(pooled_size=pooled, spatial_scale=scale)

    def build(v, attrs=attrs):
        return mx.sym.ROIPooling(v("data"), v("rois"), name="op", **attrs)
    for extremes in (True, False) if i < 6 else (True,):
        name = "roipool_%d%s" % (i, "" if extremes else "_plain")
        case(name, "ROIPooling", attrs, [("data", (n, c, h, w))],
             shapes={"rois": (count, 5)}, build=build,
             values={"rois": _roipool_rows(n, h, w, scale, count, extremes)})


# --- _contrib_DeformableConvolution, _contrib_ModulatedDeformableConvolution ---------
# DCNv1 and DCNv2, 2-D. Offsets of a few pixels, some rounded so that samples land exactly
# on pixels (and on the plane's last row and column, where MXNet 1.9.1's CPU DCNv1 clamps),
# some half-integers, exactly -1 (outside DCNv2's plane too), and some larger than the plane
# on either side; NaN in a few cases (outside in both). Masks in [0, 1] with exact 0s and 1s.
# Every attribute: stride, dilate and pad per axis, num_group and num_deformable_group
# (splitting the channels independently), no_bias, kernels 1x1, 3x3 and 2x3, batches of 1
# and 2, and DCNv2's im2col_step (a batching hint; MXNet refuses a larger batch not divisible
# by it). MXNet 1.9.1 has no CPU backward for DCNv2, so only DCNv1 has gradient fixtures.
_deform_rng = np.random.RandomState(2054)


def _deform_offsets(height, width, nan=False):
    def f(rng, shape):
        a = rng.uniform(-2.5, 2.5, size=shape).astype(np.float32)
        flat = a.reshape(-1)
        far = float(max(height, width)) + 1.5
        for k in range(flat.size):
            if k % 5 == 0:
                flat[k] = np.round(flat[k])
            if k % 13 == 4:
                flat[k] = far if (k // 13) % 2 else -far
            if k % 17 == 6:
                flat[k] = -0.5
            if k % 19 == 8:
                flat[k] = -1.0
            if k % 23 == 10:
                flat[k] = float(height - 1)
        if nan:
            flat[3] = np.nan
        return a
    return f


def _deform_mask(rng, shape):
    a = rng.uniform(0, 1, size=shape).astype(np.float32)
    flat = a.reshape(-1)
    flat[::7] = 0.0
    flat[3::11] = 1.0
    return a


def _deform_out(size, k, s, d, p):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def _deform_case(name, modulated, batch, channels, height, width, filters, kernel, stride,
                 dilate, pad, groups, dgroups, no_bias, step=None, nan=False, defaults=False):
    attrs = dict(kernel=kernel, num_filter=filters)
    if not defaults:
        attrs.update(stride=stride, dilate=dilate, pad=pad)
    if groups != 1 or not defaults:
        attrs["num_group"] = groups
    if dgroups != 1 or not defaults:
        attrs["num_deformable_group"] = dgroups
    if no_bias:
        attrs["no_bias"] = True
    if step is not None:
        attrs["im2col_step"] = step
    ho = _deform_out(height, kernel[0], stride[0], dilate[0], pad[0])
    wo = _deform_out(width, kernel[1], stride[1], dilate[1], pad[1])
    taps = kernel[0] * kernel[1]
    data = [("data", (batch, channels, height, width)),
            ("offset", (batch, 2 * dgroups * taps, ho, wo))]
    values = {"offset": _deform_offsets(height, width, nan)}
    if modulated:
        data.append(("mask", (batch, dgroups * taps, ho, wo)))
        values["mask"] = _deform_mask

    def build(v, attrs=attrs):
        if modulated:
            return mx.sym.contrib.ModulatedDeformableConvolution(
                data=v("data"), offset=v("offset"), mask=v("mask"), name="op", **attrs)
        return mx.sym.contrib.DeformableConvolution(
            data=v("data"), offset=v("offset"), name="op", **attrs)
    op = "contrib.ModulatedDeformableConvolution" if modulated else "contrib.DeformableConvolution"
    case(name, op, attrs, data, build=build, values=values)


_DEFORM_KERNELS = [(1, 1), (3, 3), (2, 3)]
for _modulated, _prefix in ((False, "deformconv"), (True, "mdeformconv")):
    for i in range(24):
        kernel = _DEFORM_KERNELS[(i // 2) % 3]
        stride = (1 + i % 2, 1 + (i // 3) % 2)
        dilate = (1 + (i // 4) % 2, 1 + (i // 5) % 2) if kernel != (1, 1) else (1, 1 + i % 2)
        pad = (i % 3, (i // 2) % 3)
        groups = 1 + (i // 6) % 2
        dgroups = 1 + (i // 3) % 2
        batch = 1 + (i // 7) % 2
        channels = int(np.lcm(groups, dgroups)) * int(_deform_rng.randint(1, 3))
        # MXNet's DCNv2 (not its DCNv1) also wants filters divisible by num_deformable_group.
        filters = int(np.lcm(groups, dgroups if _modulated else 1)) * int(_deform_rng.randint(1, 4))
        need_h = dilate[0] * (kernel[0] - 1) + 1 - 2 * pad[0]
        need_w = dilate[1] * (kernel[1] - 1) + 1 - 2 * pad[1]
        height = max(int(_deform_rng.randint(2, 8)), need_h, 1)
        width = max(int(_deform_rng.randint(2, 8)), need_w, 1)
        step = None
        if _modulated and i % 4 == 1:
            step = [1, 2, 64][(i // 4) % 3]
        _deform_case("%s_%d" % (_prefix, i), _modulated, batch, channels, height, width,
                     filters, kernel, stride, dilate, pad, groups, dgroups,
                     no_bias=(i % 4 == 3), step=step, nan=(i % 8 == 5))
    _deform_case("%s_defaults" % _prefix, _modulated, 1, 3, 5, 6, 2, (3, 3), (1, 1),
                 (1, 1), (0, 0), 1, 1, no_bias=False, defaults=True)
    _deform_case("%s_wide" % _prefix, _modulated, 2, 4, 9, 8, 4, (3, 3), (2, 1),
                 (2, 1), (2, 1), 2, 4, no_bias=False)


# --- _contrib_MultiBoxDetection (issue 20) ---------------------------------------
# cls_prob (batch, classes, n) with class 0 the background, loc_pred (batch, n*4),
# anchors (k, n, 4) clustered so that boxes overlap (some past [0, 1], for clip). Scores
# uniform, or quarters (ties: MXNet sorts stably; a score equal to threshold is kept),
# with NaN (never a class's score) and values at or below -1 (never one either). Every
# attribute: clip both ways, force_suppress, nms_topk -1/0/small/past n (the rows past
# nms_topk keep the unsorted detection there, class -1), background_id (unused by MXNet),
# threshold edges, nms_threshold 0 and above 1 (no sorting, no suppression), 1 (only
# identical boxes), variances; one anchor, one class (only the background). MXNet's shape
# rule takes anchors of any first dim, its kernel then fails unless it is 1.
_mbd_rng = np.random.RandomState(2053)


def mbd_scores(ties=False, nan=0.0, low=0.0):
    def f(rng, shape):
        if ties:
            a = rng.randint(0, 5, size=shape) / 4.0
        else:
            a = rng.uniform(0, 1, size=shape)
        a = a.astype(np.float32)
        if nan:
            a[rng.rand(*shape) < nan] = np.nan
        if low:
            a[rng.rand(*shape) < low] = rng.choice([-1.0, -1.5, -0.5])
        return a
    return f


def mbd_anchors(clusters=3, spread=0.05, dup=False):
    def f(rng, shape):
        n = shape[1]
        k = rng.randint(0, clusters, size=n)
        cx = rng.uniform(0.0, 1.0, size=clusters)
        cy = rng.uniform(0.0, 1.0, size=clusters)
        x = cx[k] + rng.normal(0, spread, size=n)
        y = cy[k] + rng.normal(0, spread, size=n)
        w = rng.uniform(0.1, 0.5, size=n)
        h = rng.uniform(0.1, 0.5, size=n)
        box = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)
        if dup and n > 3:
            box[1] = box[0]
            box[3] = box[2]
        return box[None].astype(np.float32)
    return f


def mbd_locs(scale=0.5, zero=False):
    def f(rng, shape):
        if zero:
            return np.zeros(shape, dtype=np.float32)
        return rng.normal(0, scale, size=shape).astype(np.float32)
    return f


def _mbd_case(name, batch, classes, n, attrs, scores=None, anchors=None, locs=None):
    case("mbdet_" + name, "contrib.MultiBoxDetection", attrs,
         [("cls_prob", (batch, classes, n)), ("loc_pred", (batch, n * 4)),
          ("anchor", (1, n, 4))],
         values={"cls_prob": scores or mbd_scores(),
                 "anchor": anchors or mbd_anchors(),
                 "loc_pred": locs or mbd_locs()})


_mbd_case("default", 1, 3, 10, {})
_mbd_case("batch", 3, 4, 12, {})
_mbd_case("noclip", 2, 3, 10, dict(clip=False), anchors=mbd_anchors(spread=0.3),
          locs=mbd_locs(2.0))
_mbd_case("clip_far", 1, 3, 12, dict(clip=True), anchors=mbd_anchors(spread=0.3),
          locs=mbd_locs(3.0))
_mbd_case("force", 2, 4, 12, dict(force_suppress=True, nms_threshold=0.3))
_mbd_case("topk_neg1", 1, 3, 10, dict(nms_topk=-1))
_mbd_case("topk0", 2, 3, 10, dict(nms_topk=0))
_mbd_case("topk3", 2, 3, 12, dict(nms_topk=3))
_mbd_case("topk1_force", 1, 4, 9, dict(nms_topk=1, force_suppress=True))
_mbd_case("topk_past_n", 1, 3, 8, dict(nms_topk=50))
_mbd_case("background_id", 2, 4, 10, dict(background_id=2))
_mbd_case("threshold_edge", 2, 3, 12, dict(threshold=0.5), scores=mbd_scores(ties=True))
_mbd_case("threshold_zero", 1, 3, 10, dict(threshold=0.0), scores=mbd_scores(ties=True))
_mbd_case("threshold_negative", 1, 3, 10, dict(threshold=-0.75),
          scores=mbd_scores(low=0.5))
_mbd_case("all_below", 2, 3, 6, dict(threshold=2.0))
_mbd_case("nms_zero", 1, 3, 10, dict(nms_threshold=0.0, nms_topk=2))
_mbd_case("nms_above_one", 2, 3, 10, dict(nms_threshold=1.5, nms_topk=3))
_mbd_case("nms_negative", 1, 3, 8, dict(nms_threshold=-0.2))
_mbd_case("nms_one", 1, 3, 8, dict(nms_threshold=1.0), anchors=mbd_anchors(dup=True),
          locs=mbd_locs(zero=True))
_mbd_case("nms_small", 2, 3, 12, dict(nms_threshold=0.05))
_mbd_case("ties", 2, 3, 16, {}, scores=mbd_scores(ties=True), anchors=mbd_anchors(2))
_mbd_case("ties_topk_force", 1, 4, 20, dict(nms_topk=6, force_suppress=True),
          scores=mbd_scores(ties=True))
_mbd_case("variances", 1, 3, 10, dict(variances=(0.2, 0.3, 0.5, 0.4)))
_mbd_case("variances_one", 2, 3, 10, dict(variances=(1, 1, 1, 1), clip=False))
_mbd_case("one_anchor", 2, 3, 1, {})
_mbd_case("one_class", 2, 1, 5, {})
_mbd_case("two_classes", 2, 2, 9, dict(nms_threshold=0.4))
_mbd_case("nan", 2, 4, 10, {}, scores=mbd_scores(nan=0.25))
_mbd_case("large", 2, 6, 150, dict(nms_topk=40), anchors=mbd_anchors(12))
# NaN offsets: a NaN coordinate clips to 1 (libstdc++'s std::min(1, NaN) is 1), and
# stays NaN unclipped (its IoU is NaN: never suppressed, never suppressing).
_mbd_case("nan_loc_clip", 1, 3, 10, {}, locs=special(np.nan, np.nan, np.nan))
_mbd_case("nan_loc_noclip", 1, 3, 10, dict(clip=False), locs=special(np.nan, np.nan, np.nan))
for i in range(8):
    b = int(_mbd_rng.randint(1, 4))
    c = int(_mbd_rng.randint(2, 7))
    n = int(_mbd_rng.randint(2, 40))
    attrs = {}
    if i % 2:
        attrs["clip"] = False
    if i % 3 == 0:
        attrs["force_suppress"] = True
    if i % 4 == 1:
        attrs["nms_topk"] = int(_mbd_rng.randint(1, n + 3))
    if i % 4 == 3:
        attrs["variances"] = tuple(round(float(v), 3) for v in _mbd_rng.uniform(0.05, 0.6, 4))
    attrs["threshold"] = round(float(_mbd_rng.uniform(0.0, 0.6)), 3)
    attrs["nms_threshold"] = round(float(_mbd_rng.uniform(0.1, 0.9)), 3)
    _mbd_case("r%d" % i, b, c, n, attrs, scores=mbd_scores(ties=bool(i % 2)),
              anchors=mbd_anchors(int(_mbd_rng.randint(1, 5))))


# --- _contrib_Proposal (issue 20) ------------------------------------------------
# One image (MXNet's CPU Proposal refuses more): cls_prob (1, 2A, H, W), bbox_pred
# (1, 4A, H, W), im_info (1, 3) = (height, width, scale) no larger than the map
# (trunc(height / feature_stride) <= H; MXNet fails otherwise). Several scales, ratios
# (fractional too) and strides (1 to 32); rpn_min_size filtering nothing, some, or
# everything (every score -1: MXNet 1.9.1 sorts with std::stable_sort, so such ties keep
# the proposals' order; it grows each box by min_size / 2 a side), scaled by im_info's
# scale; images smaller than the map (its padded cells scored -1); pre/post top-n below,
# at and past the anchor count (post past what survives: the kept boxes repeat), pre <= 0
# (every anchor); threshold 0 to 1; output_score both ways; iou_loss; scores in quarters
# (ties).
_prop_rng = np.random.RandomState(2054)


def prop_scores(ties=False):
    def f(rng, shape):
        if ties:
            return (rng.randint(0, 5, size=shape) / 4.0).astype(np.float32)
        return rng.uniform(0, 1, size=shape).astype(np.float32)
    return f


def prop_info(h, w, scale):
    return lambda rng, shape: np.array([[h, w, scale]], dtype=np.float32)


def _prop_case(name, a, height, width, attrs, info, scores=None, deltas=0.2):
    stride = attrs.get("feature_stride", 16)
    ih, iw, scale = info
    assert int(ih / stride) <= height and int(iw / stride) <= width, name
    case("prop_" + name, "contrib.Proposal", attrs,
         [("cls_prob", (1, 2 * a, height, width)), ("bbox_pred", (1, 4 * a, height, width)),
          ("im_info", (1, 3))],
         values={"cls_prob": scores or prop_scores(),
                 "bbox_pred": scaled(deltas),
                 "im_info": prop_info(ih, iw, scale)})


_S2 = dict(scales=(8, 16), ratios=(0.5, 1, 2))  # 6 anchors
_prop_case("default", 12, 4, 5, {}, (60, 75, 1.0))
_prop_case("post_small", 6, 5, 6, dict(_S2, rpn_pre_nms_top_n=50, rpn_post_nms_top_n=10,
                                      rpn_min_size=4), (75, 90, 1.0))
_prop_case("pre_below_post", 6, 4, 4, dict(_S2, rpn_pre_nms_top_n=5, rpn_post_nms_top_n=12,
                                          rpn_min_size=2), (60, 60, 1.0))
_prop_case("pre_zero", 6, 3, 4, dict(_S2, rpn_pre_nms_top_n=0, rpn_post_nms_top_n=20,
                                    rpn_min_size=4), (48, 60, 1.0))
_prop_case("pre_negative", 6, 3, 4, dict(_S2, rpn_pre_nms_top_n=-1, rpn_post_nms_top_n=7,
                                        rpn_min_size=4, output_score=True), (48, 60, 1.0))
_prop_case("pre_past_count", 6, 2, 3, dict(_S2, rpn_pre_nms_top_n=1000, rpn_post_nms_top_n=40,
                                          rpn_min_size=4, output_score=True), (32, 48, 1.0))
_prop_case("score", 6, 4, 5, dict(_S2, rpn_post_nms_top_n=15, output_score=True,
                                 rpn_min_size=4), (64, 80, 1.0))
_prop_case("no_score", 6, 4, 5, dict(_S2, rpn_post_nms_top_n=15, output_score=False,
                                    rpn_min_size=4), (64, 80, 1.0))
_prop_case("iou_loss", 6, 4, 4, dict(_S2, rpn_post_nms_top_n=12, iou_loss=True,
                                    output_score=True, rpn_min_size=4), (64, 64, 1.0),
           deltas=6.0)
_prop_case("min_size_all", 6, 4, 5, dict(_S2, rpn_post_nms_top_n=8, rpn_min_size=1000,
                                        output_score=True), (64, 80, 1.0))
_prop_case("min_size_none", 6, 4, 5, dict(_S2, rpn_post_nms_top_n=20, rpn_min_size=0,
                                         output_score=True), (64, 80, 1.0))
_prop_case("min_size_scaled", 6, 4, 5, dict(_S2, rpn_post_nms_top_n=20, rpn_min_size=40,
                                           output_score=True), (64, 80, 0.5), deltas=0.8)
_prop_case("min_size_scaled_up", 6, 4, 5, dict(_S2, rpn_post_nms_top_n=20, rpn_min_size=16,
                                              output_score=True), (64, 80, 2.5), deltas=0.8)
_prop_case("threshold_zero", 6, 4, 4, dict(_S2, rpn_post_nms_top_n=10, threshold=0.0,
                                          rpn_min_size=4, output_score=True), (64, 64, 1.0))
_prop_case("threshold_one", 6, 3, 3, dict(_S2, rpn_post_nms_top_n=30, threshold=1.0,
                                         rpn_min_size=4, output_score=True), (48, 48, 1.0))
_prop_case("threshold_low", 6, 4, 5, dict(_S2, rpn_post_nms_top_n=25, threshold=0.3,
                                         rpn_min_size=4, output_score=True), (64, 80, 1.0))
_prop_case("one_anchor", 1, 5, 5, dict(scales=(8,), ratios=(1,), rpn_post_nms_top_n=10,
                                      rpn_min_size=4, output_score=True), (80, 80, 1.0))
_prop_case("fractional", 6, 3, 4, dict(scales=(1.5, 3.3), ratios=(0.7, 1.3, 3.0),
                                      rpn_post_nms_top_n=16, rpn_min_size=2,
                                      output_score=True), (48, 64, 1.0))
_prop_case("stride_4", 4, 6, 7, dict(scales=(2, 4), ratios=(0.5, 2), feature_stride=4,
                                    rpn_post_nms_top_n=20, rpn_min_size=2,
                                    output_score=True), (24, 28, 1.0))
_prop_case("stride_1", 2, 5, 6, dict(scales=(2, 5), ratios=(1,), feature_stride=1,
                                    rpn_post_nms_top_n=15, rpn_min_size=1,
                                    output_score=True), (5, 6, 1.0), deltas=0.5)
_prop_case("stride_32", 3, 3, 4, dict(scales=(4,), ratios=(0.5, 1, 2), feature_stride=32,
                                     rpn_post_nms_top_n=12, output_score=True),
           (96, 128, 1.0))
_prop_case("padded", 6, 5, 6, dict(_S2, rpn_post_nms_top_n=20, rpn_min_size=4,
                                  output_score=True), (20, 35, 1.0))
_prop_case("image_exact", 6, 3, 4, dict(_S2, rpn_post_nms_top_n=20, rpn_min_size=4,
                                       output_score=True), (48, 64, 1.0))
_prop_case("image_negative", 6, 3, 3, dict(_S2, rpn_post_nms_top_n=6, rpn_min_size=0,
                                          output_score=True), (-5, -8, 1.0))
_prop_case("ties", 6, 4, 5, dict(_S2, rpn_post_nms_top_n=30, rpn_min_size=4,
                                output_score=True), (64, 80, 1.0),
           scores=prop_scores(ties=True))
_prop_case("ties_pre", 6, 5, 5, dict(_S2, rpn_pre_nms_top_n=40, rpn_post_nms_top_n=20,
                                    rpn_min_size=4, output_score=True), (80, 80, 1.0),
           scores=prop_scores(ties=True))
_prop_case("large", 9, 10, 12, dict(scales=(4, 8, 16), ratios=(0.5, 1, 2),
                                   rpn_pre_nms_top_n=500, rpn_post_nms_top_n=100,
                                   output_score=True), (150, 180, 1.0))
for i in range(6):
    ns, nr = int(_prop_rng.randint(1, 4)), int(_prop_rng.randint(1, 4))
    scales = tuple(sorted(int(v) for v in _prop_rng.choice([1, 2, 4, 8, 16, 32], ns,
                                                            replace=False)))
    ratios = tuple(round(float(v), 3) for v in _prop_rng.uniform(0.3, 3.0, nr))
    stride = int(_prop_rng.choice([4, 8, 16]))
    h, w = int(_prop_rng.randint(1, 8)), int(_prop_rng.randint(1, 8))
    attrs = dict(scales=scales, ratios=ratios, feature_stride=stride,
                 rpn_pre_nms_top_n=int(_prop_rng.randint(-1, 60)),
                 rpn_post_nms_top_n=int(_prop_rng.randint(1, 40)),
                 rpn_min_size=int(_prop_rng.randint(0, 24)),
                 threshold=round(float(_prop_rng.uniform(0.2, 0.9)), 3),
                 output_score=bool(i % 2 == 0), iou_loss=(i == 3))
    info = (float(int(_prop_rng.uniform(0.3, 1.0) * h * stride)),
            float(int(_prop_rng.uniform(0.3, 1.0) * w * stride)),
            round(float(_prop_rng.uniform(0.5, 2.0)), 2))
    _prop_case("r%d" % i, ns * nr, h, w, attrs, info, scores=prop_scores(ties=bool(i % 2)),
               deltas=3.0 if i == 3 else 0.3)


# --- _contrib_MultiProposal (issue 20) -------------------------------------------
# Proposal on each image of a batch, with its own im_info row (sizes and scales that
# differ), the rois of image b in rows b*n..(b+1)*n numbered b. Batches of 1 to 4, the
# attribute settings of the Proposal cases above.
_mprop_rng = np.random.RandomState(2055)


def mprop_info(rows):
    return lambda rng, shape: np.array(rows, dtype=np.float32).reshape(shape)


def _mprop_case(name, batch, a, height, width, attrs, infos, scores=None, deltas=0.2):
    stride = attrs.get("feature_stride", 16)
    for ih, iw, _ in infos:
        assert int(ih / stride) <= height and int(iw / stride) <= width, name
    case("mprop_" + name, "contrib.MultiProposal", attrs,
         [("cls_prob", (batch, 2 * a, height, width)),
          ("bbox_pred", (batch, 4 * a, height, width)), ("im_info", (batch, 3))],
         values={"cls_prob": scores or prop_scores(),
                 "bbox_pred": scaled(deltas),
                 "im_info": mprop_info(infos)})


_mprop_case("default", 2, 12, 4, 5, {}, [(60, 75, 1.0), (50, 64, 1.5)])
_mprop_case("one", 1, 6, 4, 5, dict(_S2, rpn_post_nms_top_n=15, rpn_min_size=4,
                                    output_score=True), [(64, 80, 1.0)])
_mprop_case("post_past", 3, 6, 2, 3, dict(_S2, rpn_pre_nms_top_n=1000, rpn_post_nms_top_n=40,
                                          rpn_min_size=4, output_score=True),
            [(32, 48, 1.0), (20, 30, 1.0), (32, 16, 2.0)])
_mprop_case("pre_small", 2, 6, 4, 4, dict(_S2, rpn_pre_nms_top_n=5, rpn_post_nms_top_n=12,
                                          rpn_min_size=2), [(60, 60, 1.0), (40, 64, 0.5)])
_mprop_case("min_size", 3, 6, 4, 5, dict(_S2, rpn_post_nms_top_n=10, rpn_min_size=30,
                                         output_score=True),
            [(64, 80, 1.0), (64, 80, 0.25), (64, 80, 40.0)], deltas=0.8)
_mprop_case("iou_loss", 2, 6, 4, 4, dict(_S2, rpn_post_nms_top_n=12, iou_loss=True,
                                         output_score=True, rpn_min_size=4),
            [(64, 64, 1.0), (48, 30, 1.0)], deltas=6.0)
_mprop_case("ties", 2, 6, 4, 5, dict(_S2, rpn_post_nms_top_n=25, rpn_min_size=4,
                                     output_score=True, threshold=0.4),
            [(64, 80, 1.0), (30, 50, 1.0)], scores=prop_scores(ties=True))
_mprop_case("stride_8", 4, 4, 5, 6, dict(scales=(2, 4), ratios=(0.5, 2), feature_stride=8,
                                         rpn_post_nms_top_n=9, rpn_min_size=2,
                                         output_score=True),
            [(40, 48, 1.0), (8, 48, 1.0), (33, 17, 1.2), (-4, 20, 1.0)])
for i in range(12):
    batch = int(_mprop_rng.randint(1, 4))
    ns, nr = int(_mprop_rng.randint(1, 3)), int(_mprop_rng.randint(1, 4))
    scales = tuple(sorted(int(v) for v in _mprop_rng.choice([1, 2, 4, 8, 16], ns,
                                                             replace=False)))
    ratios = tuple(round(float(v), 3) for v in _mprop_rng.uniform(0.3, 3.0, nr))
    stride = int(_mprop_rng.choice([4, 8, 16]))
    h, w = int(_mprop_rng.randint(1, 7)), int(_mprop_rng.randint(1, 7))
    attrs = dict(scales=scales, ratios=ratios, feature_stride=stride,
                 rpn_pre_nms_top_n=int(_mprop_rng.randint(-1, 50)),
                 rpn_post_nms_top_n=int(_mprop_rng.randint(1, 30)),
                 rpn_min_size=int(_mprop_rng.randint(0, 20)),
                 threshold=round(float(_mprop_rng.uniform(0.2, 0.9)), 3),
                 output_score=bool(i % 2 == 0))
    infos = [(float(int(_mprop_rng.uniform(0.3, 1.0) * h * stride)),
              float(int(_mprop_rng.uniform(0.3, 1.0) * w * stride)),
              round(float(_mprop_rng.uniform(0.5, 2.0)), 2)) for _ in range(batch)]
    _mprop_case("r%d" % i, batch, ns * nr, h, w, attrs, infos,
                scores=prop_scores(ties=bool(i % 2)))


# ----------------------------------------------------------------------------
# reverse (flip): GluonCV's R-CNN family flips its anchors' coordinates with it
# ----------------------------------------------------------------------------

_rev_rng = np.random.RandomState(2060)

for i in range(20):
    rank = 1 + i % 5
    shape = tuple(int(d) for d in _rev_rng.randint(1, 5, size=rank))
    count = int(_rev_rng.randint(0, rank + 1))
    axes = [int(a) for a in _rev_rng.choice(rank, size=count, replace=False)]
    case("reverse_%d" % i, "reverse", dict(axis=tuple(axes)), [("data", shape)])
case("reverse_rcnn", "reverse", dict(axis=(1,)), [("data", (1, 24, 4))],
     notes="GluonCV's RPN flips each anchor's (x, y) pairs with axis=1")
case("reverse_twice_cancels", "reverse", dict(axis=(1, 1)), [("data", (2, 3, 2))],
     notes="MXNet reverses once per listing: axis 1 twice leaves the data as it was")
case("reverse_thrice", "reverse", dict(axis=(0, 0, 0, 2)), [("data", (3, 2, 2))],
     notes="an axis listed three times is reversed")
case("reverse_none", "reverse", dict(axis=()), [("data", (2, 3))],
     notes="no axis: the data unchanged")
case("reverse_unsorted", "reverse", dict(axis=(2, 0)), [("data", (2, 3, 4))])
case("reverse_flip_alias", "flip", dict(axis=(0,)), [("data", (4, 2))])
case("reverse_int32", "reverse", dict(axis=(0, 1)), [("data", (3, 2))],
     dtypes={"data": "int32"})


# ----------------------------------------------------------------------------
# running a case
# ----------------------------------------------------------------------------

def default_value(rng, name, shape):
    if name.endswith("_weight"):
        return rng.normal(0, 0.5, size=shape)
    if name.endswith("_bias"):
        return rng.normal(0, 0.3, size=shape)
    if name.endswith("_gamma"):
        return rng.uniform(0.5, 1.5, size=shape)
    if name.endswith("_beta"):
        return rng.normal(0, 0.3, size=shape)
    if name.endswith("moving_mean"):
        return rng.normal(0, 0.5, size=shape)
    if name.endswith("moving_var"):
        return rng.uniform(0.5, 2.0, size=shape)
    return rng.normal(0, 1, size=shape)


def symbol_for(c):
    variables = {}

    def v(name):
        if name not in variables:
            variables[name] = mx.sym.var(name)
        return variables[name]

    if c["build"] is not None:
        sym = c["build"](v)
    else:
        fn = mx.sym
        for part in c["op"].split("."):
            fn = getattr(fn, part)
        positional = [v(n) for n, _ in c["data"] if n not in c["labels"]]
        kwargs = dict(c["attrs"])
        for lab in c["labels"]:
            kwargs["label"] = v(lab)
        sym = fn(*positional, name="op", **kwargs)
    if c["head"] is not None:
        sym = sym[c["head"]]
    return sym


def run_case(c):
    rng = np.random.RandomState(seed_for(c["name"]))
    sym = symbol_for(c)
    js = json.loads(sym.tojson())
    ops = [n for n in js["nodes"] if n["op"] != "null"]
    assert len(ops) == 1, (c["name"], [n["op"] for n in ops])
    node = ops[0]
    data_shapes = dict(c["data"])
    arg_names = sym.list_arguments()
    aux_names = sym.list_auxiliary_states()
    known = dict(data_shapes)
    known.update(c["shapes"])
    arg_shapes, _, aux_shapes = sym.infer_shape(**known)
    arrays = {}
    for name, shape in list(zip(arg_names, arg_shapes)) + list(zip(aux_names, aux_shapes)):
        shape = tuple(shape)
        if name in c["values"]:
            value = c["values"][name](rng, shape)
        elif name in data_shapes:
            value = rng.normal(0, 1, size=shape)
        else:
            value = default_value(rng, name, shape)
        arrays[name] = np.asarray(value, dtype=np.float32).reshape(shape)
    inputs = [n for n in arg_names if n in data_shapes]
    params = [n for n in arg_names if n not in data_shapes]
    args = {n: mx.nd.array(arrays[n], dtype=c["dtypes"].get(n, "float32")) for n in arg_names}
    aux = {n: mx.nd.array(arrays[n], dtype="float32") for n in aux_names}
    updated = {}
    if c["train"]:
        grads = {n: mx.nd.zeros(arrays[n].shape) for n in arg_names}
        ex = sym.bind(mx.cpu(), args, args_grad=grads, grad_req="write", aux_states=aux)
        outs = ex.forward(is_train=True)
        heads = [mx.nd.ones(outs[0].shape)] + [mx.nd.zeros(o.shape) for o in outs[1:]]
        ex.backward(heads)
        outs = [o.asnumpy() for o in outs]
        updated = {n: ex.aux_dict[n].asnumpy() for n in aux_names}
    else:
        ex = sym.bind(mx.cpu(), args, grad_req="null", aux_states=aux)
        outs = [o.asnumpy() for o in ex.forward(is_train=False)]
        # The operator must not have touched the auxiliary states at inference.
        for n in aux_names:
            assert np.array_equal(ex.aux_dict[n].asnumpy(), arrays[n]), (c["name"], n)

    outdir = os.path.join(OUT_ROOT, c["name"])
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    with open(os.path.join(outdir, "model-symbol.json"), "w") as f:
        f.write(sym.tojson())
    saved = {}
    for n in sorted(params):
        saved["arg:" + n] = mx.nd.array(arrays[n], dtype="float32")
    for n in sorted(aux_names):
        saved["aux:" + n] = mx.nd.array(arrays[n], dtype="float32")
    mx.nd.save(os.path.join(outdir, "model-0000.params"), saved)
    for n in inputs:
        np.save(os.path.join(outdir, "input-%s.npy" % n),
                arrays[n].astype(c["dtypes"].get(n, "float32")))
    for k, o in enumerate(outs):
        np.save(os.path.join(outdir, "output-%d.npy" % k), o.astype(np.float32))
    for n, a in updated.items():
        np.save(os.path.join(outdir, "aux-%s.npy" % n), a.astype(np.float32))
    meta = {
        "inputs": [{"name": n, "dtype": c["dtypes"].get(n, "float32"),
                    "shape": list(arrays[n].shape)} for n in inputs],
        "outputs": sym.list_outputs(),
        "mxnet_version": mx.__version__,
        "op": node["op"],
        "attrs": node.get("attrs", {}),
        "called": "mx.sym." + c["op"],
        "notes": c["notes"],
    }
    if c["labels"]:
        meta["ignored_inputs"] = list(c["labels"])
    if c["train"]:
        meta["is_train"] = True
        meta["updated_aux"] = sorted(updated)
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return {"name": c["name"], "op": node["op"], "attrs": node.get("attrs", {}),
            "is_train": bool(c["train"]), "outputs": len(outs), "notes": c["notes"]}


def main(argv):
    if "--list" in argv:
        for c in CASES:
            print(c["name"], c["op"], c["attrs"])
        return 0
    prefixes = [a for a in argv if not a.startswith("-")]
    chosen = [c for c in CASES if not prefixes or any(c["name"].startswith(p) for p in prefixes)]
    if not prefixes and os.path.isdir(OUT_ROOT):
        shutil.rmtree(OUT_ROOT)
    os.makedirs(OUT_ROOT, exist_ok=True)
    index = []
    for c in chosen:
        if "-v" in argv:
            print(c["name"], flush=True)
        index.append(run_case(c))
    index_path = os.path.join(OUT_ROOT, "index.json")
    if prefixes and os.path.exists(index_path):
        # Regenerating some cases keeps every other case's entry, in CASES order.
        with open(index_path) as f:
            kept = {e["name"]: e for e in json.load(f)["cases"]}
        kept.update({e["name"]: e for e in index})
        order = [c["name"] for c in CASES]
        index = [kept[n] for n in order if n in kept]
        index += [e for n, e in kept.items() if n not in order]
    with open(index_path, "w") as f:
        json.dump({"mxnet_version": mx.__version__, "cases": index}, f, indent=1)
        f.write("\n")
    census = {}
    for e in index:
        census[e["op"]] = census.get(e["op"], 0) + 1
    total = sum(os.path.getsize(os.path.join(dp, fn))
                for dp, _, fns in os.walk(OUT_ROOT) for fn in fns)
    print("%d cases, %d ops, %d bytes" % (len(index), len(census), total))
    for op in sorted(census):
        print("  %-26s %d" % (op, census[op]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
