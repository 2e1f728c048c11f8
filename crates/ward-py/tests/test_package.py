"""Package.open and predict: verified before parsed, the schema enforced, the CLI's
numbers bit for bit, several threads at once."""

import json
import threading

import numpy as np
import pytest

import ward
from conftest import MODELS, import_fixture, model_inputs, run_ward

FIXTURES = [
    "mlp",
    "resnet18_v1",
    "lenet_gluon",
    "mobilenet0_25",
    "squeezenet1_1",
    "text_lstm",
    "census_misc",
    "census_reshape",
]


@pytest.mark.parametrize("name", FIXTURES)
def test_predict_equals_the_cli_bit_for_bit_and_mxnet_within_1e4(name, tmp_path, keys):
    pkg = tmp_path / f"{name}.ward"
    import_fixture(name, pkg, keys)
    model = ward.Package.open(pkg, trust=keys["release"]["public_key"])
    _, arrays = model_inputs(name)
    got = model.predict(arrays)
    assert list(got) == [o["name"] for o in model.outputs]

    out = tmp_path / "cli"
    args = ["predict", pkg, "--trust", keys["release"]["public_key"], "--out", out]
    for input_name in arrays:
        args += ["--input", f"{input_name}={MODELS / name / f'input-{input_name}.npy'}"]
    run_ward(*args)
    for i, (output_name, value) in enumerate(got.items()):
        cli = np.load(out / f"{output_name}.npy")
        assert value.dtype == cli.dtype and value.shape == cli.shape
        assert value.tobytes() == cli.tobytes(), output_name
        mxnet = np.load(MODELS / name / f"output-{i}.npy")
        scale = max(1.0, float(np.abs(mxnet).max()))
        np.testing.assert_allclose(value, mxnet, rtol=0, atol=1e-4 * scale)


def test_properties_describe_the_package(mlp, keys):
    model = ward.Package.open(mlp, trust=keys["release"]["public_key"])
    assert model.name == "model"
    assert model.version == "1"
    assert model.verified and len(model.signers) == 1
    assert model.pins is None
    assert model.inputs == [
        {"name": "data", "dtype": "float32", "shape": [-1, 784], "range": (-10.0, 10.0), "allow_nonfinite": False}
    ]
    (output,) = model.outputs
    assert output["name"] == "mlp0_softmax0_output" and output["dtype"] == "float32"
    assert model.operators == {"activation": 2, "dense": 3, "dropout": 1, "softmax": 1}
    assert "verified" in repr(model)


def test_keyword_and_dict_inputs_give_the_same_answer(mlp, keys):
    model = ward.Package.open(mlp, trust=keys["release"]["public_key"])
    x = np.load(MODELS / "mlp" / "input-data.npy")
    a = model.predict({"data": x})
    b = model.predict(data=x)
    c = model(data=x)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes() == c[k].tobytes()
    with pytest.raises(ward.InputError, match="given twice"):
        model.predict({"data": x}, data=x)


def test_a_tampered_package_is_refused_before_its_weights_are_parsed(mlp, keys, copy_of):
    bad = copy_of(mlp)
    weights = bad / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    # Garbage where the header's JSON begins: a parser would fail on it, so a
    # VerificationError proves the signature was checked first.
    raw[8:16] = b"\xff" * 8
    weights.write_bytes(bytes(raw))
    with pytest.raises(ward.VerificationError, match="refused"):
        ward.Package.open(bad, trust=keys["release"]["public_key"])


def test_an_untrusted_signer_and_a_missing_policy_are_refused(mlp, keys):
    with pytest.raises(ward.VerificationError):
        ward.Package.open(mlp, trust=keys["other"]["public_key"])
    with pytest.raises(ward.VerificationError, match="no trust policy"):
        ward.Package.open(mlp)
    with pytest.raises(ward.InputError):
        ward.Package.open(mlp, trust=keys["other"]["public_key"], allow_unsigned=True)


def test_allow_unsigned_opens_an_unsigned_package_with_a_warning(tmp_path):
    pkg = tmp_path / "unsigned.ward"
    decls, arrays = model_inputs("mlp")
    ward.import_mxnet(
        symbol=MODELS / "mlp" / "model-symbol.json",
        params=MODELS / "mlp" / "model-0000.params",
        inputs=decls,
        out=pkg,
    )
    with pytest.warns(UserWarning, match="NOT checked"):
        model = ward.Package.open(pkg, allow_unsigned=True)
    assert not model.verified and model.signers == []
    assert "NOT verified" in repr(model)
    model.predict(arrays)


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        ({}, ward.InputError, "missing"),
        ({"data": np.zeros((1, 784), np.float32), "extra": np.zeros(1, np.float32)}, ward.InputError, "not an input"),
        ({"data": np.zeros((1, 784), np.float64)}, ward.InputError, "dtype"),
        ({"data": np.zeros((1, 783), np.float32)}, ward.InputError, "dim 1"),
        ({"data": np.zeros((784,), np.float32)}, ward.InputError, "rank"),
        ({"data": np.full((1, 784), np.nan, np.float32)}, ward.InputError, "NaN"),
        ({"data": np.full((1, 784), 11, np.float32)}, ward.InputError, "outside the range"),
        ({"data": [[0.0] * 784]}, ward.InputError, "numpy.ndarray"),
        ({"data": np.array([[None] * 784])}, ward.InputError, "dtype"),
        ({"data": np.array([["a"] * 784])}, ward.InputError, "dtype"),
        ({"data": np.zeros((1, 784), np.complex64)}, ward.InputError, "dtype"),
        ({1: np.zeros((1, 784), np.float32)}, ward.InputError, "must be a str"),
    ],
)
def test_inputs_outside_the_schema_raise_naming_what_is_wrong(mlp, keys, inputs, error, message):
    model = ward.Package.open(mlp, trust=keys["release"]["public_key"])
    with pytest.raises(error, match=message):
        model.predict(inputs)


def test_strided_read_only_and_big_endian_arrays_give_the_contiguous_answer(mlp, keys):
    model = ward.Package.open(mlp, trust=keys["release"]["public_key"])
    x = np.load(MODELS / "mlp" / "input-data.npy")
    want = model.predict(data=np.ascontiguousarray(x))["mlp0_softmax0_output"]
    wide = np.zeros((x.shape[0] * 2, x.shape[1] * 2), np.float32)
    wide[::2, ::2] = x
    read_only = x.copy()
    read_only.setflags(write=False)
    fortran = np.asfortranarray(x)
    big_endian = x.astype(">f4")
    for variant in (wide[::2, ::2], read_only, fortran, big_endian):
        got = model.predict(data=variant)["mlp0_softmax0_output"]
        assert got.tobytes() == want.tobytes()


def test_eight_threads_at_once_get_what_one_thread_gets(keys, tmp_path):
    pkg = tmp_path / "resnet.ward"
    import_fixture("resnet18_v1", pkg, keys)
    model = ward.Package.open(pkg, trust=keys["release"]["public_key"])
    _, arrays = model_inputs("resnet18_v1")
    rng = np.random.default_rng(7)
    batches = [rng.standard_normal(arrays["data"].shape).astype(np.float32) for _ in range(8)]
    want = [model.predict(data=b) for b in batches]
    got = [None] * 8
    errors = []

    def work(i):
        try:
            for _ in range(2):
                got[i] = model.predict(data=batches[i])
        except Exception as e:  # reported below, with the thread's index
            errors.append((i, e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for w, g in zip(want, got):
        for k in w:
            assert w[k].tobytes() == g[k].tobytes()


def test_outputs_are_numpy_arrays_of_the_declared_dtype(mlp, keys):
    model = ward.Package.open(mlp, trust=keys["release"]["public_key"])
    out = model.predict(data=np.zeros((3, 784), np.float32))["mlp0_softmax0_output"]
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (3, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
