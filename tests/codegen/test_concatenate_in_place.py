"""A concatenate's operands written in place (codegen/placement.py) and the tangent of a
concatenate built in one piece (the op's ``jvp_joint``): values against numpy and central
differences, the structure against the generated source (no ``np.concatenate`` copy left
where the loops can write the parts)."""

import numpy as np
import pytest

import symgrad as sg
from symgrad import autodiff
from symgrad.graph import topo_order

RNG = np.random.default_rng(23)


def residual(u):
    """A 1-D reaction-diffusion residual with boundary rows: concatenate([boundary, inner, boundary])."""
    h = 1.0 / (u.shape[0] - 1)
    inner = (u[:-2] - 2 * u[1:-1] + u[2:]) / h**2 + 3.0 * u[1:-1] * (1 - u[1:-1])
    return np.concatenate([u[:1] - 1.0, inner, u[-1:]])


def residual_jacobian(u):
    n = u.shape[0]
    c = (n - 1) ** 2
    jac = np.zeros((n, n))
    jac[0, 0] = jac[-1, -1] = 1.0
    for i in range(1, n - 1):
        jac[i, i - 1] = jac[i, i + 1] = c
        jac[i, i] = -2 * c + 3.0 * (1 - 2 * u[i])
    return jac


def test_sparse_jacobian_kernel_writes_the_value_and_the_passes_in_place():
    n = 40
    u = sg.tensor("u", (n,))
    sj = sg.sparse_jacobian(residual(u), [u])
    at = np.linspace(1.0, 0.0, n) + 0.1 * np.sin(np.linspace(0.0, 9.0, n))
    value, jac = sj.value_and_jacobian(at)
    np.testing.assert_allclose(value, residual(at), rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(jac.toarray(), residual_jacobian(at), rtol=1e-12, atol=1e-9)
    assert sj.passes == 3
    src = sj.source
    # the residual and the stacked passes are allocated once and written by the loops: no copy
    assert "np.concatenate" not in src
    assert src.count("# written in place by the loops computing its parts") == 2


def test_the_tangent_of_a_concatenate_is_one_concatenate_not_a_sum_of_blocks():
    x = sg.tensor("x", (6,))
    y = sg.concatenate([x[:2] * 3.0, sg.sin(x[2:])])
    v = RNG.normal(size=6)
    (t,) = autodiff.jvp([y], [x], [sg.constant(v)])
    ops = {n.op for n in topo_order([t])}
    assert t.op == "concatenate" and "slice_grad" not in ops and "add" not in ops
    at = RNG.normal(size=6)
    got = sg.compile(t, inputs=[x], backend="numpy")(at)

    def f(z):
        return np.concatenate([z[:2] * 3.0, np.sin(z[2:])])

    eps = 1e-6
    np.testing.assert_allclose(got, (f(at + eps * v) - f(at - eps * v)) / (2 * eps), rtol=1e-7, atol=1e-9)


def test_a_tangent_for_some_blocks_only_keeps_the_zero_padded_block():
    x, c = sg.tensor("x", (3,)), sg.tensor("c", (2,))
    (t,) = autodiff.jvp([sg.concatenate([sg.exp(x), c])], [x], [sg.constant(np.ones(3))])
    assert t.op == "slice_grad"  # the lone block is read as a window by the fused loops
    np.testing.assert_allclose(
        sg.compile(t, inputs=[x, c], backend="numpy")(np.zeros(3), np.ones(2)), [1, 1, 1, 0, 0]
    )


@pytest.mark.parametrize("axis", [0, 1])
def test_fused_parts_along_either_axis_with_symbolic_sizes(axis):
    a, b = sg.tensor("a", ("n", "m")), sg.tensor("b", ("n", "m"))
    out = sg.concatenate([sg.sin(a) * b, sg.cos(b) + a, sg.exp(a)], axis=axis)
    f = sg.compile(out)
    assert "np.concatenate" not in f.source
    for n, m in [(2, 3), (5, 1)]:
        A, B = RNG.normal(size=(n, m)), RNG.normal(size=(n, m))
        want = np.concatenate([np.sin(A) * B, np.cos(B) + A, np.exp(A)], axis=axis)
        np.testing.assert_allclose(f(A, B), want, rtol=1e-14)


def test_a_part_also_read_elsewhere_or_returned_is_copied_not_moved():
    x = sg.tensor("x", (5,))
    part = sg.sin(x) * 2.0
    joined = sg.concatenate([part, sg.cos(x) * 3.0, x[:2]])
    f = sg.compile([part, joined, sg.sum(part * x)])
    X = RNG.normal(size=5)
    p, j, s = f(X)
    np.testing.assert_allclose(p, np.sin(X) * 2.0, rtol=1e-15)
    np.testing.assert_allclose(j, np.concatenate([np.sin(X) * 2.0, np.cos(X) * 3.0, X[:2]]), rtol=1e-15)
    np.testing.assert_allclose(s, np.sum(np.sin(X) * 2.0 * X), rtol=1e-14)
    p[:] = 0.0  # two arrays, not one seen twice
    assert np.all(j[:5] != 0.0)
