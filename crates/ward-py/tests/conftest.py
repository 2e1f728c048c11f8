"""Shared fixtures: the repository's MXNet test models, keys, signed packages, and the
`ward` binary the wheel's answers are compared with (WARD, set by
scripts/python-tests.sh)."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import ward

# No example database: a CI run starts clean and writes nothing into the checkout.
settings.register_profile("ward", database=None)
settings.load_profile("ward")

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "tests" / "fixtures" / "models"


def ward_binary() -> str:
    binary = os.environ.get("WARD") or str(REPO / "target" / "release" / "ward")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no ward binary at {binary}: run scripts/python-tests.sh (it sets WARD)")
    return binary


def run_ward(*args, check=True):
    done = subprocess.run([ward_binary(), *map(str, args)], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"ward {args}: exit {done.returncode}\n{done.stderr}")
    return done


def model_inputs(name):
    """The fixture's declared inputs (variable batch) and its input arrays, in order."""
    import json

    meta = json.loads((MODELS / name / "meta.json").read_text())
    decls, arrays = {}, {}
    for i in meta["inputs"]:
        shape = [-1] + list(i["shape"][1:]) if i["shape"] else []
        decls[i["name"]] = (i["dtype"], shape)
        arrays[i["name"]] = np.load(MODELS / name / f"input-{i['name']}.npy")
    return decls, arrays


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    release = ward.keygen(root / "keys", "release")
    other = ward.keygen(root / "keys", "other")
    return {"release": release, "other": other}


def import_fixture(name, out, keys, **kwargs):
    decls, _ = model_inputs(name)
    return ward.import_mxnet(
        symbol=MODELS / name / "model-symbol.json",
        params=MODELS / name / "model-0000.params",
        inputs=kwargs.pop("inputs", decls),
        out=out,
        sign_key=keys["release"]["private_key"],
        **kwargs,
    )


@pytest.fixture(scope="session")
def mlp(tmp_path_factory, keys):
    """The MLP fixture as a signed package, its input limited to [-10, 10]."""
    out = tmp_path_factory.mktemp("pkg") / "mlp.ward"
    import_fixture(
        "mlp", out, keys, inputs={"data": {"dtype": "float32", "shape": [-1, 784], "range": (-10, 10)}}
    )
    return out


@pytest.fixture
def copy_of(tmp_path):
    def copy(src):
        dst = tmp_path / Path(src).name
        shutil.copytree(src, dst)
        return dst

    return copy
