#!/usr/bin/env python3
"""MXNet 1.9.1 optimizer-state files (`.states`) and a hostile pickle corpus, for
ward-mxnet's restricted pickle reader (crates/ward-mxnet/tests/it/states.rs).

Run with the MXNet virtual environment from the repository root:

    /work/main/.venv-mx/bin/python tools/make_states_fixtures.py

It writes `tests/fixtures/mxnet-states/` (about 200 KB):

* one directory per training case, each trained for three steps by MXNet itself and saved
  as `model-symbol.json`, `model-0001.params` and `model-0001.states`:
  - `module_sgd`: Module, MLP 8-16-4 + SoftmaxOutput, SGD momentum 0.9, wd 1e-4;
  - `module_adam`: the same MLP, Adam;
  - `module_kvstore`: the same MLP, SGD momentum, with a `local` KVStore object, so
    that `update_on_kvstore` is true and the states are keyed by parameter *name*;
  - `gluon_sgd`: Gluon MLP 8-16-4, SoftmaxCrossEntropyLoss, Trainer SGD momentum
    (`Trainer.save_states`, which dumps the optimizer too);
  - `gluon_adam`: Gluon tiny conv net (Conv2D 2x3x3 on 1x5x5, Dense 4), Trainer Adam
    with a FactorScheduler (the scheduler is pickled inside the optimizer);
  each directory also holds `next.json`: the next batch (`data`, `label`), the batch
  size, the optimizer arguments, and the weights MXNet has after one more step
  started from the saved files (Module.load(..., load_optimizer_states=True), or a fresh
  Gluon net + `load_parameters` + `Trainer.load_states`), as float bit patterns;
* `protocol2.states`, `protocol3.states`: the `module_adam` states and the `gluon_adam`
  (states, optimizer) pair re-pickled with protocols 2 and 3 (what `pickle.dumps` writes
  under older Pythons: GLOBAL, BINPUT, `_codecs.encode` for bytes under protocol 2);
* `multi_precision.states`: float16 weights (3, 4) and (3,) updated three times by Adam
  with multi_precision through MXNet's Updater (the CPU build has no float16 Dense), saved
  as `Trainer.save_states` saves: each state is (float32 master weight, (mean, var));
* `framing.states`: a Module-form dict whose arrays cross the 64 KiB frame size of
  protocol 4 (one array bypasses the frame, two fill one), for the writer's byte-exact test;
* `expected.json`: per states file, each key's state as nested lists of
  `{shape, dtype, fnv1a64, bits?}` (`bits`: float32 bit patterns, for arrays of at most
  1024 elements; `fnv1a64`: FNV-1a 64 of the array's little-endian bytes), and for Gluon
  files the optimizer's class and fields;
* `hostile/`: pickles that must be refused; `hostile/manifest.json` says, per file, the
  error kind and the opcode or global ward must name. Those that would run code if
  unpickled try to create `/tmp/ward-pickle-pwned-<name>`. None of them is ever loaded here.

Deterministic: fixed seeds, NaiveEngine, one thread.
"""
import io
import json
import os
import pickle
import struct
import sys

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

assert mx.__version__ == "1.9.1", mx.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "mxnet-states")
BATCH = 4
# Nesting of the deep hostile inputs: beyond every default limit, yet small files (the tests
# build 1 000 000-deep ones themselves).
DEEP = 12_000
STEPS = 3


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def array_entry(a):
    a = a.asnumpy() if isinstance(a, mx.nd.NDArray) else a
    data = np.ascontiguousarray(a).tobytes()
    entry = {"shape": list(a.shape), "dtype": str(a.dtype), "fnv1a64": "%016x" % fnv1a64(data)}
    if a.size <= 1024:
        if a.dtype == np.float32:
            entry["bits"] = [int(x) for x in np.ascontiguousarray(a).reshape(-1).view(np.uint32)]
        elif a.dtype == np.float16:
            entry["bits"] = [int(x) for x in np.ascontiguousarray(a).reshape(-1).view(np.uint16)]
    return entry


def state_entry(s):
    if s is None:
        return None
    if isinstance(s, (tuple, list)):
        return [state_entry(x) for x in s]
    return array_entry(s)


def bits(a):
    a = a.asnumpy() if isinstance(a, mx.nd.NDArray) else a
    if a.dtype == np.float16:
        return [int(x) for x in np.ascontiguousarray(a).reshape(-1).view(np.uint16)]
    return [int(x) for x in np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32)]


def plain(v):
    """The optimizer's fields as JSON (numbers, strings, lists, dicts with string keys)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (mx.optimizer.Optimizer, mx.lr_scheduler.LRScheduler)):
        return {"class": type(v).__module__ + "." + type(v).__name__,
                "fields": plain(v.__getstate__() if isinstance(v, mx.optimizer.Optimizer)
                                else v.__dict__)}
    return v


def batches(seed, shape, classes):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(STEPS + 1):
        data = rng.uniform(-1, 1, size=(BATCH,) + shape).astype(np.float32)
        label = rng.randint(0, classes, size=(BATCH,)).astype(np.float32)
        out.append((data, label))
    return out


def next_json(batch, optimizer, args, weights, extra=None):
    data, label = batch
    doc = {
        "batch_size": BATCH,
        "optimizer": optimizer,
        "optimizer_params": args,
        "data": {"shape": list(data.shape), "values": [float(x) for x in data.reshape(-1)]},
        "label": [float(x) for x in label],
        "weights_after": {name: {"shape": list(w.shape), "dtype": str(w.dtype), "bits": bits(w)}
                          for name, w in weights},
    }
    if extra:
        doc.update(extra)
    return doc


# ----------------------------------------------------------------------------------------
# Module cases


def mlp_symbol():
    data = mx.sym.Variable("data")
    fc1 = mx.sym.FullyConnected(data, num_hidden=16, name="fc1")
    act = mx.sym.Activation(fc1, act_type="relu", name="relu1")
    fc2 = mx.sym.FullyConnected(act, num_hidden=4, name="fc2")
    return mx.sym.SoftmaxOutput(fc2, name="softmax")


def module_case(name, optimizer, args, kvstore, seed):
    mx.random.seed(seed)
    np.random.seed(seed)
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, "model")
    data = batches(seed, (8,), 4)

    def new_module():
        m = mx.mod.Module(mlp_symbol(), data_names=["data"], label_names=["softmax_label"],
                          context=mx.cpu())
        m.bind(data_shapes=[("data", (BATCH, 8))], label_shapes=[("softmax_label", (BATCH,))])
        return m

    mod = new_module()
    mod.init_params(mx.init.Xavier())
    kv = mx.kv.create("local") if kvstore else "local"
    mod.init_optimizer(kvstore=kv, optimizer=optimizer, optimizer_params=args)
    for data_b, label_b in data[:STEPS]:
        mod.forward_backward(mx.io.DataBatch([mx.nd.array(data_b)], [mx.nd.array(label_b)]))
        mod.update()
    assert mod._update_on_kvstore == kvstore
    mod.save_checkpoint(prefix, 1, save_optimizer_states=True)
    param_names = list(mod._param_names)

    # One more step in memory, for comparison only.
    mod.forward_backward(mx.io.DataBatch([mx.nd.array(data[STEPS][0])],
                                         [mx.nd.array(data[STEPS][1])]))
    mod.update()
    in_memory = mod.get_params()[0]

    # One more step from the saved files, as a resumed MXNet run takes it.
    loaded = mx.mod.Module.load(prefix, 1, load_optimizer_states=True, data_names=["data"],
                                label_names=["softmax_label"], context=mx.cpu())
    loaded.bind(data_shapes=[("data", (BATCH, 8))], label_shapes=[("softmax_label", (BATCH,))])
    kv2 = mx.kv.create("local") if kvstore else "local"
    loaded.init_optimizer(kvstore=kv2, optimizer=optimizer, optimizer_params=args)
    loaded.forward_backward(mx.io.DataBatch([mx.nd.array(data[STEPS][0])],
                                            [mx.nd.array(data[STEPS][1])]))
    loaded.update()
    resumed = loaded.get_params()[0]
    same = all(np.array_equal(resumed[n].asnumpy(), in_memory[n].asnumpy()) for n in param_names)
    note = ("Module does not save the optimizer: a resumed run starts a fresh optimizer "
            "(num_update and the per-index update counts restart at 0)")
    doc = next_json(data[STEPS], optimizer, args, [(n, resumed[n]) for n in param_names],
                    {"api": "module", "update_on_kvstore": kvstore, "param_names": param_names,
                     "resumed_equals_in_memory": same, "note": note})
    with open(os.path.join(out, "next.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    return prefix + "-0001.states", {"api": "module", "update_on_kvstore": kvstore,
                                     "param_names": param_names}


# ----------------------------------------------------------------------------------------
# Gluon cases


def gluon_mlp():
    net = gluon.nn.HybridSequential(prefix="mlp_")
    with net.name_scope():
        net.add(gluon.nn.Dense(16, activation="relu", in_units=8, prefix="fc1_"))
        net.add(gluon.nn.Dense(4, in_units=16, prefix="fc2_"))
    return net


def gluon_conv():
    net = gluon.nn.HybridSequential(prefix="conv_")
    with net.name_scope():
        net.add(gluon.nn.Conv2D(2, 3, in_channels=1, activation="relu", prefix="c1_"))
        net.add(gluon.nn.Dense(4, in_units=18, prefix="fc_"))
    return net


def gluon_case(name, build, shape, classes, optimizer, args, seed, dtype="float32",
               make_sched=None):
    mx.random.seed(seed)
    np.random.seed(seed)
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, "model")
    data = batches(seed, shape, classes)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def trainer_for(net):
        kw = dict(args)
        if make_sched:
            kw["lr_scheduler"] = make_sched()
        return gluon.Trainer(net.collect_params(), optimizer, kw)

    def step(net, trainer, batch):
        x = mx.nd.array(batch[0], dtype=dtype)
        y = mx.nd.array(batch[1], dtype=dtype)
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(BATCH)

    net = build()
    net.initialize(mx.init.Xavier())
    if dtype != "float32":
        net.cast(dtype)
    net.hybridize()
    trainer = trainer_for(net)
    for batch in data[:STEPS]:
        step(net, trainer, batch)
    assert not trainer._update_on_kvstore
    net.export(prefix, epoch=1)
    trainer.save_states(prefix + "-0001.states")
    # Gluon's state index is the position in the Trainer's parameters (sorted by name).
    param_names = [p.name for p in trainer._params]

    step(net, trainer, data[STEPS])
    in_memory = {p.name: p.data().copy() for p in trainer._params}

    net2 = build()
    net2.collect_params().load(prefix + "-0001.params", ctx=mx.cpu())
    if dtype != "float32":
        net2.cast(dtype)
    net2.hybridize()
    trainer2 = trainer_for(net2)
    trainer2.load_states(prefix + "-0001.states")
    step(net2, trainer2, data[STEPS])
    resumed = [(p.name, p.data()) for p in trainer2._params]
    same = all(np.array_equal(w.asnumpy(), in_memory[n].asnumpy()) for n, w in resumed)
    assert same, name + ": resuming from the files differs from continuing in memory"
    doc = next_json(data[STEPS], optimizer, args, resumed,
                    {"api": "gluon", "param_names": param_names, "dtype": dtype,
                     "resumed_equals_in_memory": same})
    with open(os.path.join(out, "next.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    return prefix + "-0001.states", {"api": "gluon", "param_names": param_names}


# ----------------------------------------------------------------------------------------
# Expected values


def describe(path, info):
    with open(path, "rb") as f:
        raw = f.read()
    obj = pickle.loads(raw)
    optimizer = None
    if isinstance(obj, tuple) and len(obj) == 2:
        states, opt = obj
        optimizer = plain(opt)
    else:
        states = obj
    entry = dict(info)
    entry["protocol"] = raw[1]
    entry["keys"] = [k if isinstance(k, int) else str(k) for k in states]
    entry["states"] = [{"key": k, "state": state_entry(v)} for k, v in states.items()]
    entry["optimizer"] = optimizer
    return entry


def framing_states():
    """Arrays around protocol 4's 64 KiB frame target, with values from a formula."""
    def arr(n, scale, shape=None):
        a = (np.arange(n, dtype=np.float32) * scale - 1.0).astype(np.float32)
        return mx.nd.array(a.reshape(shape or (n,)))
    return {
        0: arr(16400, 0.001),                          # 65 600 bytes: written outside a frame
        1: (arr(8200, 0.5, (82, 100)), arr(8200, -0.25)),  # together fill one frame
        2: None,
        3: arr(10, 3.0),
        300: (arr(3, 1.0), None, (arr(2, 2.0),)),      # nested, a BININT2 key
    }


# ----------------------------------------------------------------------------------------
# Hostile corpus

PWN = "/tmp/ward-pickle-pwned-"

P = pickle  # opcodes


def u32(n):
    return struct.pack("<I", n)


def u64(n):
    return struct.pack("<Q", n)


def sbu(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def glob2(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_global(module, name):
    return sbu(module) + sbu(name) + b"\x93"


def hostile_corpus():
    """(name, bytes, expected) triples. `expected` is what ward must report: the error
    kind and, where there is one, the opcode or global it names."""
    cases = []

    def add(name, data, kind, what=None):
        cases.append((name, data, {"kind": kind, "names": what}))

    touch = lambda n: ("touch " + PWN + n)  # noqa: E731

    class Reduce:
        def __init__(self, f, args):
            self.f, self.args = f, args

        def __reduce__(self):
            return self.f, self.args

    import subprocess
    import posix
    add("os_system", pickle.dumps(Reduce(os.system, (touch("os_system"),)), protocol=4),
        "forbidden_global", "posix.system")
    # Protocol 0 (no PROTO opcode): refused before its GLOBAL is even read.
    add("os_system_p0", pickle.dumps(Reduce(os.system, (touch("os_system_p0"),)), protocol=0),
        "protocol", "GLOBAL")
    add("os_system_p2", b"\x80\x02" + glob2("os", "system") + b"X" + u32(len(touch("os_system_p2")))
        + touch("os_system_p2").encode() + b"\x85R.", "forbidden_global", "os.system")
    add("stack_global_os_system", b"\x80\x04" + stack_global("os", "system")
        + sbu(touch("stack_global_os_system")) + b"\x85R.", "forbidden_global", "os.system")
    add("posix_system", pickle.dumps(Reduce(posix.system, (touch("posix_system"),)), protocol=3),
        "forbidden_global", "posix.system")
    add("builtins_eval", pickle.dumps(Reduce(eval, ("__import__('os').system('"
                                                    + touch("builtins_eval") + "')",)),
                                      protocol=4), "forbidden_global", "builtins.eval")
    add("builtins_exec", pickle.dumps(Reduce(exec, ("import os; os.system('"
                                                    + touch("builtins_exec") + "')",)),
                                      protocol=2), "forbidden_global", "__builtin__.exec")
    add("subprocess_popen", pickle.dumps(Reduce(subprocess.Popen,
                                                (["touch", PWN + "subprocess_popen"],)),
                                         protocol=4), "forbidden_global", "subprocess.Popen")
    add("subprocess_check_output",
        pickle.dumps(Reduce(subprocess.check_output, (["touch", PWN + "subprocess_check_output"],)),
                     protocol=4), "forbidden_global", "subprocess.check_output")
    # getattr(__import__('os'), 'system')('touch ...')
    add("getattr_chain", b"\x80\x04" + stack_global("builtins", "getattr")
        + stack_global("builtins", "__import__") + sbu("os") + b"\x85R" + sbu("system")
        + b"\x86R" + sbu(touch("getattr_chain")) + b"\x85R.", "forbidden_global",
        "builtins.getattr")
    # copyreg._reconstructor(os._wrap_close, object, None): a protocol-0/1 helper ward
    # does not allow, with a class that is not an MXNet one.
    add("copyreg_reconstructor", b"\x80\x02" + glob2("copyreg", "_reconstructor")
        + glob2("os", "_wrap_close") + glob2("builtins", "object") + b"N\x87R.",
        "forbidden_global", "copyreg._reconstructor")
    # An allowed global used as something else: REDUCE on the NDArray class with a
    # payload argument, bytearray with an encoding trick, REDUCE on a non-callable.
    add("ndarray_reduce_args", b"\x80\x04" + stack_global("mxnet.ndarray.ndarray", "NDArray")
        + sbu(touch("ndarray_reduce_args")) + b"\x85R.", "bad_call", "REDUCE")
    add("reduce_on_str", b"\x80\x04" + sbu("os.system") + sbu(touch("reduce_on_str"))
        + b"\x85R.", "bad_call", "REDUCE")
    # REDUCE whose callable is itself the result of a REDUCE.
    add("nested_reduce", b"\x80\x04" + stack_global("mxnet.ndarray.ndarray", "NDArray")
        + b"N\x85R" + sbu(touch("nested_reduce")) + b"\x85R.", "bad_call", "REDUCE")
    add("newobj_on_ndarray", b"\x80\x04" + stack_global("mxnet.ndarray.ndarray", "NDArray")
        + b")\x81.", "bad_call", "NEWOBJ")
    add("optimizer_with_args", b"\x80\x04" + stack_global("mxnet.optimizer.optimizer", "SGD")
        + sbu(touch("optimizer_with_args")) + b"\x85\x81.", "bad_call", "NEWOBJ")
    add("optimizer_reduce", b"\x80\x04" + stack_global("mxnet.optimizer.optimizer", "SGD")
        + b")R.", "bad_call", "REDUCE")
    # INST / OBJ / NEWOBJ_EX with forbidden classes.
    add("inst_os_system", b"\x80\x02(ios\nsystem\n.",
        "forbidden_opcode", "INST")
    add("obj_os_system", b"\x80\x02(" + glob2("os", "system") + b"X"
        + u32(len(touch("obj_os_system"))) + touch("obj_os_system").encode() + b"o.",
        "forbidden_global", "os.system")
    add("obj_allowed_class", b"\x80\x02(" + glob2("mxnet.optimizer.optimizer", "SGD") + b"o.",
        "forbidden_opcode", "OBJ")
    add("newobj_ex_subprocess", b"\x80\x04" + stack_global("subprocess", "Popen")
        + b")}\x92.", "forbidden_global", "subprocess.Popen")
    add("newobj_ex_allowed", b"\x80\x04" + stack_global("mxnet.optimizer.optimizer", "SGD")
        + b")}\x92.", "forbidden_opcode", "NEWOBJ_EX")
    # BUILD on something that is not an object (Python would call setattr / __setstate__).
    add("build_on_dict", b"\x80\x04}}\x8c\x01a\x8c\x01bsb.", "bad_build", "BUILD")
    add("build_on_list", b"\x80\x04]}b.", "bad_build", "BUILD")
    add("build_twice", b"\x80\x04" + stack_global("mxnet.optimizer.optimizer", "SGD")
        + b")\x81}b}b.", "bad_build", "BUILD")
    # Memo abuse.
    add("memo_get_unset", b"\x80\x04h\x05.", "memo", "BINGET")
    add("memo_long_get_huge", b"\x80\x04j\xff\xff\xff\xff.", "memo", "LONG_BINGET")
    add("memo_put_overwrite", b"\x80\x02Nq\x00q\x00.", "memo", "BINPUT")
    add("memo_put_huge", b"\x80\x02Nr\xff\xff\xff\x7f.", "memo", "LONG_BINPUT")
    add("memo_get_text", b"\x80\x02(g0\n.", "forbidden_opcode", "GET")
    add("memoize_empty_stack", b"\x80\x04\x94.", "stack", "MEMOIZE")
    # Huge length prefixes in small files.
    add("binunicode_4g", b"\x80\x04X\xff\xff\xff\xff" + b"a" * 16 + b".", "exceeds_input",
        "BINUNICODE")
    add("binbytes_4g", b"\x80\x04B\xfe\xff\xff\xff" + b"a" * 16 + b".", "exceeds_input",
        "BINBYTES")
    add("binbytes8_2p63", b"\x80\x04\x8e" + u64((1 << 63) - 1) + b"a" * 16 + b".",
        "exceeds_limit", "BINBYTES8")
    add("binunicode8_2p64", b"\x80\x04\x8d" + u64((1 << 64) - 1) + b"a" * 16 + b".",
        "exceeds_limit", "BINUNICODE8")
    add("long4_4g", b"\x80\x02\x8b\xff\xff\xff\x7f" + b"\x01" * 16 + b".", "int_too_large",
        "LONG4")
    add("long4_big_int", b"\x80\x02\x8b" + u32(16) + b"\x01" * 16 + b".", "int_too_large",
        "LONG4")
    add("long1_big_int", b"\x80\x02\x8a\x09" + b"\x01" * 9 + b".", "int_too_large", "LONG1")
    add("frame_2p63", b"\x80\x04\x95" + u64(1 << 63) + b"N.", "exceeds_input", "FRAME")
    # Deep nesting and stack floods.
    add("deep_empty_list", b"\x80\x04" + b"]" * DEEP + b".", "exceeds_limit", "stack")
    add("deep_mark", b"\x80\x04" + b"(" * DEEP + b".", "exceeds_limit", "stack")
    add("deep_tuple1", b"\x80\x04N" + b"\x85" * DEEP + b".", "exceeds_limit", "depth")
    add("deep_list_append", b"\x80\x04" + b"]" * 1000 + b"a" * 999 + b".", "exceeds_limit",
        "depth")
    # Sharing that would explode if copied: x = (x, x) 30 times (2^31 values).
    add("memo_bomb", b"\x80\x04N\x94" + b"".join(
        b"h" + bytes([i]) + b"\x86\x94" for i in range(30)) + b".",
        "exceeds_limit", "values")
    # A list that contains itself.
    add("self_cycle", b"\x80\x04]\x94h\x00a.", "cycle", "APPEND")
    # Persistent ids and the extension registry.
    add("persid", b"\x80\x02P" + touch("persid").encode() + b"\n.", "forbidden_opcode", "PERSID")
    add("binpersid", b"\x80\x04" + sbu(touch("binpersid")) + b"Q.", "forbidden_opcode",
        "BINPERSID")
    add("ext1", b"\x80\x02\x82\x01.", "forbidden_opcode", "EXT1")
    add("ext2", b"\x80\x02\x83\x01\x00.", "forbidden_opcode", "EXT2")
    add("ext4", b"\x80\x02\x84\x01\x00\x00\x00.", "forbidden_opcode", "EXT4")
    # Text protocol 0 opcodes and protocol 5 out-of-band buffers.
    add("reduce_protocol0_int", b"\x80\x02I1\n.", "forbidden_opcode", "INT")
    add("next_buffer", b"\x80\x04\x97.", "forbidden_opcode", "NEXT_BUFFER")
    add("unknown_opcode", b"\x80\x04\xff.", "forbidden_opcode", "0xff")
    add("protocol_6", b"\x80\x06N.", "protocol", "PROTO")
    # Structure: trailing bytes, no STOP, leftovers on the stack.
    add("trailing_bytes", b"\x80\x04N." + touch("trailing").encode(), "trailing", None)
    add("no_stop", b"\x80\x04N", "truncated", None)
    add("two_values", b"\x80\x04NN.", "stack", "STOP")
    add("mark_left", b"\x80\x04(N.", "stack", "STOP")
    add("global_as_value", b"\x80\x04" + stack_global("mxnet.ndarray.ndarray", "NDArray") + b".",
        "wrong_type", "STOP")
    add("bad_utf8", b"\x80\x04\x8c\x02\xff\xfe.", "utf8", "SHORT_BINUNICODE")
    add("unhashable_key", b"\x80\x04}]Ns.", "wrong_type", "SETITEM")

    # Structurally valid pickles whose content is not an MXNet states file.
    ndarray = stack_global("mxnet.ndarray.ndarray", "NDArray") + b"N\x85R"

    def nd(handle):
        return ndarray + b"}" + sbu("handle") + stack_global("builtins", "bytearray") \
            + b"B" + u32(len(handle)) + handle + b"\x85Rsb"

    good = mx.nd.array([1.0, 2.0, 3.0]).__getstate__()["handle"]
    add("ndarray_handle_truncated", b"\x80\x04}K\x00" + nd(bytes(good[:-3])) + b"s.",
        "ndarray", None)
    bad_magic = bytearray(good)
    bad_magic[8:12] = struct.pack("<i", -7)  # ndim
    add("ndarray_handle_bad_ndim", b"\x80\x04}K\x00" + nd(bytes(bad_magic)) + b"s.",
        "ndarray", None)
    add("ndarray_handle_trailing", b"\x80\x04}K\x00" + nd(bytes(good) + b"\x00") + b"s.",
        "ndarray", None)
    add("ndarray_state_not_dict", b"\x80\x04}K\x00" + ndarray + b"]bs.", "shape", None)
    add("states_not_dict", b"\x80\x04]." , "shape", None)
    add("state_key_float", b"\x80\x04}G" + struct.pack(">d", 1.5) + b"Ns.", "wrong_type",
        "SETITEM")
    add("state_is_list", b"\x80\x04}K\x00]s.", "shape", None)
    add("shared_array", b"\x80\x04}(K\x00" + nd(bytes(good)) + b"\x94K\x01h" + b"\x00u.",
        "shared", None)
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {}
    sgd_args = {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}
    adam_args = {"learning_rate": 0.01, "wd": 1e-4}
    for name, opt, args, kv, seed in [("module_sgd", "sgd", sgd_args, False, 11),
                                      ("module_adam", "adam", adam_args, False, 12),
                                      ("module_kvstore", "sgd", sgd_args, True, 13)]:
        path, info = module_case(name, opt, args, kv, seed)
        expected[name + "/model-0001.states"] = describe(path, info)
    for name, build, shape, opt, args, seed, dtype, sched in [
            ("gluon_sgd", gluon_mlp, (8,), "sgd", sgd_args, 21, "float32", None),
            ("gluon_adam", gluon_conv, (1, 5, 5), "adam", adam_args, 22, "float32",
             lambda: mx.lr_scheduler.FactorScheduler(step=2, factor=0.5, base_lr=0.01,
                                                     warmup_steps=1)),
            ]:
        path, info = gluon_case(name, build, shape, 4, opt, args, seed, dtype, sched)
        expected[name + "/model-0001.states"] = describe(path, info)

    # Multi-precision: float16 weights, whose state is (float32 master copy, inner state).
    # MXNet's CPU build has no float16 FullyConnected, so the updater Gluon's Trainer uses
    # is driven directly, and saved as Trainer.save_states saves it.
    mx.random.seed(23)
    rng = np.random.RandomState(23)
    opt = mx.optimizer.create("adam", learning_rate=0.01, multi_precision=True,
                              rescale_grad=0.25)
    updater = mx.optimizer.get_updater(opt)
    weights = [mx.nd.array(rng.normal(size=s), dtype="float16") for s in [(3, 4), (3,)]]
    for _ in range(STEPS):
        for i, w in enumerate(weights):
            updater(i, mx.nd.array(rng.normal(size=w.shape), dtype="float16"), w)
    with open(os.path.join(OUT, "multi_precision.states"), "wb") as f:
        f.write(updater.get_states(dump_optimizer=True))
    expected["multi_precision.states"] = describe(os.path.join(OUT, "multi_precision.states"),
                                                  {"api": "gluon"})

    for proto in (2, 3):
        with open(os.path.join(OUT, "module_adam", "model-0001.states"), "rb") as f:
            module_states = pickle.loads(f.read())
        with open(os.path.join(OUT, "gluon_adam", "model-0001.states"), "rb") as f:
            gluon_pair = pickle.loads(f.read())
        name = "protocol%d.states" % proto
        # A Gluon pair: (states, optimizer), pickled as Python <= 3.7 would.
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(pickle.dumps(gluon_pair, protocol=proto))
        expected[name] = describe(os.path.join(OUT, name), {"api": "gluon"})
        name = "protocol%d_module.states" % proto
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(pickle.dumps(module_states, protocol=proto))
        expected[name] = describe(os.path.join(OUT, name), {"api": "module"})

    # Written exactly as Module.save_optimizer_states writes (Updater.get_states()).
    updater = mx.optimizer.get_updater(mx.optimizer.create("sgd"))
    updater.states = framing_states()
    with open(os.path.join(OUT, "framing.states"), "wb") as f:
        f.write(updater.get_states())
    expected["framing.states"] = describe(os.path.join(OUT, "framing.states"), {"api": "module"})

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, sort_keys=True, separators=(",", ":"))

    hostile = os.path.join(OUT, "hostile")
    os.makedirs(hostile, exist_ok=True)
    manifest = {}
    for name, data, exp in hostile_corpus():
        with open(os.path.join(hostile, name + ".pickle"), "wb") as f:
            f.write(data)
        manifest[name + ".pickle"] = exp
    with open(os.path.join(hostile, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)

    total = 0
    for root, _, files in os.walk(OUT):
        for fn in sorted(files):
            size = os.path.getsize(os.path.join(root, fn))
            total += size
            print("%8d  %s" % (size, os.path.relpath(os.path.join(root, fn), OUT)))
    print("%8d  total" % total, file=sys.stderr)


if __name__ == "__main__":
    main()
