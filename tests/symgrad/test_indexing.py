"""Integer-array indexing: gathers match numpy, their gradients scatter-add, bad indices never read out of bounds."""

import numpy as np
import pytest

import symgrad as sg

BACKENDS = ["numpy", "numba"]


def _softmax(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_take_rows_matches_numpy_and_gradient_scatter_adds(backend):
    X = sg.tensor("X", ("n", "d"))
    idx = sg.tensor("idx", ("k",), dtype="int64")
    W = sg.tensor("W", ("k", "d"))
    vg = sg.value_and_grad(sg.sum(X[idx] * W), wrt=X, inputs=[X, idx, W], backend=backend)
    rng = np.random.default_rng(0)
    Xv, Wv = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    iv = np.array([0, 2, 2, -1, 1])  # repeats and a negative index
    value, dX = vg(Xv, iv, Wv)
    assert value == pytest.approx(np.sum(Xv[iv] * Wv), rel=1e-14)
    expected = np.zeros_like(Xv)
    np.add.at(expected, iv, Wv)  # each use of a row adds its weight
    np.testing.assert_allclose(dX, expected, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_take_along_a_middle_axis(backend):
    X = sg.tensor("X", (2, 4, 3))
    f = sg.compile(sg.take(X, np.array([[3, 0], [1, 1]]), axis=1), backend=backend)
    Xv = np.arange(24.0).reshape(2, 4, 3)
    np.testing.assert_array_equal(f(Xv), np.take(Xv, [[3, 0], [1, 1]], axis=1))
    vg = sg.value_and_grad(sg.sum(sg.take(X, np.array([3, 0, 3]), axis=1) ** 2), wrt=X, backend=backend)
    assert sg.check_grad(vg, Xv / 10) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
def test_take_along_axis_matches_numpy(backend):
    X = sg.tensor("X", ("n", 4))
    I = sg.tensor("I", ("n", 2), dtype="int64")
    f = sg.compile(sg.take_along_axis(X, I, axis=1), inputs=[X, I], backend=backend)
    rng = np.random.default_rng(1)
    Xv, Iv = rng.normal(size=(3, 4)), rng.integers(-4, 4, size=(3, 2))
    np.testing.assert_array_equal(f(Xv, Iv), np.take_along_axis(Xv, Iv, axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_with_integer_labels(backend):
    C = 3
    s = sg.tensor("s", ("N", C))
    labels = sg.tensor("labels", ("N",), dtype="int64")
    loss = -sg.mean(sg.log_softmax(s, axis=1)[sg.arange(s.shape[0]), labels])
    vg = sg.value_and_grad(loss, wrt=s, inputs=[s, labels], backend=backend)
    rng = np.random.default_rng(2)
    for n in (1, 6):
        sv, lv = rng.normal(size=(n, C)) * 4, rng.integers(0, C, n)
        value, ds = vg(sv, lv)
        p = _softmax(sv)
        assert value == pytest.approx(-np.mean(np.log(p[np.arange(n), lv])), rel=1e-13)
        np.testing.assert_allclose(ds, (p - np.eye(C)[lv]) / n, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_index_is_an_input_error_not_a_read(backend):
    x = sg.tensor("x", ("n",))
    idx = sg.tensor("idx", ("k",), dtype="int64")
    vg = sg.value_and_grad(sg.sum(x[idx]), wrt=x, inputs=[x, idx], backend=backend)
    for bad in ([0, 3], [-4], [10**9]):
        with pytest.raises(sg.InputError, match="out of range"):
            vg(np.ones(3), np.array(bad))
    labels = sg.tensor("labels", ("m",), dtype="int64")
    S = sg.tensor("S", ("m", 2))
    f = sg.compile(S[sg.arange(S.shape[0]), labels], inputs=[S, labels], backend=backend)
    with pytest.raises(sg.InputError, match="out of range"):
        f(np.ones((2, 2)), np.array([0, 2]))  # 2 would silently read the next row if unchecked


def test_constant_index_out_of_range_is_a_shape_error_at_build():
    x = sg.tensor("x", (3,))
    with pytest.raises(sg.ShapeError, match="index 3 is out of bounds for axis 0 of size 3"):
        x[np.array([0, 3])]


def test_bad_index_kinds_are_rejected_with_reasons():
    x = sg.tensor("x", ("n",))
    with pytest.raises(sg.UnsupportedError, match="bool mask"):
        x[x > 0]
    with pytest.raises(sg.UnsupportedError, match="integers"):
        x[sg.tensor("f", ("k",))]
    X = sg.tensor("X", ("n", "n"))
    i = sg.tensor("i", ("k",), dtype="int64")
    with pytest.raises(sg.UnsupportedError, match="advanced-indexing pattern"):
        X[i, i]


def test_second_derivative_through_a_gather():
    x = sg.tensor("x", ("n",))
    idx = np.array([0, 2, 2])
    (g,) = sg.grad(sg.sum(x[idx] ** 3), [x])
    v = sg.tensor("v", ("n",))
    (hv,) = sg.vjp(g, [x], v)
    f = sg.compile(hv, inputs=[x, v], backend="numpy")
    xv, vv = np.array([0.5, 1.0, -2.0]), np.array([1.0, 2.0, 3.0])
    counts = np.bincount(idx, minlength=3)
    np.testing.assert_allclose(f(xv, vv), 6 * counts * xv * vv, rtol=1e-14)


def test_parser_reaches_integer_indexing():
    s = sg.tensor("s", (2, 3))
    t = sg.tensor("t", (2,), dtype="int64")
    parsed = sg.parse(
        "log_softmax(s, axis=1)[arange(2), t]", shapes={"s": (2, 3), "t": (2,)}, dtypes={"t": "int64"}
    )
    assert parsed is sg.log_softmax(s, axis=1)[sg.arange(2), t]


def test_structure_builders_reject_non_sequences():
    x = sg.tensor("x", (2, 3))
    with pytest.raises(sg.UnsupportedError, match="concatenate takes a list or tuple"):
        sg.concatenate(0)
    with pytest.raises(sg.UnsupportedError, match="stack takes a list or tuple"):
        sg.stack(x)
    with pytest.raises(sg.ShapeError, match="axes must be a tuple of ints"):
        sg.transpose(x, axes=True)
    with pytest.raises(sg.ShapeError, match="axes must be a tuple of ints"):
        sg.transpose(x, axes=(1.0, 0))


def test_slicing_on_two_symbolic_dimensions():
    M = sg.tensor("M", ("n", "m"))
    vg = sg.value_and_grad(sg.sum(M[1:, :-2] ** 2), wrt=M, backend="numpy")
    Mv = np.arange(12.0).reshape(3, 4)
    value, dM = vg(Mv)
    assert value == np.sum(Mv[1:, :-2] ** 2)
    expected = np.zeros_like(Mv)
    expected[1:, :-2] = 2 * Mv[1:, :-2]
    np.testing.assert_array_equal(dM, expected)
    with pytest.raises(sg.InputError, match="at least 2"):
        vg(np.ones((3, 1)))
