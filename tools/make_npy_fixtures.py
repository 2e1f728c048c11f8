#!/usr/bin/env python3
"""Writes the .npy fixtures in tests/fixtures/npy/ with real NumPy (1.23.5 in .venv-mx).

Run from the repository root:  .venv-mx/bin/python tools/make_npy_fixtures.py

expected.json lists, for every file ward must read ("good"), the ward dtype name, the shape
and the little-endian data bytes as hex; and for every file NumPy writes in a form ward
refuses ("bad"), the name of the NpyError variant expected.
"""
import io
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "npy")

WARD_NAMES = {
    "float32": "float32", "float64": "float64", "float16": "float16", "uint8": "uint8",
    "int8": "int8", "int32": "int32", "int64": "int64", "bool": "bool",
}


def save(name, arr, version=None):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(buf.getvalue())
    return buf.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    good, bad = [], []

    def add(name, arr, version=None):
        save(name, arr, version)
        back = np.load(os.path.join(OUT, name), allow_pickle=False)
        assert back.dtype == arr.dtype and back.shape == arr.shape
        le = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"))
        good.append({
            "file": name,
            "dtype": WARD_NAMES[arr.dtype.name],
            "shape": list(arr.shape),
            "data_hex": le.tobytes().hex(),
        })

    base = np.arange(-3, 3).reshape(2, 3)
    for dt in ["float32", "float64", "float16", "uint8", "int8", "int32", "int64"]:
        a = base.astype(dt) if dt != "uint8" else (base + 3).astype(dt)
        add(f"{dt}.npy", a)
    add("bool.npy", np.array([[True, False, True], [False, False, True]]))
    # Special float values survive bit for bit.
    add("float32_special.npy", np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38], dtype="float32"))
    add("float16_special.npy", np.array([np.nan, np.inf, -0.0, 6e-8, 65504], dtype="float16"))
    add("int64_extremes.npy", np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max], dtype="int64"))
    add("scalar_f64.npy", np.array(2.5))
    add("scalar_bool.npy", np.array(True))
    add("empty_0x3_f32.npy", np.zeros((0, 3), dtype="float32"))
    add("empty_1d_i32.npy", np.zeros((0,), dtype="int32"))
    add("vector_5_f32.npy", np.linspace(0, 1, 5, dtype="float32"))
    add("nchw_1x3x4x4_f32.npy", np.arange(48, dtype="float32").reshape(1, 3, 4, 4) / 7)
    add("v2_f32.npy", np.arange(6, dtype="float32").reshape(3, 2), version=(2, 0))
    add("v3_i64.npy", np.arange(4, dtype="int64").reshape(2, 2), version=(3, 0))
    # A C-contiguous view of a transposed array is written in C order.
    add("transposed_copy_f32.npy", np.ascontiguousarray(np.arange(6, dtype="float32").reshape(2, 3).T))

    def refuse(name, arr, error, version=None):
        save(name, arr, version)
        bad.append({"file": name, "error": error})

    refuse("bad_fortran_f32.npy", np.asfortranarray(np.arange(6, dtype="float32").reshape(2, 3)), "FortranOrder")
    refuse("bad_big_endian_f32.npy", np.arange(3, dtype=">f4"), "BigEndian")
    refuse("bad_int16.npy", np.arange(3, dtype="int16"), "UnsupportedDescr")
    refuse("bad_uint32.npy", np.arange(3, dtype="uint32"), "UnsupportedDescr")
    refuse("bad_complex64.npy", np.arange(3, dtype="complex64"), "UnsupportedDescr")
    refuse("bad_unicode.npy", np.array(["ab", "c"]), "UnsupportedDescr")
    refuse("bad_structured.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "WrongType")

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"numpy_version": np.__version__, "good": good, "bad": bad}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
