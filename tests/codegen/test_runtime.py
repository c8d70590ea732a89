"""Calling a compiled function: argument validation and conversion, and what comes back.

Every check runs on the numba backend and on the numpy backend: both share the
generated entry function, and the numpy one is the reference.
"""

import warnings

import numpy as np
import pytest

import symgrad as sg

BACKENDS = ["numba", "numpy"]


def _build(name, backend):
    X = sg.tensor("X", shape=("n",))
    Y = sg.tensor("Y", shape=("n",))
    A = sg.tensor("A", shape=("n", 3))
    w = sg.tensor("w", shape=(3,))
    t = sg.tensor("t", shape=("n",))
    x, y = sg.scalars("x y")
    if name == "sumsq":  # sum(X**2): value and 2X
        return sg.value_and_grad(sg.sum(X * X), wrt=X, backend=backend)
    if name == "pair":  # sum(X*Y): the gradient wrt X is Y
        return sg.value_and_grad(sg.sum(X * Y), wrt=X, inputs=[X, Y], backend=backend)
    if name == "regression":  # sum((A@w - t)**2): n shared by A and t, 3 fixed
        return sg.value_and_grad(sg.sum((A @ w - t) ** 2), wrt=[A, w], inputs=[A, w, t], backend=backend)
    if name == "scalars":
        return sg.value_and_grad(x * y + sg.sin(x), wrt=[x, y], inputs=[x, y], backend=backend)
    if name == "ieee":
        return sg.compile([x / y, sg.log(x), x**y, sg.sqrt(x)], inputs=[x, y], backend=backend)
    if name == "differences":  # needs n >= 1
        return sg.compile(sg.sum((X[1:] - X[:-1]) ** 2), backend=backend)
    if name == "float32":
        X32 = sg.tensor("X32", shape=("n",), dtype="float32")
        return sg.value_and_grad(sg.sum(X32 * X32) * 0.5, wrt=X32, backend=backend)
    if name == "labels":
        labels = sg.tensor("labels", shape=("n",), dtype="int64")
        k = sg.scalar("k", dtype="int8")
        return sg.compile(sg.sum(X * labels) * k, inputs=[X, labels, k], backend=backend)
    raise KeyError(name)


@pytest.fixture(scope="module")
def compiled():
    """Compiled functions shared by this module's tests (each is built once per backend)."""
    return {}


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def fn(backend, compiled):
    def get(name):
        key = (name, backend)
        if key not in compiled:
            compiled[key] = _build(name, backend)
        return compiled[key]

    return get


def regression_reference(A, w, t):
    r = A @ w - t
    return np.sum(r**2), 2 * np.outer(r, w), 2 * A.T @ r


# ---------------------------------------------------------------- rank and dtype


def test_wrong_rank_names_the_argument_and_the_shape(fn):
    vg = fn("sumsq")
    with pytest.raises(sg.InputError) as info:
        vg(np.ones((2, 2)))
    message = str(info.value)
    assert "'X'" in message and "(2, 2)" in message and "rank 1" in message
    with pytest.raises(sg.InputError) as info:
        vg(3.0)
    assert "'X'" in str(info.value) and "rank" in str(info.value)


def test_array_given_for_a_scalar_names_the_argument(fn):
    with pytest.raises(sg.InputError) as info:
        fn("scalars")(np.ones(3), 1.0)
    assert "'x'" in str(info.value) and "(3,)" in str(info.value)


BAD_ARRAYS = {
    "complex": (np.array([1.0 + 2j, 3.0]), "complex128"),
    "string": ("abc", "str"),
    "strings": (["a", "b"], "<U1"),
    "object": (np.array([1.0, None], dtype=object), "object"),
    "none": (None, "None"),
    "dict": ({"a": 1}, "dict"),
}


@pytest.mark.parametrize("kind", list(BAD_ARRAYS))
def test_wrong_array_dtype_is_an_input_error_naming_argument_and_type(fn, kind):
    value, shown = BAD_ARRAYS[kind]
    with pytest.raises(sg.InputError) as info:
        fn("pair")(np.ones(2), value)
    assert "'Y'" in str(info.value) and shown in str(info.value)


BAD_SCALARS = {
    "complex": (1 + 2j, "complex"),
    "numpy complex": (np.complex128(1 + 2j), "complex128"),
    "string": ("1.0", "str"),
    "none": (None, "None"),
    "list": ([1.0], "list"),
}


@pytest.mark.parametrize("kind", list(BAD_SCALARS))
def test_wrong_scalar_type_is_an_input_error_naming_argument_and_type(fn, kind):
    value, shown = BAD_SCALARS[kind]
    with pytest.raises(sg.InputError) as info:
        fn("scalars")(0.5, value)
    assert "'y'" in str(info.value) and shown in str(info.value)


def test_ragged_list_is_an_input_error(fn):
    with pytest.raises(sg.InputError) as info:
        fn("sumsq")([[1.0, 2.0], [3.0]])
    assert "'X'" in str(info.value)


def test_float_data_for_an_integer_input_is_an_input_error(fn):
    f = fn("labels")
    with pytest.raises(sg.InputError) as info:
        f(np.ones(2), np.array([1.5, 2.0]), 1)
    assert "'labels'" in str(info.value) and "int64" in str(info.value) and "float64" in str(info.value)
    with pytest.raises(sg.InputError) as info:
        f(np.ones(2), np.array([1, 2]), 2.5)
    assert "'k'" in str(info.value) and "int8" in str(info.value)


def test_integer_out_of_range_is_an_input_error(fn):
    f = fn("labels")
    with pytest.raises(sg.InputError) as info:
        f(np.ones(2), np.array([1, 2]), 300)
    assert "'k'" in str(info.value) and "300" in str(info.value) and "int8" in str(info.value)
    with pytest.raises(sg.InputError) as info:
        f(np.ones(2), np.array([2**63, 1], dtype=np.uint64), 1)
    assert "'labels'" in str(info.value)


def test_integer_inputs_compute_like_numpy(fn):
    value = fn("labels")(np.array([0.5, 2.0]), np.array([3, -1]), np.int8(-2))
    assert value == (0.5 * 3 + 2.0 * -1) * -2


# ---------------------------------------------------------------- sizes


def test_size_mismatch_names_both_arguments_and_the_dim(fn):
    vg = fn("regression")
    with pytest.raises(sg.InputError) as info:
        vg(np.ones((4, 3)), np.ones(3), np.ones(5))
    message = str(info.value)
    assert "'t'" in message and "'A'" in message and "'n'" in message
    assert "5" in message and "4" in message


def test_size_mismatch_between_two_vectors(fn):
    with pytest.raises(sg.InputError) as info:
        fn("pair")(np.ones(2), np.ones(3))
    message = str(info.value)
    assert "'Y'" in message and "'X'" in message and "'n'" in message and "3" in message


def test_fixed_dim_mismatch_names_argument_axis_and_both_sizes(fn):
    vg = fn("regression")
    with pytest.raises(sg.InputError) as info:
        vg(np.ones((4, 2)), np.ones(3), np.ones(4))
    message = str(info.value)
    assert "'A'" in message and "dimension 1" in message and "3" in message and "2" in message
    with pytest.raises(sg.InputError) as info:
        vg(np.ones((4, 3)), np.ones(4), np.ones(4))
    assert "'w'" in str(info.value) and "4" in str(info.value)


def test_slicing_requirement_is_checked_before_the_kernel_runs(fn):
    f = fn("differences")
    with pytest.raises(sg.InputError) as info:
        f(np.zeros(0))
    message = str(info.value)
    assert "n" in message and "'X'" in message and "1" in message
    assert f(np.array([4.0])) == 0.0
    assert f(np.array([1.0, 3.0, 0.0])) == 4.0 + 9.0


# ---------------------------------------------------------------- layouts and conversions


def test_fortran_ordered_and_strided_arrays_give_correct_results(fn):
    vg = fn("regression")
    rng = np.random.default_rng(3)
    big = rng.normal(size=(10, 6))
    A_views = {
        "fortran": np.asfortranarray(rng.normal(size=(5, 3))),
        "strided rows": big[::2, :3],
        "strided columns": big[:5, ::2],
        "transposed": np.ascontiguousarray(rng.normal(size=(3, 5))).T,
        "negative stride": big[::-2, 1:4],
    }
    w = rng.normal(size=8)[::3]
    t = rng.normal(size=10)[::2]
    for label, A in A_views.items():
        value, (dA, dw) = vg(A, w, t)
        ref_value, ref_dA, ref_dw = regression_reference(A, w, t)
        assert value == pytest.approx(ref_value, rel=1e-12), label
        np.testing.assert_allclose(dA, ref_dA, rtol=1e-12, err_msg=label)
        np.testing.assert_allclose(dw, ref_dw, rtol=1e-12, err_msg=label)


def test_read_only_arrays_give_correct_results(fn):
    X = np.arange(4.0)
    Y = np.array([2.0, -1.0, 0.5, 3.0])
    X.setflags(write=False)
    Y.setflags(write=False)
    value, dX = fn("pair")(X, Y)
    assert value == np.dot(X, Y)
    np.testing.assert_array_equal(dX, Y)
    dX[0] = 100.0  # the result is the caller's to change
    assert Y[0] == 2.0


def test_broadcast_view_input_gives_correct_results(fn):
    Y = np.broadcast_to(np.array([2.0]), (3,))  # stride 0, read-only
    value, dX = fn("pair")(np.array([1.0, 2.0, 3.0]), Y)
    assert value == 12.0
    np.testing.assert_array_equal(dX, [2.0, 2.0, 2.0])


def test_integer_and_bool_data_for_float_inputs_are_converted(fn):
    value, dX = fn("pair")([1, 2, 3], np.array([4, 5, 6], dtype=np.int32))
    assert value == 32.0
    assert dX.dtype == np.float64
    np.testing.assert_array_equal(dX, [4.0, 5.0, 6.0])
    value, dX = fn("pair")(np.array([True, False]), [1.5, 2.5])
    assert value == 1.5
    value, (dx, dy) = fn("scalars")(2, np.int16(3))
    assert value == pytest.approx(6 + np.sin(2.0))
    assert dx == pytest.approx(3 + np.cos(2.0)) and dy == 2.0


def test_zero_d_arrays_and_numpy_scalars_are_accepted_as_scalars(fn):
    value, (dx, dy) = fn("scalars")(np.array(2.0), np.float32(3.0))
    assert value == pytest.approx(6 + np.sin(2.0))


def test_big_endian_data_is_converted(fn):
    X = np.array([1.0, 2.0], dtype=">f8")
    value, dX = fn("sumsq")(X)
    assert value == 5.0
    np.testing.assert_array_equal(dX, [2.0, 4.0])


def test_float64_data_to_a_float32_input_computes_in_float32(fn):
    data = np.array([0.1, 2.5, -3.0])
    value, dX = fn("float32")(data)
    as32 = data.astype(np.float32)
    assert dX.dtype == np.float32
    np.testing.assert_array_equal(dX, as32)  # d/dX 0.5*sum(X^2) = X
    assert value == pytest.approx(0.5 * np.sum(as32.astype(np.float64) ** 2), rel=1e-6)


def test_numba_kernel_is_not_respecialised_for_layouts_or_dtypes_converted_at_entry():
    vg = _build("regression", "numba")
    rng = np.random.default_rng(4)
    before = len(vg.kernel.signatures)
    vg(np.asfortranarray(rng.normal(size=(4, 3))), rng.normal(size=3), rng.normal(size=4))
    vg(rng.normal(size=(8, 6))[::2, ::2], [1, 2, 3], np.arange(4))
    vg(rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3), rng.normal(size=4))
    assert len(vg.kernel.signatures) == before


# ---------------------------------------------------------------- empty, nan, inf


def test_empty_batch_gives_zero_loss_and_empty_gradient(fn):
    value, dX = fn("sumsq")(np.zeros(0))
    assert value == 0.0
    assert dX.shape == (0,) and dX.dtype == np.float64


def test_empty_batch_with_fixed_dims_gives_zero_gradients_of_the_right_shape(fn):
    value, (dA, dw) = fn("regression")(np.zeros((0, 3)), np.array([1.0, 2.0, 3.0]), np.zeros(0))
    assert value == 0.0
    assert dA.shape == (0, 3) and dA.dtype == np.float64
    np.testing.assert_array_equal(dw, np.zeros(3))


def test_nan_and_inf_propagate_without_exceptions_or_warnings(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, dX = fn("pair")(np.array([np.nan, 1.0]), np.array([1.0, 2.0]))
        assert np.isnan(value)
        np.testing.assert_array_equal(dX, [1.0, 2.0])
        value, dX = fn("sumsq")(np.array([np.inf, 1.0]))
        assert value == np.inf
        assert dX[0] == np.inf and dX[1] == 2.0
        quotient, log, power, root = fn("ieee")(1.0, 0.0)
        assert quotient == np.inf and log == 0.0 and power == 1.0
        quotient, log, power, root = fn("ieee")(0.0, 0.0)
        assert np.isnan(quotient) and log == -np.inf and power == 1.0 and root == 0.0
        quotient, log, power, root = fn("ieee")(-8.0, 1 / 3)
        assert quotient == -24.0 and np.isnan(log) and np.isnan(power) and np.isnan(root)
        assert not isinstance(power, complex)
        quotient, log, power, root = fn("ieee")(10.0, 400.0)
        assert power == np.inf


# ---------------------------------------------------------------- what comes back


def test_outputs_never_alias_inputs(fn):
    X = np.array([1.0, 2.0, 3.0])
    Y = np.array([4.0, 5.0, 6.0])
    value, dX = fn("pair")(X, Y)
    assert value == 32.0
    np.testing.assert_array_equal(dX, Y)
    assert not np.shares_memory(dX, Y) and not np.shares_memory(dX, X)
    dX[:] = -1.0
    np.testing.assert_array_equal(Y, [4.0, 5.0, 6.0])
    value, dX_again = fn("pair")(X, Y)
    np.testing.assert_array_equal(dX_again, [4.0, 5.0, 6.0])


def test_identity_and_view_outputs_are_fresh_arrays(backend):
    M = sg.tensor("M", shape=(2, 3))
    f = sg.compile([M, M.T, M[1:], sg.reshape(M, (3, 2)), sg.stop_gradient(M)], backend=backend)
    data = np.arange(6.0).reshape(2, 3)
    outs = f(data)
    expected = [data, data.T, data[1:], data.reshape(3, 2), data]
    for out, ref in zip(outs, expected):
        np.testing.assert_array_equal(out, ref)
        assert not np.shares_memory(out, data)


def test_outputs_do_not_alias_each_other(backend):
    X = sg.tensor("X", shape=("n",))
    f = sg.compile([X * 2.0, X * 2.0], backend=backend)
    first, second = f(np.array([1.0, 2.0]))
    assert not np.shares_memory(first, second)
    first[0] = 100.0
    assert second[0] == 2.0


def test_equal_gradients_are_separate_arrays(backend):
    X = sg.tensor("X", shape=("n",))
    Y = sg.tensor("Y", shape=("n",))
    Z = sg.tensor("Z", shape=("n",))
    S = sg.sin(Z)
    vg = sg.value_and_grad(sg.sum(S * X) + sg.sum(S * Y), wrt=[X, Y], inputs=[X, Y, Z], backend=backend)
    z = np.array([0.1, 0.2])
    value, (dX, dY) = vg(np.ones(2), np.ones(2), z)
    np.testing.assert_allclose(dX, np.sin(z), rtol=1e-15)
    np.testing.assert_allclose(dY, np.sin(z), rtol=1e-15)
    assert not np.shares_memory(dX, dY)


def test_scalar_outputs_are_numbers_and_arrays_keep_the_input_dtype(fn):
    value, dX = fn("sumsq")(np.array([1.0, 2.0]))
    assert isinstance(value, (float, np.floating)) and not isinstance(value, np.ndarray)
    assert isinstance(dX, np.ndarray) and dX.dtype == np.float64
    value, (dx, dy) = fn("scalars")(0.5, 2.0)
    assert all(isinstance(v, (float, np.floating)) for v in (value, dx, dy))
    value32, dX32 = fn("float32")(np.array([1.0, 2.0], dtype=np.float32))
    assert isinstance(value32, (float, np.floating)) and not isinstance(value32, np.ndarray)
    assert dX32.dtype == np.float32


def test_scalar_from_reshape_is_a_number_not_a_zero_d_array(backend):
    one = sg.tensor("one", shape=(1,))
    f = sg.compile([sg.reshape(one, ()), sg.sum(one, keepdims=True)], backend=backend)
    scalar, kept = f(np.array([2.5]))
    assert isinstance(scalar, (float, np.floating)) and not isinstance(scalar, np.ndarray)
    assert scalar == 2.5
    assert isinstance(kept, np.ndarray) and kept.shape == (1,)


def test_bool_and_int_outputs(backend):
    x, y = sg.scalars("x y")
    k = sg.scalar("k", dtype="int64")
    f = sg.compile([x < y, k * 3], inputs=[x, y, k], backend=backend)
    less, triple = f(1.0, 2.0, 5)
    assert less == True and isinstance(less, (bool, np.bool_))  # noqa: E712
    assert triple == 15 and isinstance(triple, (int, np.integer))


# ---------------------------------------------------------------- ndarray subclasses


def test_masked_arrays_are_refused_naming_the_argument(fn):
    X = np.array([1.0, 2.0, 3.0])
    masked = np.ma.array([4.0, 5.0, 6.0], mask=[False, True, False])
    with pytest.raises(sg.InputError, match=r"argument 'Y' is a masked array \(1 of 3 values masked\)"):
        fn("pair")(X, masked)
    # refused even with nothing masked: whether a mask is read must not depend on the data
    with pytest.raises(
        sg.InputError,
        match=r"argument 'X' is a masked array \(0 of 3 .*X\.filled\(fill_value\).*np\.asarray\(X\)",
    ):
        fn("pair")(np.ma.array(X), X)
    with pytest.raises(sg.InputError, match=r"argument 'x' is a masked array \(1 of 1 values masked\)"):
        fn("scalars")(np.ma.masked, 3.0)
    with pytest.raises(sg.InputError, match=r"argument 'y' is a masked array"):
        fn("scalars")(2.0, np.ma.array(3.0))
    # what the message suggests works, and gives numpy's answer
    value, dX = fn("pair")(X, masked.filled(0.0))
    assert value == np.sum(X * masked.filled(0.0)) and np.array_equal(dX, [4.0, 0.0, 6.0])


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
def test_other_ndarray_subclasses_are_read_as_plain_arrays(fn, tmp_path):
    rng = np.random.default_rng(3)
    A, w, t = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=4)
    want, want_dA, want_dw = regression_reference(A, w, t)
    mapped = np.memmap(tmp_path / "t.bin", dtype=np.float64, mode="w+", shape=(4,))
    mapped[:] = t
    # np.matrix would make * a matrix product and keep results 2-d: read as its data, it cannot
    for args in ((np.matrix(A), w, t), (A, w, mapped), (np.matrix(A), w, mapped)):
        value, (dA, dw) = fn("regression")(*args)
        assert type(dA) is np.ndarray and type(dw) is np.ndarray
        assert value == pytest.approx(want, rel=1e-13)
        np.testing.assert_allclose(dA, want_dA, rtol=1e-13)
        np.testing.assert_allclose(dw, want_dw, rtol=1e-13)


def test_bmm_reads_transposed_and_strided_operands_as_they_are():
    # a batch's slice of a transposed array is in Fortran order: BLAS reads it in place; a
    # strided slice is copied; every product is written into its slice of the result
    numba = pytest.importorskip("numba")
    from symgrad.codegen import numba_runtime as _rt

    @numba.njit
    def products(a, b, s):
        t = np.transpose
        return (
            _rt.bmm(a, t(b, (0, 2, 1))),
            _rt.bmm(t(a, (0, 2, 1)), s),
            _rt.bmm(t(s, (0, 2, 1)), t(t(a, (0, 2, 1)), (0, 2, 1))),
            _rt.bmm(a[:, ::2, :], t(b, (0, 2, 1))[:1]),
            _rt.bmm(a[:, :, :0], b[:, :0, :]),
        )

    rng = np.random.default_rng(2)
    for dtype in (np.float64, np.float32):
        a, b = rng.normal(size=(3, 6, 4)).astype(dtype), rng.normal(size=(3, 5, 4)).astype(dtype)
        s = rng.normal(size=(3, 6, 7)).astype(dtype)
        t = np.transpose
        want = (
            a @ t(b, (0, 2, 1)),
            t(a, (0, 2, 1)) @ s,
            t(s, (0, 2, 1)) @ a,
            a[:, ::2, :] @ t(b, (0, 2, 1))[:1],
            np.zeros((3, 6, 4), dtype),
        )
        tol = 1e-12 if dtype == np.float64 else 1e-5
        for got, expected in zip(products(a, b, s), want):
            assert got.dtype == dtype and got.flags.c_contiguous
            np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
