"""float32 sums, means and products in the numba backend are at least as accurate as numpy's.

The truth is ``math.fsum`` (exactly rounded) of the float32 data; numpy's own ``np.sum``
(pairwise in float32) is the bar. Every loop form is exercised: the per-op lowering of a
whole-array and a partial sum, the fused loop (whole and partial sums), the tiled loop,
and the same graphs with fusion disabled; each case checks the source so the form is
really the one named.
"""

import math

import numpy as np
import pytest

import symgrad as sg

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

rng = np.random.default_rng(17)


def _fsum(a):
    return math.fsum(np.asarray(a, dtype=np.float64).ravel().tolist())


def _ulp32(v):
    return float(np.spacing(np.float32(abs(v))))


x = sg.tensor("x", ("n",), dtype="float32")
X = sg.tensor("X", ("n", "d"), dtype="float32")

# name -> (expression of x, a marker of the loop form in the source, the truth from the data)
FORMS = {
    "plain sum": (sg.sum(x), "_rt.sum_wide(", lambda a: _fsum(a)),
    "plain mean": (sg.mean(x), "_rt.sum_wide(", lambda a: _fsum(a) / a.size),
    "fused sum": (sg.sum(x * x), "# fused loop", lambda a: _fsum(a.astype(np.float64) ** 2)),
    "tiled sum": (sg.sum(sg.exp(x) * 0.5), "in tiles of", lambda a: _fsum(np.exp(a.astype(np.float64))) / 2),
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("n", [1, 7, 1000, 10**5, 10**7])
def test_float32_sums_in_every_loop_form_match_fsum(form, n):
    expr, marker, truth = FORMS[form]
    f = sg.compile(expr, inputs=[x], backend="numba")
    assert marker in f.source
    data = np.full(n, 0.1, np.float32) if n == 10**7 else rng.normal(size=n).astype(np.float32)
    got = f(data)
    want = truth(data)
    assert np.asarray(got).dtype == np.float32
    # rounded once from a float64 running sum: within one float32 ulp of the exact value
    assert abs(float(got) - want) <= _ulp32(want) + 1e-30, (form, n, got, want)


def test_the_audits_mean_of_ten_million_tenths():
    data = np.full(10**7, 0.1, np.float32)
    got = sg.compile(sg.mean(x), inputs=[x], backend="numba")(data)
    assert abs(float(got) - _fsum(data) / data.size) <= _ulp32(0.1)


@pytest.mark.parametrize("fusion", ["1", "0"])
def test_partial_float32_sums_plain_and_fused_match_fsum(monkeypatch, fusion):
    monkeypatch.setenv("SYMGRAD_FUSION", fusion)
    data = (rng.normal(size=(3, 40000)) + 0.1).astype(np.float32)
    exprs = {
        "rows": (sg.sum(X, axis=1), lambda a: [_fsum(r) for r in a]),
        "columns": (sg.sum(X.T, axis=0), lambda a: [_fsum(r) for r in a]),
        "fused rows": (sg.sum(X * X, axis=1), lambda a: [_fsum(r.astype(np.float64) ** 2) for r in a]),
    }
    for name, (expr, truth) in exprs.items():
        f = sg.compile(expr, inputs=[X], backend="numba")
        if fusion == "1" and name == "fused rows":
            assert "# fused loop" in f.source and "_acc = _rt.zeros(" in f.source
        got = np.asarray(f(data))
        assert got.dtype == np.float32
        for g, w in zip(got, truth(data)):
            assert abs(float(g) - w) <= _ulp32(w), (name, g, w)


def test_float32_products_and_small_matmuls_accumulate_in_float64():
    data = (1 + rng.normal(size=20000) * 1e-3).astype(np.float32)
    want = float(np.prod(data.astype(np.float64)))
    got = sg.compile(sg.prod(x), inputs=[x], backend="numba")(data)
    assert abs(float(got) - want) <= 2 * _ulp32(want)
    rows = sg.compile(sg.prod(X, axis=1), inputs=[X], backend="numba")(data.reshape(4, 5000))
    for g, r in zip(rows, data.reshape(4, 5000)):
        w = float(np.prod(r.astype(np.float64)))
        assert abs(float(g) - w) <= 2 * _ulp32(w)
    # a small product of concrete shape is a loop (no BLAS): its dot products add in float64
    A = sg.tensor("A", (2, 200), dtype="float32")
    v = sg.tensor("v", (200,), dtype="float32")
    f = sg.compile(A @ v, inputs=[A, v], backend="numba")
    # (an output: written into the array the entry passes, by small_matmul_into)
    assert "_rt.small_matmul(" in f.source or "_rt.small_matmul_into(" in f.source
    a = (rng.normal(size=(2, 200)) + 1).astype(np.float32)
    b = (rng.normal(size=200) + 1).astype(np.float32)
    for g, row in zip(f(a, b), a):
        w = _fsum(row.astype(np.float64) * b.astype(np.float64))
        assert abs(float(g) - w) <= _ulp32(w)


_PLAIN = sg.compile(sg.sum(x), inputs=[x], backend="numba")
_FUSED = sg.compile(sg.sum(x * 1.5), inputs=[x], backend="numba")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    hnp.arrays(
        np.float32,
        st.integers(0, 5000),
        elements=st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False),
    )
)
def test_float32_sums_are_no_worse_than_numpys(data):
    want = _fsum(data)
    slack = _ulp32(want) + data.size * 2.0**-50 * float(np.sum(np.abs(data.astype(np.float64))))
    numpy_error = abs(float(np.sum(data)) - want)
    assert abs(float(_PLAIN(data)) - want) <= numpy_error + slack
    terms = data * np.float32(1.5)  # the loop's float32 terms, the same in both
    want = _fsum(terms)
    numpy_error = abs(float(np.sum(terms)) - want)
    slack = _ulp32(want) + data.size * 2.0**-50 * 1.5 * float(np.sum(np.abs(data.astype(np.float64))))
    assert abs(float(_FUSED(data)) - want) <= numpy_error + slack


def test_dask_partial_float32_sums_are_added_in_float64():
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    A = sg.tensor("A", ("n", "d"), dtype="float32")
    w = sg.tensor("w", ("d",), dtype="float32")
    vg = sg.value_and_grad(sg.sum(A @ w), wrt=w, inputs=[w, A])
    data = (rng.normal(size=(300 * 1000, 1)) + 1).astype(np.float32)
    with dask.config.set(scheduler="threads"):
        value, grad = vg(np.ones(1, np.float32), da.from_array(data, chunks=(1000, 1)))
    assert np.asarray(value).dtype == np.float32 and grad.dtype == np.float32
    want = _fsum(data)
    assert abs(float(value) - want) <= _ulp32(want), (value, want)
