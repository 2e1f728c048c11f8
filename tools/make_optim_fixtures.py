#!/usr/bin/env python3
"""Record MXNet 1.9.1's optimizers, learning-rate schedules and global-norm clipping,
for ward-train's optimizer checks (crates/ward-train/tests/it/optimizers.rs).

Run with the MXNet virtual environment from the repository root:

    .venv-mx/bin/python tools/make_optim_fixtures.py

(the MXNet 1.9.1 environment of the main checkout) and it writes
`tests/fixtures/optim/optim.json` (about 140 KB):

* `params`: three parameters (shapes (2, 3), (4,), (3, 1)), their initial weights and
  ten steps of fixed gradients, shared by every case; `params5`: five parameters, for
  the cases that need more than one aggregated group (SGD and LARS aggregate 4);
* `optimizers`: for every case, the optimizer's name and keyword arguments (the same
  keys ward's `OptimizerSpec` takes), optionally a schedule, the mode that decides the
  per-parameter multipliers ("gluon": `param_dict` of Gluon Parameters with their own
  `lr_mult`/`wd_mult`; "module": `param_idx2name` and a symbol whose variables carry
  `__lr_mult__`/`__wd_mult__`, so MXNet's name rule applies), the parameter names and
  multipliers, and the weights after each of the ten steps;
* `schedules`: every scheduler (each warm-up mode) sampled at update counts 0..=60 by
  one scheduler object, called in increasing order as the optimizer calls it;
* `clip_global_norm`: `mx.gluon.utils.clip_global_norm` on a few sets of arrays,
  with the norm it returns and the arrays it leaves (non-finite norms included).

Every step goes through MXNet's own `mx.optimizer.get_updater(optimizer)` called with
the lists of indices, gradients and weights, exactly as Gluon's Trainer and Module's
`_update_params` call it (so SGD, LARS and LAMB take their aggregated multi-tensor
kernels, as they do in training). The updater gets copies of the gradients: AdaDelta
scales its gradient argument in place.

Float32 values are written as their bit patterns (unsigned 32-bit integers), learning
rates (Python floats) as JSON numbers, which round-trip. Deterministic: fixed seeds,
NaiveEngine, one thread.
"""
import json
import os
import struct
import sys
import warnings

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402

assert mx.__version__ == "1.9.1", mx.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "optim")
STEPS = 10
SHAPES = [(2, 3), (4,), (3, 1)]
GLUON_NAMES = ["w0", "w1", "w2"]
MODULE_NAMES = ["fc1_weight", "fc1_bias", "bn_gamma"]


def bits(a):
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    return [int(x) for x in a.view(np.uint32)]


rng = np.random.RandomState(20261203)
INIT = [rng.uniform(-1.0, 1.0, size=s).astype(np.float32) for s in SHAPES]
# Gradients away from zero (Adamax divides by max |g|), some beyond the clip bounds used.


def make_grads(r, shapes):
    grads = []
    for _ in range(STEPS):
        step = []
        for s in shapes:
            g = r.normal(0.0, 0.8, size=s)
            g = np.where(np.abs(g) < 0.05, np.sign(g + 1e-9) * 0.05, g)
            step.append(g.astype(np.float32))
        grads.append(step)
    return grads


GRADS = make_grads(rng, SHAPES)
SHAPES5 = [(2, 3), (4,), (3, 1), (5,), (2, 2)]
GLUON_NAMES5 = ["w0", "w1", "w2", "w3", "w4"]
MODULE_NAMES5 = ["fc1_weight", "fc1_bias", "bn_gamma", "fc2_weight", "bn_beta"]
rng5 = np.random.RandomState(5)
INIT5 = [rng5.uniform(-1.0, 1.0, size=s).astype(np.float32) for s in SHAPES5]
GRADS5 = make_grads(rng5, SHAPES5)


def make_schedule(spec, base_lr):
    if spec is None:
        return None
    kw = dict(spec)
    name = kw.pop("name")
    cls = {
        "factor": mx.lr_scheduler.FactorScheduler,
        "multifactor": mx.lr_scheduler.MultiFactorScheduler,
        "poly": mx.lr_scheduler.PolyScheduler,
        "cosine": mx.lr_scheduler.CosineScheduler,
    }[name]
    return cls(base_lr=base_lr, **kw)


# Defaults of the learning rate per optimizer, for constructing a schedule's base.
DEFAULT_LR = {"adam": 0.001, "adamax": 0.002, "nadam": 0.001, "rmsprop": 0.001,
              "lamb": 0.001, "ftrl": 0.1}


def run_case(case):
    name = case["optimizer"]
    kwargs = dict(case["kwargs"])
    mode = case.get("mode", "gluon")
    five = case.get("param_set") == "params5"
    shapes, init, grads_all = (SHAPES5, INIT5, GRADS5) if five else (SHAPES, INIT, GRADS)
    gluon_names, module_names = (GLUON_NAMES5, MODULE_NAMES5) if five else (GLUON_NAMES, MODULE_NAMES)
    lr_mults = case.get("lr_mults", [1.0] * len(shapes))
    wd_mults = case.get("wd_mults", [None] * len(shapes))
    sched = make_schedule(case.get("schedule"),
                          kwargs.get("learning_rate", DEFAULT_LR.get(name, 0.01)))
    extra = {}
    if sched is not None:
        extra["lr_scheduler"] = sched
    if mode == "gluon":
        pd = {}
        for i, (n, s) in enumerate(zip(gluon_names, shapes)):
            p = mx.gluon.Parameter(n, shape=s, lr_mult=lr_mults[i],
                                   wd_mult=1.0 if wd_mults[i] is None else wd_mults[i])
            pd[i] = p
        extra["param_dict"] = pd
        names = gluon_names
    else:
        names = module_names
        syms = []
        for i, n in enumerate(names):
            attrs = {}
            if lr_mults[i] != 1.0:
                attrs["lr_mult"] = lr_mults[i]
            if wd_mults[i] is not None:
                attrs["wd_mult"] = wd_mults[i]
            syms.append(mx.sym.Variable(n, **attrs))
        extra["sym"] = mx.sym.Group(syms)
        extra["param_idx2name"] = {i: n for i, n in enumerate(names)}
    opt = mx.optimizer.create(name, **kwargs, **extra)
    updater = mx.optimizer.get_updater(opt)
    weights = [mx.nd.array(w, dtype="float32") for w in init]
    out = []
    for step in range(STEPS):
        grads = [mx.nd.array(g, dtype="float32") for g in grads_all[step]]
        updater(list(range(len(weights))), grads, weights)
        out.append([bits(w.asnumpy()) for w in weights])
    rec = {
        "case": case["case"],
        "optimizer": name,
        "spec": dict(kwargs, name=name),
        "mode": mode,
        "names": names,
        "lr_mults": lr_mults,
        "wd_mults": wd_mults,
        "weights": out,
        "param_set": "params5" if five else "params",
    }
    if case.get("schedule") is not None:
        rec["schedule"] = case["schedule"]
    return rec


C = []


def case(cname, optimizer, **kw):
    c = {"case": cname, "optimizer": optimizer, "kwargs": kw.pop("kwargs", {})}
    c.update(kw)
    C.append(c)


MULTS = dict(lr_mults=[2.0, 0.5, 1.0], wd_mults=[0.5, 3.0, None])

# sgd
case("sgd_default", "sgd")
case("sgd_momentum", "sgd", kwargs=dict(learning_rate=0.1, momentum=0.9))
case("sgd_momentum_wd_rescale_clip", "sgd",
     kwargs=dict(learning_rate=0.05, momentum=0.8, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("sgd_wd_clip_nomom", "sgd", kwargs=dict(learning_rate=0.1, wd=0.05, clip_gradient=0.4))
case("sgd_lazy_false", "sgd", kwargs=dict(learning_rate=0.1, momentum=0.5, wd=0.02, lazy_update=False))
case("sgd_mults_gluon", "sgd", kwargs=dict(learning_rate=0.1, momentum=0.9, wd=0.1), **MULTS)
case("sgd_module_names", "sgd", kwargs=dict(learning_rate=0.1, momentum=0.9, wd=0.1), mode="module")
case("sgd_module_mults", "sgd", kwargs=dict(learning_rate=0.1, momentum=0.9, wd=0.1), mode="module", **MULTS)
case("sgd_factor_schedule", "sgd", kwargs=dict(learning_rate=0.2, momentum=0.9),
     schedule=dict(name="factor", step=3, factor=0.5, warmup_steps=2, warmup_begin_lr=0.05))
# nag
case("nag_default", "nag")
case("nag_momentum", "nag", kwargs=dict(learning_rate=0.1, momentum=0.9))
case("nag_momentum_wd_rescale_clip", "nag",
     kwargs=dict(learning_rate=0.05, momentum=0.7, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("nag_nomom_wd_clip", "nag", kwargs=dict(learning_rate=0.1, wd=0.02, rescale_grad=2.0, clip_gradient=0.5))
case("nag_module_mults", "nag", kwargs=dict(learning_rate=0.1, momentum=0.9, wd=0.1), mode="module", **MULTS)
# signum
case("signum_default", "signum")
case("signum_wd_lh_clip", "signum",
     kwargs=dict(learning_rate=0.02, momentum=0.8, wd=0.01, wd_lh=0.05, rescale_grad=0.5, clip_gradient=0.3))
case("signum_nomom", "signum", kwargs=dict(learning_rate=0.02, momentum=0.0, wd=0.05, rescale_grad=0.5,
                                            clip_gradient=0.3))
case("signum_mults", "signum", kwargs=dict(learning_rate=0.02, wd=0.1), **MULTS)
# adam
case("adam_default", "adam")
case("adam_wd_rescale_clip", "adam",
     kwargs=dict(learning_rate=0.01, beta1=0.8, beta2=0.99, epsilon=1e-6, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("adam_lazy_false", "adam", kwargs=dict(learning_rate=0.01, lazy_update=False))
case("adam_module_mults", "adam", kwargs=dict(learning_rate=0.01, wd=0.1), mode="module", **MULTS)
case("adam_cosine_schedule", "adam", kwargs=dict(learning_rate=0.01),
     schedule=dict(name="cosine", max_update=8, final_lr=0.001, warmup_steps=3, warmup_begin_lr=0.002))
# adamax
case("adamax_default", "adamax")
case("adamax_wd_rescale_clip", "adamax",
     kwargs=dict(learning_rate=0.01, beta1=0.8, beta2=0.99, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("adamax_mults", "adamax", kwargs=dict(learning_rate=0.01, wd=0.1), **MULTS)
# nadam
case("nadam_default", "nadam")
case("nadam_wd_rescale_clip", "nadam",
     kwargs=dict(learning_rate=0.01, beta1=0.8, beta2=0.99, epsilon=1e-6, schedule_decay=0.01,
                 wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("nadam_module_mults", "nadam", kwargs=dict(learning_rate=0.01, wd=0.1), mode="module", **MULTS)
# rmsprop
case("rmsprop_default", "rmsprop")
case("rmsprop_wd_rescale_clip", "rmsprop",
     kwargs=dict(learning_rate=0.01, gamma1=0.8, epsilon=1e-6, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("rmsprop_clip_weights", "rmsprop", kwargs=dict(learning_rate=0.05, clip_weights=0.6))
case("rmsprop_centered", "rmsprop", kwargs=dict(centered=True))
case("rmsprop_centered_wd_rescale_clip", "rmsprop",
     kwargs=dict(learning_rate=0.01, gamma1=0.8, gamma2=0.7, centered=True, wd=0.01, rescale_grad=0.5,
                 clip_gradient=0.3, clip_weights=0.9))
case("rmsprop_module_mults", "rmsprop", kwargs=dict(learning_rate=0.01, wd=0.1), mode="module", **MULTS)
# adagrad
case("adagrad_default", "adagrad")
case("adagrad_wd_rescale_clip", "adagrad",
     kwargs=dict(learning_rate=0.1, eps=1e-5, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("adagrad_mults", "adagrad", kwargs=dict(learning_rate=0.1, wd=0.1), **MULTS)
# adadelta
case("adadelta_default", "adadelta")
case("adadelta_wd_rescale_clip", "adadelta",
     kwargs=dict(rho=0.8, epsilon=1e-4, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("adadelta_module_mults", "adadelta", kwargs=dict(wd=0.1, learning_rate=0.5), mode="module", **MULTS)
# ftrl
case("ftrl_default", "ftrl")
case("ftrl_wd_rescale_clip", "ftrl",
     kwargs=dict(learning_rate=0.2, lamda1=0.02, beta=0.5, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("ftrl_mults", "ftrl", kwargs=dict(learning_rate=0.2, wd=0.1), **MULTS)
# ftml
case("ftml_default", "ftml")
case("ftml_wd_rescale_clip", "ftml",
     kwargs=dict(learning_rate=0.01, beta1=0.5, beta2=0.99, epsilon=1e-6, wd=0.01, rescale_grad=0.5,
                 clip_gradient=0.3))
case("ftml_module_mults", "ftml", kwargs=dict(learning_rate=0.01, wd=0.1), mode="module", **MULTS)
# lamb
case("lamb_default", "lamb")
case("lamb_wd_rescale_clip_bounds", "lamb",
     kwargs=dict(learning_rate=0.01, beta1=0.8, beta2=0.99, epsilon=1e-5, wd=0.01, rescale_grad=0.5,
                 clip_gradient=0.3, lower_bound=0.5, upper_bound=1.2))
case("lamb_no_bias_correction", "lamb", kwargs=dict(learning_rate=0.01, bias_correction=False, wd=0.02))
case("lamb_module_mults", "lamb", kwargs=dict(learning_rate=0.01, wd=0.1), mode="module", **MULTS)
# lars
case("lars_default", "lars")
case("lars_momentum_wd", "lars", kwargs=dict(learning_rate=0.5, momentum=0.9, wd=0.01, eta=0.01, eps=1e-6))
case("lars_rescale_clip", "lars",
     kwargs=dict(learning_rate=0.5, momentum=0.8, wd=0.01, eta=0.02, rescale_grad=0.5, clip_gradient=0.3))
case("lars_module_names", "lars", kwargs=dict(learning_rate=0.5, momentum=0.9, wd=0.01, eta=0.01),
     mode="module", **MULTS)
case("lars_schedule_correction", "lars", kwargs=dict(learning_rate=0.5, momentum=0.9, wd=0.01, eta=0.01),
     schedule=dict(name="multifactor", step=[2, 5], factor=0.5))
case("lars_schedule_no_correction", "lars",
     kwargs=dict(learning_rate=0.5, momentum=0.9, wd=0.01, eta=0.01, momentum_correction=False),
     schedule=dict(name="poly", max_update=12, pwr=2, final_lr=0.01))
# dcasgd
case("dcasgd_default", "dcasgd")
case("dcasgd_wd_rescale_clip", "dcasgd",
     kwargs=dict(learning_rate=0.1, lamda=0.5, wd=0.01, rescale_grad=0.5, clip_gradient=0.3))
case("dcasgd_module_mults", "dcasgd", kwargs=dict(learning_rate=0.1, wd=0.1), mode="module", **MULTS)
# More than one aggregated group (SGD and LARS take 4 at a time); Nadam's shared schedule.
MULTS5 = dict(lr_mults=[2.0, 0.5, 1.0, 1.0, 1.5], wd_mults=[0.5, 3.0, None, None, None])
case("sgd_five_params", "sgd", kwargs=dict(learning_rate=0.1, momentum=0.9, wd=0.05),
     param_set="params5", **MULTS5)
case("lars_five_params_schedule", "lars", kwargs=dict(learning_rate=0.5, momentum=0.9, wd=0.01, eta=0.01),
     schedule=dict(name="factor", step=2, factor=0.6), param_set="params5", mode="module")
case("nadam_five_params", "nadam", kwargs=dict(learning_rate=0.01, wd=0.01), param_set="params5")


# The registry's optimizers without cases, and why.
NOT_COVERED = {
    "sgld": "not deterministic: adds Gaussian noise to every update",
    "test": "MXNet's own test optimizer",
    "ccsgd": "deprecated alias of sgd",
    "lbsgd": "not in ward yet (large-batch SGD with gradient accumulation)",
    "groupadagrad": "not in ward yet (contrib; row-wise state of 2-D weights)",
}

SCHEDULES = []


def sched(cname, base_lr, **kw):
    SCHEDULES.append(dict(case=cname, base_lr=base_lr, spec=kw))


for mode in ["linear", "constant"]:
    w = dict(warmup_steps=7, warmup_begin_lr=0.01, warmup_mode=mode)
    sched("factor_" + mode, 0.5, name="factor", step=5, factor=0.7, **w)
    sched("multifactor_" + mode, 0.5, name="multifactor", step=[10, 20, 35], factor=0.3, **w)
    sched("poly_" + mode, 0.5, name="poly", max_update=50, pwr=2, final_lr=0.02, **w)
    sched("cosine_" + mode, 0.5, name="cosine", max_update=50, final_lr=0.02, **w)
sched("factor_plain", 0.1, name="factor", step=4, factor=0.5)
sched("factor_stop", 1.0, name="factor", step=3, factor=0.3, stop_factor_lr=1e-3)
sched("multifactor_plain", 0.1, name="multifactor", step=[1, 2, 40], factor=0.5)
sched("poly_pwr3", 0.2, name="poly", max_update=40, pwr=3)
sched("poly_pwr_half", 0.2, name="poly", max_update=40, pwr=0.5, final_lr=0.05)
sched("cosine_plain", 0.2, name="cosine", max_update=45)


def run_schedule(s):
    obj = make_schedule(s["spec"], s["base_lr"])
    samples = [[n, float(obj(n))] for n in range(0, 61)]
    return dict(s, samples=samples)


def run_clip():
    out = []
    crng = np.random.RandomState(7)
    sets = [
        ("below", 100.0, [crng.normal(0, 1, s).astype(np.float32) for s in SHAPES]),
        ("above", 1.5, [crng.normal(0, 1, s).astype(np.float32) for s in SHAPES]),
        ("single", 0.25, [crng.normal(0, 2, (5, 7)).astype(np.float32)]),
        ("nan", 1.0, [np.array([1.0, np.nan, 2.0], np.float32), np.array([0.5], np.float32)]),
        ("inf", 1.0, [np.array([1.0, np.inf, 2.0], np.float32), np.array([0.5], np.float32)]),
    ]
    for cname, max_norm, arrays in sets:
        nds = [mx.nd.array(a, dtype="float32") for a in arrays]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            norm = mx.gluon.utils.clip_global_norm(nds, max_norm)
        out.append(dict(case=cname, max_norm=max_norm,
                        arrays=[bits(a) for a in arrays],
                        norm=struct.unpack("<I", struct.pack("<f", norm))[0],
                        out=[bits(n.asnumpy()) for n in nds]))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    failures = []
    recs = []
    for c in C:
        try:
            recs.append(run_case(c))
        except Exception as e:  # recorded, never dropped silently
            failures.append((c["case"], repr(e)))
    # DCASGD with momentum: MXNet 1.9.1 tests `if mom:` on an NDArray, which raises for
    # more than one element; ward refuses the setting. Record that MXNet fails.
    try:
        run_case(dict(case="dcasgd_momentum", optimizer="dcasgd", kwargs=dict(momentum=0.9)))
        dcasgd_momentum = "ran"
    except Exception as e:
        dcasgd_momentum = type(e).__name__ + ": " + str(e).splitlines()[0]
    # Signum without momentum calls signsgd_update, which has no wd_lh argument.
    try:
        run_case(dict(case="signum_nomom_wd_lh", optimizer="signum", kwargs=dict(momentum=0.0, wd_lh=0.1)))
        signum_nomom_wd_lh = "ran"
    except Exception as e:
        signum_nomom_wd_lh = type(e).__name__ + ": " + str(e).splitlines()[0]
    if failures:
        for f in failures:
            print("FAILED", *f, file=sys.stderr)
        sys.exit(1)
    # MXNet's registry, each name covered by cases or excluded with the reason, so the
    # Rust test notices an optimizer that is neither.
    cased = {r["optimizer"] for r in recs}
    registry = {}
    for name in sorted(mx.optimizer.Optimizer.opt_registry):
        if name in cased:
            registry[name] = "covered"
        elif name in NOT_COVERED:
            registry[name] = NOT_COVERED[name]
        else:
            print("registry optimizer %s has neither cases nor a reason" % name, file=sys.stderr)
            sys.exit(1)
    doc = {
        "mxnet_version": mx.__version__,
        "registry": registry,
        "steps": STEPS,
        "params": {
            "shapes": [list(s) for s in SHAPES],
            "init": [bits(w) for w in INIT],
            "grads": [[bits(g) for g in step] for step in GRADS],
        },
        "params5": {
            "shapes": [list(s) for s in SHAPES5],
            "init": [bits(w) for w in INIT5],
            "grads": [[bits(g) for g in step] for step in GRADS5],
        },
        "optimizers": recs,
        "schedules": [run_schedule(s) for s in SCHEDULES],
        "clip_global_norm": run_clip(),
        "notes": {"dcasgd_momentum": dcasgd_momentum, "signum_nomom_wd_lh": signum_nomom_wd_lh},
    }
    path = os.path.join(OUT, "optim.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
    print("wrote %s: %d optimizer cases (%s), %d schedules, %d clip cases, %d bytes"
          % (path, len(recs), ", ".join(sorted({r["optimizer"] for r in recs})),
             len(SCHEDULES), len(doc["clip_global_norm"]), os.path.getsize(path)))
    print("dcasgd with momentum:", dcasgd_momentum)
    print("signum without momentum, with wd_lh:", signum_nomom_wd_lh)


if __name__ == "__main__":
    main()
