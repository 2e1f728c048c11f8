"""keygen, sign, verify, import_mxnet, export_onnx and ward.mxnet.load: the CLI's commands
as functions, with its defaults and refusals."""

import hashlib
import os
import shutil
import stat

import numpy as np
import pytest

import ward
from conftest import MODELS, model_inputs, run_ward


def test_keygen_writes_a_private_key_only_the_owner_reads_and_never_overwrites(tmp_path):
    keys = ward.keygen(tmp_path / "k", "release")
    assert stat.S_IMODE(os.stat(keys["private_key"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o700
    assert os.path.exists(keys["public_key"]) and keys["hint"]
    with pytest.raises(ward.WardError, match="exists"):
        ward.keygen(tmp_path / "k", "release")
    with pytest.raises(ward.WardError, match="file name"):
        ward.keygen(tmp_path / "k", "../escape")


def mxnet_folder(tmp_path, name="mlp"):
    folder = tmp_path / name
    folder.mkdir()
    for f in ("model-symbol.json", "model-0000.params"):
        shutil.copy(MODELS / name / f, folder / f)
    return folder


def test_sign_and_verify_a_folder_as_the_cli_does(tmp_path, keys):
    folder = mxnet_folder(tmp_path)
    signed = ward.sign(folder, keys["release"]["private_key"])
    assert signed["files"] == 2 and signed["model_name"] == "mlp"
    verdict = ward.verify(folder, keys["release"]["public_key"])
    assert verdict["model_name"] == "mlp" and len(verdict["signers"]) == 1
    # The CLI accepts the same signature.
    run_ward("verify", folder, "--trust", keys["release"]["public_key"])
    with pytest.raises(ward.WardError, match="already exists"):
        ward.sign(folder, keys["release"]["private_key"])
    with pytest.raises(ward.VerificationError):
        ward.verify(folder, keys["other"]["public_key"])
    (folder / "model-0000.params").write_bytes(b"changed")
    with pytest.raises(ward.VerificationError):
        ward.verify(folder, keys["release"]["public_key"])


def test_import_with_trust_verifies_the_folder_before_parsing(tmp_path, keys):
    folder = mxnet_folder(tmp_path)
    decls, _ = model_inputs("mlp")
    args = dict(symbol=folder / "model-symbol.json", params=folder / "model-0000.params", inputs=decls)
    with pytest.raises(ward.VerificationError):
        ward.import_mxnet(**args, out=tmp_path / "a.ward", trust=keys["release"]["public_key"])
    ward.sign(folder, keys["release"]["private_key"])
    report = ward.import_mxnet(**args, out=tmp_path / "b.ward", trust=keys["release"]["public_key"])
    assert report["signed"] is False and report["name"] == "model"
    assert not (tmp_path / "a.ward").exists()


def test_import_refuses_what_the_cli_refuses(tmp_path, keys):
    decls, _ = model_inputs("mlp")
    sym, params = MODELS / "mlp" / "model-symbol.json", MODELS / "mlp" / "model-0000.params"
    with pytest.raises(ward.InputError):
        ward.import_mxnet(symbol=sym, params=params, inputs={}, out=tmp_path / "x")
    with pytest.raises(ward.InputError):
        ward.import_mxnet(symbol=sym, params=params, inputs={"data": ("float33", [-1, 784])}, out=tmp_path / "x")
    with pytest.raises(ward.ModelError):
        ward.import_mxnet(symbol=params, params=params, inputs=decls, out=tmp_path / "x")
    with pytest.raises(ward.ModelError):
        ward.import_mxnet(symbol=sym, params=sym, inputs=decls, out=tmp_path / "x")
    ward.import_mxnet(symbol=sym, params=params, inputs=decls, out=tmp_path / "x")
    with pytest.raises(ward.WardError, match="exists"):
        ward.import_mxnet(symbol=sym, params=params, inputs=decls, out=tmp_path / "x")


def test_export_onnx_writes_once_and_checks_shapes(mlp, keys, tmp_path):
    trust = keys["release"]["public_key"]
    n = ward.export_onnx(mlp, tmp_path / "m.onnx", trust=trust, shapes={"data": [2, 784]})
    assert n == os.path.getsize(tmp_path / "m.onnx") > 0
    run_ward("export", "onnx", mlp, "--trust", trust, "--out", tmp_path / "cli.onnx", "--shape", "data:2,784")
    assert (tmp_path / "m.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    with pytest.raises(ward.WardError, match="exists"):
        ward.export_onnx(mlp, tmp_path / "m.onnx", trust=trust)
    with pytest.raises(ward.InputError, match="does not fit"):
        ward.export_onnx(mlp, tmp_path / "n.onnx", trust=trust, shapes={"data": [2, 783]})
    with pytest.raises(ward.InputError, match="no such input"):
        ward.export_onnx(mlp, tmp_path / "n.onnx", trust=trust, shapes={"nope": [1]})


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mxnet_load_checks_the_pins_over_the_bytes_it_parses(tmp_path, keys, mlp):
    folder = mxnet_folder(tmp_path)
    sym, params = folder / "model-symbol.json", folder / "model-0000.params"
    decls, arrays = model_inputs("mlp")
    pins = {"symbol": sha256(sym), "params": sha256(params)}
    model = ward.mxnet.load(sym, params, inputs=decls, sha256=pins)
    assert model.pins == pins and not model.verified and "pinned" in repr(model)
    packaged = ward.Package.open(mlp, trust=keys["release"]["public_key"])
    x = arrays["data"]
    assert model.predict(data=x)["mlp0_softmax0_output"].tobytes() == packaged.predict(data=x)["mlp0_softmax0_output"].tobytes()

    wrong = dict(pins, params="0" * 64)
    with pytest.raises(ward.VerificationError, match="pinned"):
        ward.mxnet.load(sym, params, inputs=decls, sha256=wrong)
    with pytest.raises(ward.VerificationError, match="no pin for the params"):
        ward.mxnet.load(sym, params, inputs=decls, sha256={"symbol": pins["symbol"]})
    with pytest.raises(ward.InputError, match="neither"):
        ward.mxnet.load(sym, params, inputs=decls, sha256=dict(pins, weights="x"))
    with pytest.raises(ward.VerificationError, match="no sha256 pins"):
        ward.mxnet.load(sym, params, inputs=decls)
    # A file swapped after the pins were taken is refused.
    params.write_bytes(params.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ward.VerificationError):
        ward.mxnet.load(sym, params, inputs=decls, sha256=pins)


def test_mxnet_load_unpinned_warns_once(tmp_path):
    folder = mxnet_folder(tmp_path)
    decls, arrays = model_inputs("mlp")
    args = (folder / "model-symbol.json", folder / "model-0000.params")
    with pytest.warns(UserWarning, match="NOT checked"):
        model = ward.mxnet.load(*args, inputs=decls, allow_unpinned=True)
    model.predict(arrays)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ward.mxnet.load(*args, inputs=decls, allow_unpinned=True)


def test_every_error_is_a_ward_error():
    for cls in (ward.VerificationError, ward.InputError, ward.ModelError, ward.LimitError):
        assert issubclass(cls, ward.WardError) and issubclass(cls, Exception)
