"""How predict treats the caller's arrays: read in place (no copy on the Python side for a
C-contiguous array of the declared dtype, read-only or not), copied once into ward's own
tensors before the GIL is released, and never read again: what the caller does with an
array once predict returns cannot change an answer."""

import numpy as np
import pytest

import ward
from conftest import MODELS

OUT = "mlp0_softmax0_output"


@pytest.fixture(scope="module")
def model(mlp, keys):
    return ward.Package.open(mlp, trust=keys["release"]["public_key"])


@pytest.fixture(scope="module")
def x():
    return np.load(MODELS / "mlp" / "input-data.npy")


def test_changing_an_input_after_predict_returns_changes_no_output(model, x):
    want = model.predict(data=x.copy())[OUT].copy()
    data = x.copy()
    out = model.predict(data=data)[OUT]
    data[...] = 7.0
    data.resize(0, refcheck=False)  # its buffer freed
    assert out.tobytes() == want.tobytes()
    # The outputs are ward's own buffers, not views of an input.
    assert not np.shares_memory(out, x)
    again = model.predict(data=x)[OUT]
    assert again.tobytes() == want.tobytes()
    assert not np.shares_memory(again, out)


def test_predict_leaves_its_inputs_as_they_were(model, x):
    data = x.copy()

    def flags():
        f = data.flags
        return (f.c_contiguous, f.writeable, f.aligned, f.owndata)

    before = flags()
    model.predict(data=data)
    assert data.tobytes() == x.tobytes()
    assert flags() == before
    # Nothing keeps the array, or a borrow of it: it can be written, and resized in place
    # (which NumPy refuses while another reference to it exists).
    data[0, 0] = 1.0
    data.resize((0, 784))


def test_a_read_only_c_contiguous_array_is_accepted(model, x):
    want = model.predict(data=x)[OUT]
    read_only = x.copy()
    read_only.setflags(write=False)
    assert read_only.flags.c_contiguous and not read_only.flags.writeable
    assert model.predict(data=read_only)[OUT].tobytes() == want.tobytes()
    # A read-only view of memory NumPy does not own (bytes) as well.
    from_bytes = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(x.shape)
    assert not from_bytes.flags.writeable
    assert model.predict(data=from_bytes)[OUT].tobytes() == want.tobytes()


def test_outputs_outlive_the_package_and_the_inputs(mlp, keys, x):
    model = ward.Package.open(mlp, trust=keys["release"]["public_key"])
    want = model.predict(data=x)[OUT].tobytes()
    data = x.copy()
    out = model.predict(data=data)[OUT]
    del model, data
    import gc

    gc.collect()
    assert out.tobytes() == want
