"""docs/reach.md's table is true: every supported call traces to numpy's value and a gradient that
matches central differences; every refused call raises UnsupportedError naming the reason."""

import pathlib
import re

import numpy as np
import pytest
import scipy.linalg
import scipy.special

import symgrad as sg
from symgrad.errors import UnsupportedError

TABLE = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "reach.md").read_text(encoding="utf-8")
ROWS = [
    (name.strip("` "), status.strip(), call.strip().strip("`"), note.strip())
    for name, status, call, note in re.findall(
        r"^\| (.+?) \| (supported[^|]*|refused) \| (`.+?`) \|(.*)\|$", TABLE, re.M
    )
]
NAMESPACE = {"np": np, "scipy": scipy}


def _at_set(a):
    b = a.copy()
    b[0] = a[1] * 2.0
    return b


# numpy's result for a row whose spelling numpy lacks (JAX's x.at[...])
REFERENCE = {"x.at[i].set(v)": _at_set}


def _matrix():
    rng = np.random.default_rng(5)
    r = rng.uniform(-0.5, 0.5, (3, 3))
    return r @ r.T + np.diag([0.9, 0.6, 0.3])  # symmetric positive definite, distinct eigenvalues


def test_the_table_has_every_row():
    assert len(ROWS) >= 90
    assert {s for _, s, _, _ in ROWS} == {"supported", "supported, no gradient", "refused"}


@pytest.mark.parametrize(
    "name, status, call, note",
    [r for r in ROWS if r[1].startswith("supported")],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_a_supported_call_traces_to_numpys_value_and_gradient(name, status, call, note):
    fn = eval(call, dict(NAMESPACE))
    a = _matrix()
    expected = np.asarray(REFERENCE.get(name, fn)(a), dtype=np.float64)
    got = np.asarray(sg.compile(fn, backend="numpy")(a), dtype=np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    if status != "supported":
        return
    w = np.random.default_rng(1).uniform(0.5, 1.5, expected.shape)

    reference = REFERENCE.get(name, fn)

    def loss(a):
        return np.sum(fn(a) * w)

    def numeric_loss(a):
        return np.sum(reference(a) * w)

    _, grad = sg.value_and_grad(loss, backend="numpy")(a)
    h, numeric = 1e-6, np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        step = np.zeros_like(a)
        step[idx] = h
        numeric[idx] = (numeric_loss(a + step) - numeric_loss(a - step)) / (2 * h)
    if "symmetric part" in note:
        # a function of one triangle: only symmetric perturbations are defined (JAX's convention)
        grad, numeric = grad + grad.T, numeric + numeric.T
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, status, call, note", [r for r in ROWS if r[1] == "refused"])
def test_a_refused_call_says_why(name, status, call, note):
    fn = eval(call, dict(NAMESPACE))
    with pytest.raises(UnsupportedError, match=re.escape(note) if note else None):
        sg.value_and_grad(lambda a: np.sum(fn(a)), backend="numpy")(_matrix())
