#!/usr/bin/env python3
"""Writes the `.params` fixtures under tests/fixtures/params/ with the real MXNet 1.9.1.

Run from the workspace root with the MXNet virtual environment:

    .venv-mx/bin/python tools/make_params_fixtures.py

For every fixture `NAME.params` (or `NAME.bin` for a single-array blob) it writes
`NAME.json`: what MXNet itself loads back from that file. The Rust tests in
crates/ward-mxnet/tests/params_fixtures.rs compare ward's reader against these, so they
run without MXNet.

Expected-values JSON, one object per fixture:

    {
      "file": "dict.params",          # the fixture it describes
      "container": "list" | "blob",   # a list file (`mx.nd.save`) or one raw record (§1.9)
      "made_by": "...",               # how the file was written, for people
      "loaded_by": "mx.nd.load" | "npx.load" | "pickle",
      "names": null | ["w", ...],     # null: saved from a list (or an empty dict)
      "arrays": [
        {
          "version": 0 | 1 | 2 | 3,   # record version the writer used (§1.3)
          "stype": "default" | "row_sparse" | "csr",
          "dtype": "float32", ...,    # ward's dtype names
          "shape": [...],             # the logical shape
          "context": {"dev_type": 1, "dev_id": 0},
          # dense only:
          "values": [...],            # flattened; floats as numbers or "nan"/"inf"/"-inf",
                                      # bfloat16 as uint16 bit patterns, bool as 0/1
          "hex": "...",               # the little-endian bytes MXNet holds in memory
          # sparse only:
          "data": {"shape": [...], "values": [...], "hex": "..."},
          "indices": [...],           # row ids (row_sparse) or column ids (csr)
          "indptr": [...],            # csr only
          "dense_hex": "..."          # bytes of arr.tostype('default')
        }
      ]
    }

The context is not something `mx.nd.load` reports (it always loads into cpu(0)), so it
comes from the array that was saved. Everything else comes from what MXNet loaded.

Hand-crafted legacy V0/V1 and mixed-version files are written byte by byte with `struct`
and then loaded with `mx.nd.load`, so the expected values still come from MXNet.
"""

import json
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import mxnet as mx

V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
LIST_MAGIC = 0x112

BFLOAT16 = np.dtype([("bfloat16", np.uint16)])

# mshadow type flags (§1.7).
TYPE_FLAGS = {
    "float32": 0,
    "float64": 1,
    "float16": 2,
    "uint8": 3,
    "int32": 4,
    "int8": 5,
    "int64": 6,
    "bool": 7,
    "bfloat16": 12,
}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "params")


# ----------------------------------------------------------------------------------------
# Turning loaded arrays into expected values


def dtype_name(np_dtype):
    np_dtype = np.dtype(np_dtype)
    if np_dtype == BFLOAT16:
        return "bfloat16"
    if np_dtype == np.bool_:
        return "bool"
    return np_dtype.name


def flat_values(host):
    """Flattened values of a numpy array, exactly representable in JSON."""
    if host.dtype == BFLOAT16:
        return [int(v) for v in host.view(np.uint16).ravel()]
    if host.dtype == np.bool_:
        return [int(v) for v in host.ravel()]
    if host.dtype.kind == "f":
        out = []
        for v in host.ravel():
            v = float(v)
            if v != v:
                out.append("nan")
            elif v in (float("inf"), float("-inf")):
                out.append("inf" if v > 0 else "-inf")
            else:
                out.append(v)
        return out
    return [int(v) for v in host.ravel()]


def to_host(arr):
    """The numpy value of an mx.nd / mx.np array, with the exact bytes MXNet holds."""
    host = arr.asnumpy()
    return np.ascontiguousarray(host)


def dense_entry(host):
    return {"values": flat_values(host), "hex": host.tobytes().hex()}


def array_entry(arr, version, context):
    """Expected values of one loaded array."""
    stype = getattr(arr, "stype", "default")
    entry = {
        "version": version,
        "stype": stype,
        "dtype": dtype_name(arr.dtype),
        "shape": [int(d) for d in arr.shape],
        "context": {"dev_type": context[0], "dev_id": context[1]},
    }
    if stype == "default":
        entry.update(dense_entry(to_host(arr)))
        return entry
    data = to_host(arr.data)
    entry["data"] = {"shape": [int(d) for d in data.shape], **dense_entry(data)}
    entry["indices"] = [int(v) for v in to_host(arr.indices).ravel()]
    if stype == "csr":
        entry["indptr"] = [int(v) for v in to_host(arr.indptr).ravel()]
    entry["dense_hex"] = to_host(arr.tostype("default")).tobytes().hex()
    return entry


def context_of(arr):
    ctx = arr.context
    return (ctx.device_typeid, ctx.device_id)


def write_expected(name, container, made_by, loaded_by, names, entries):
    doc = {
        "file": name,
        "container": container,
        "made_by": made_by,
        "loaded_by": loaded_by,
        "names": names,
        "arrays": entries,
    }
    stem = os.path.splitext(name)[0]
    with open(os.path.join(OUT, stem + ".json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def check_same(saved, loaded):
    """The file really holds what we saved (guards the generator itself)."""
    a, b = to_host(saved), to_host(loaded)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    assert a.tobytes() == b.tobytes()


def save_and_describe(name, data, made_by, version=2, contexts=None):
    """mx.nd.save `data` (a list or dict), load it back and write the expected JSON."""
    path = os.path.join(OUT, name)
    mx.nd.save(path, data)
    loaded = mx.nd.load(path)
    if isinstance(data, dict):
        saved_arrays = list(data.values())
        names = list(data.keys())
    else:
        saved_arrays = data if isinstance(data, list) else [data]
        names = None
    if isinstance(loaded, dict):
        assert names is not None and list(loaded.keys()) == names
        loaded_arrays = list(loaded.values())
    else:
        # An empty dict is saved with no names and loads as an empty list (§1.2).
        assert names is None or names == []
        names = None
        loaded_arrays = loaded
    assert len(loaded_arrays) == len(saved_arrays)
    entries = []
    for i, (saved, arr) in enumerate(zip(saved_arrays, loaded_arrays)):
        check_same(saved, arr)
        ctx = contexts[i] if contexts else context_of(saved)
        entries.append(array_entry(arr, version, ctx))
    write_expected(name, "list", made_by, "mx.nd.load", names, entries)


# ----------------------------------------------------------------------------------------
# Fixtures written by MXNet


def basic_containers():
    a = mx.nd.array([[1.5, -2.0, 3.25], [0.0, 1e-3, 7.0]])
    b = mx.nd.array([1, -2, 3, 2147483647], dtype="int32")
    save_and_describe("list.params", [a, b], "mx.nd.save(path, [f32 (2,3), i32 (4,)])")
    save_and_describe(
        "dict.params",
        {"w": mx.nd.array([[1, 2], [3, 4]]), "b": mx.nd.array([0.5, -0.5])},
        "mx.nd.save(path, {'w': f32 (2,2), 'b': f32 (2,)})",
    )
    save_and_describe("single.params", mx.nd.array([1, 2, 3]), "mx.nd.save(path, nd.array([1,2,3]))")
    save_and_describe("empty_list.params", [], "mx.nd.save(path, [])")
    save_and_describe("empty_dict.params", {}, "mx.nd.save(path, {}) (loads back as an empty list)")


def every_dtype():
    f32 = np.array([0.0, -0.0, 1.0, -1.5, 3.4e38, 1e-45, np.inf, -np.inf, np.nan], dtype=np.float32)
    f64 = np.array([0.1, -2.5e-300, 1.7e308, np.nan, -np.inf], dtype=np.float64)
    f16 = np.array([0.0, 1.0, -65504.0, 6e-8, np.inf, np.nan], dtype=np.float16)
    data = {
        "f32": mx.nd.array(f32, dtype="float32"),
        "f64": mx.nd.array(f64, dtype="float64"),
        "f16": mx.nd.array(f16, dtype="float16"),
        "u8": mx.nd.array([0, 1, 127, 255], dtype="uint8"),
        "i32": mx.nd.array([-2147483648, -1, 0, 2147483647], dtype="int32"),
        "i8": mx.nd.array([-128, -1, 0, 127], dtype="int8"),
        "i64": mx.nd.array(np.array([-(2**63), -1, 2**53 + 1, 2**63 - 1], dtype=np.int64), dtype="int64"),
        "bool": mx.nd.array([True, False, True], dtype=np.bool_),
        "bf16": mx.nd.amp_cast(mx.nd.array([1.5, -2.25, 3.0e38, 0.0, 1e-3]), dtype=BFLOAT16),
    }
    for key, arr in data.items():
        assert dtype_name(arr.dtype) in TYPE_FLAGS, key
    save_and_describe("dtypes.params", data, "mx.nd.save(path, {one array of every dtype})")


def shapes():
    data = {
        "zero_1d": mx.nd.array(np.zeros((0,), np.float32)),
        "zero_middle": mx.nd.array(np.zeros((2, 0, 3), np.float32)),
        "one_d": mx.nd.arange(5),
        "six_d": mx.nd.arange(24).reshape((1, 2, 1, 3, 1, 4)),
        "matrix": mx.nd.arange(35).reshape((7, 5)) / 7,
        "single": mx.nd.array([42.0]),
    }
    save_and_describe("shapes.params", data, "mx.nd.save(path, {0-size, 1-D, 6-D, 2-D arrays})")


def contexts():
    data = {
        "cpu3": mx.nd.array([1, 2], ctx=mx.cpu(3)),
        "pinned": mx.nd.array([3, 4], ctx=mx.cpu_pinned(0)),
        "shared": mx.nd.array([5, 6], ctx=mx.Context("cpu_shared", 0)),
        "shared2": mx.nd.array([7, 8], ctx=mx.Context("cpu_shared", 2)),
    }
    save_and_describe("contexts.params", data, "mx.nd.save(path, {cpu(3), cpu_pinned(0), cpu_shared(0), cpu_shared(2)})")


def sparse():
    rsp = mx.nd.sparse.row_sparse_array(
        (np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32), np.array([1, 3])),
        shape=(5, 3),
    )
    csr = mx.nd.sparse.csr_matrix(
        (np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32), np.array([0, 3, 1, 2]), np.array([0, 2, 2, 4])),
        shape=(3, 4),
    )
    rsp_3d = mx.nd.sparse.row_sparse_array(
        (np.arange(12, dtype=np.float32).reshape((2, 2, 3)), np.array([0, 3])), shape=(4, 2, 3)
    )
    rsp_f64 = mx.nd.sparse.row_sparse_array(
        (np.array([[0.1, -0.2]], dtype=np.float64), np.array([2])), shape=(3, 2), dtype="float64"
    )
    csr_f16 = mx.nd.sparse.csr_matrix(
        (np.array([0.5, -1.0, 2.0], dtype=np.float16), np.array([4, 0, 2]), np.array([0, 1, 1, 3])),
        shape=(3, 5),
        dtype="float16",
    )
    data = {
        "rsp": rsp,
        "csr": csr,
        "rsp_3d": rsp_3d,
        "rsp_empty": mx.nd.sparse.zeros("row_sparse", (3, 4)),
        "csr_empty": mx.nd.sparse.zeros("csr", (3, 4)),
        "rsp_f64": rsp_f64,
        "csr_f16": csr_f16,
    }
    for key, arr in data.items():
        assert arr.indices.dtype == np.int64, key
    save_and_describe("sparse.params", data, "mx.nd.save(path, {row_sparse and csr arrays, empty ones, f64/f16 values})")


def gluon_key_styles():
    from mxnet import gluon

    mx.random.seed(7)
    net = gluon.nn.HybridSequential(prefix="net_")
    with net.name_scope():
        net.add(gluon.nn.Dense(2, in_units=3), gluon.nn.BatchNorm(in_channels=2))
    net.initialize(mx.init.Uniform(1.0))
    net.hybridize()
    net(mx.nd.ones((1, 3)))

    def describe(name, path, made_by):
        loaded = mx.nd.load(path)
        os.replace(path, os.path.join(OUT, name))
        entries = [array_entry(arr, 2, (1, 0)) for arr in loaded.values()]
        write_expected(name, "list", made_by, "mx.nd.load", list(loaded.keys()), entries)

    prefix = os.path.join(OUT, "gluon_export_tmp")
    net.export(prefix, 0)
    os.remove(prefix + "-symbol.json")
    describe("gluon_export.params", prefix + "-0000.params", "HybridBlock.export: arg:/aux: keys")

    path = os.path.join(OUT, "gluon_tmp.params")
    net.save_parameters(path)
    describe("gluon_save_parameters.params", path, "Block.save_parameters: structural keys")
    net.collect_params().save(path)
    describe("gluon_collect_params.params", path, "ParameterDict.save: full parameter names")


def single_array_blobs():
    """One record with no list header: NDArray.__getstate__()['handle'] (§1.9)."""
    blobs = {
        "blob_dense.bin": mx.nd.array([[1, 2, 3], [4, 5, 6]], dtype="float64", ctx=mx.cpu(2)),
        "blob_row_sparse.bin": mx.nd.sparse.row_sparse_array(
            (np.array([[9.0, 8.0]], dtype=np.float32), np.array([1])), shape=(2, 2)
        ),
    }
    for name, arr in blobs.items():
        raw = bytes(arr.__getstate__()["handle"])
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(raw)
        restored = pickle.loads(pickle.dumps(arr))
        check_same(arr, restored)
        write_expected(
            name,
            "blob",
            "NDArray.__getstate__()['handle']",
            "pickle",
            None,
            [array_entry(restored, 2, context_of(arr))],
        )


# ----------------------------------------------------------------------------------------
# Hand-crafted legacy and mixed files (struct), checked by loading them with MXNet


def raw_data(values, type_name):
    if type_name == "bfloat16":
        raise ValueError("not used in crafted files")
    return np.asarray(values, dtype=np.dtype(type_name)).tobytes()


def v0_record(shape, values, type_name, ctx=(1, 0)):
    # u32 ndim in place of a magic, u32 dims, ctx, type flag, data.
    out = struct.pack("<I", len(shape)) + struct.pack("<%dI" % len(shape), *shape)
    out += struct.pack("<iii", ctx[0], ctx[1], TYPE_FLAGS[type_name])
    return out + raw_data(values, type_name)


def v1_record(shape, values, type_name, ctx=(1, 0)):
    out = struct.pack("<Ii", V1_MAGIC, len(shape)) + struct.pack("<%dq" % len(shape), *shape)
    out += struct.pack("<iii", ctx[0], ctx[1], TYPE_FLAGS[type_name])
    return out + raw_data(values, type_name)


def v2_record(shape, values, type_name, ctx=(1, 0)):
    out = struct.pack("<Iii", V2_MAGIC, 0, len(shape)) + struct.pack("<%dq" % len(shape), *shape)
    out += struct.pack("<iii", ctx[0], ctx[1], TYPE_FLAGS[type_name])
    return out + raw_data(values, type_name)


def list_file(records, names=None):
    out = struct.pack("<QQQ", LIST_MAGIC, 0, len(records)) + b"".join(records)
    names = names or []
    out += struct.pack("<Q", len(names))
    for name in names:
        raw = name.encode("utf-8")
        out += struct.pack("<Q", len(raw)) + raw
    return out


def crafted(name, made_by, specs, names=None):
    """specs: (version, shape, values, type name, ctx) per record."""
    writers = {0: v0_record, 1: v1_record, 2: v2_record}
    records = [writers[v](shape, values, t, ctx) for v, shape, values, t, ctx in specs]
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(list_file(records, names))
    loaded = mx.nd.load(path)
    arrays = list(loaded.values()) if isinstance(loaded, dict) else loaded
    if names:
        assert list(loaded.keys()) == names
    entries = []
    for (version, shape, values, type_name, ctx), arr in zip(specs, arrays):
        assert tuple(arr.shape) == tuple(shape), (arr.shape, shape)
        assert to_host(arr).tobytes() == raw_data(values, type_name)
        entries.append(array_entry(arr, version, ctx))
    write_expected(name, "list", made_by, "mx.nd.load", names, entries)


def legacy_and_mixed():
    crafted(
        "legacy_v0.params",
        "struct: V0 records (u32 ndim and dims), saved as a list",
        [
            (0, (2, 3), [1, 2, 3, 4, 5, 6], "float32", (1, 0)),
            (0, (4,), [7, -8, 9, -10], "int32", (1, 0)),
        ],
    )
    crafted(
        "legacy_v1.params",
        "struct: V1 records (magic 0xF993FAC8, i64 dims), saved as a dict",
        [
            (1, (2, 2), [0.5, 1.5, 2.5, 3.5], "float64", (1, 0)),
            (1, (3,), [1, 2, 3], "uint8", (1, 1)),
        ],
        names=["a", "b"],
    )
    crafted(
        "mixed_versions.params",
        "struct: V0, V1 and V2 records in one file, one with a gpu(1) context",
        [
            (0, (3,), [1.0, 2.0, 3.0], "float32", (1, 0)),
            (1, (1, 2), [-1, 5], "int8", (3, 0)),
            (2, (2,), [10, 20], "int64", (2, 1)),
            (2, (0, 2), [], "float16", (1, 0)),
        ],
        names=["legacy0", "legacy1", "current", "empty"],
    )


# ----------------------------------------------------------------------------------------
# Numpy-shape mode (V3 records): run in a child process, because npx.set_np() is global.


def numpy_mode():
    from mxnet import np as mnp, npx

    npx.set_np()
    data = {
        "scalar_f32": mnp.array(3.5, dtype="float32"),
        "scalar_i64": mnp.array(-7, dtype="int64"),
        "zero_1d": mnp.zeros((0,), dtype="float32"),
        "zero_middle": mnp.zeros((2, 0, 3), dtype="float32"),
        "matrix": mnp.array([[1, 2, 3], [4, 5, 6]], dtype="float32"),
        "flags": mnp.array([True, False], dtype="bool"),
    }
    path = os.path.join(OUT, "numpy_v3.params")
    npx.save(path, data)
    loaded = npx.load(path)
    assert list(loaded.keys()) == list(data.keys())
    entries = []
    for key, arr in loaded.items():
        check_same(data[key], arr)
        entries.append(array_entry(arr, 3, (1, 0)))
    write_expected(
        "numpy_v3.params", "list", "npx.save(path, {scalars, 0-size, 2-D}) under npx.set_np()", "npx.load",
        list(loaded.keys()), entries,
    )

    blob = mnp.array(2.25, dtype="float64")
    raw = bytes(blob.__getstate__()["handle"])
    with open(os.path.join(OUT, "blob_v3_scalar.bin"), "wb") as f:
        f.write(raw)
    restored = pickle.loads(pickle.dumps(blob))
    check_same(blob, restored)
    write_expected(
        "blob_v3_scalar.bin", "blob", "mx.np.ndarray.__getstate__()['handle'] under npx.set_np()", "pickle",
        None, [array_entry(restored, 3, (1, 0))],
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:] == ["--numpy-mode"]:
        numpy_mode()
        return
    basic_containers()
    every_dtype()
    shapes()
    contexts()
    sparse()
    gluon_key_styles()
    single_array_blobs()
    legacy_and_mixed()
    subprocess.run([sys.executable, os.path.abspath(__file__), "--numpy-mode"], check=True)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d files (%d bytes) to %s" % (len(os.listdir(OUT)), total, OUT))


if __name__ == "__main__":
    main()
