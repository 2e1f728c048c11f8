"""Property tests: whatever array a caller hands predict (any dtype, shape, strides,
contiguity, writability), the answer is right or the exception is ward's, never a crash."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ward

DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int32", "int64", "bool", "complex64", ">f4", "<f4"]


@pytest.fixture(scope="module")
def model(mlp, keys):
    return ward.Package.open(mlp, trust=keys["release"]["public_key"])


arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(
        np.dtype(dtype),
        st.one_of(
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
            st.tuples(st.integers(0, 3), st.just(784)),
        ),
    )
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=arrays, step=st.integers(1, 3), read_only=st.booleans(), name=st.sampled_from(["data", "other"]))
def test_any_array_gives_the_right_answer_or_a_ward_error(model, array, step, read_only, name):
    view = array[::step] if array.ndim else array
    if read_only:
        view.setflags(write=False)
    acceptable = (
        name == "data"
        # float32 in either byte order: a big-endian array is read in native order.
        and view.dtype.kind == "f"
        and view.dtype.itemsize == 4
        and view.ndim == 2
        and view.shape[1] == 784
        and bool(np.all(np.isfinite(view)))
        and bool(np.all(np.abs(view) <= 10))
    )
    try:
        out = model.predict({name: view})
    except ward.WardError:
        assert not acceptable
        return
    assert acceptable
    got = out["mlp0_softmax0_output"]
    assert got.shape == (view.shape[0], 10)
    want = model.predict(data=np.ascontiguousarray(view, dtype="<f4"))["mlp0_softmax0_output"]
    assert got.tobytes() == want.tobytes()
