"""``Compiled.kernel_checked``: the kernel after the entry's size checks, callable from numba code.

``.kernel`` checks nothing (a mismatched size reads past an array); ``.kernel_checked``
raises ValueError naming the argument and axis, from inside the user's njit function.
"""

import numba
import numpy as np
import pytest

import symgrad as sg

A = sg.tensor("A", ("n", 3))
b = sg.tensor("b", ("n",))
X = sg.tensor("X", ("m",))
ROSEN = sg.sum(100 * (X[1:] - X[:-1] ** 2) ** 2 + (1 - X[:-1]) ** 2)


@numba.njit
def _call2(k, a, c):
    return k(a, c)


@numba.njit
def _call1(k, a):
    return k(a)


def _vg():
    return sg.value_and_grad(sg.sum(sg.sin(A) * b[:, None]), wrt=A)


def test_correct_shapes_give_what_numpy_gives():
    vg = _vg()
    rng = np.random.default_rng(3)
    a, c = rng.normal(size=(5, 3)), rng.normal(size=5)
    value, grad = _call2(vg.kernel_checked, a, c)
    np.testing.assert_allclose(value, np.sum(np.sin(a) * c[:, None]), rtol=1e-13)
    np.testing.assert_allclose(grad, np.cos(a) * c[:, None], rtol=1e-13)
    rosen = sg.value_and_grad(ROSEN, wrt=X)
    x = rng.normal(size=9)
    v, g = _call1(rosen.kernel_checked, x)
    want = np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    np.testing.assert_allclose(v, want, rtol=1e-13)
    np.testing.assert_allclose(g, rosen(x)[1], rtol=1e-13)


def test_a_named_dim_that_differs_between_arguments_raises_naming_both():
    vg = _vg()
    with pytest.raises(
        ValueError,
        match=r"kernel_checked: argument 'b', axis 0: must have the length of axis 0 of 'A' \(dim n\)",
    ):
        _call2(vg.kernel_checked, np.ones((5, 3)), np.ones(30))


def test_a_fixed_dim_of_the_wrong_length_raises():
    vg = _vg()
    with pytest.raises(ValueError, match=r"argument 'A', axis 1: must have length 3"):
        _call2(vg.kernel_checked, np.ones((5, 1)), np.ones(5))


def test_a_slice_needing_a_longer_axis_raises():
    rosen = sg.value_and_grad(ROSEN, wrt=X)
    # X[1:] and X[:-1] both need m >= 1; the message names one of them
    with pytest.raises(ValueError, match=r"m must be at least 1 for X\[(1:|:-1)\] \(m is axis 0 of 'X'\)"):
        _call1(rosen.kernel_checked, np.ones(0))


def test_index_values_are_checked_by_the_kernel():
    idx = sg.tensor("idx", ("k",), dtype="int64")
    vg = sg.value_and_grad(sg.sum(X[idx] ** 2), wrt=X, inputs=[X, idx])
    with pytest.raises(IndexError, match="out of bounds"):
        _call2(vg.kernel_checked, np.ones(3), np.array([0, 3]))


def test_kernel_checked_is_in_the_source_and_the_saved_module(tmp_path):
    vg = _vg()
    assert "def kernel_checked(" in vg.source
    path = vg.save(tmp_path / "saved.py")
    text = open(path, encoding="utf-8").read()
    assert "def kernel_checked(" in text and "return kernel(" in text
