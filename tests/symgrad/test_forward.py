"""Forward mode: every op's JVP rule against central differences, and Jacobians in all modes.

The truth is the directional derivative of the compiled forward value by the
five-point central-difference stencil, d/de f(x + e t) at e = 0, never symgrad's
own derivative rules.
"""

import numpy as np
import pytest

import symgrad as sg
from symgrad.errors import ShapeError, UnsupportedError
from symgrad.graph import topo_order
from symgrad.ops import reduce as reduce_ops, structure as structure_ops
from symgrad.ops.registry import OPS, make

NAMES = "abcd"
IDX = np.array([1, 0, 1])
IDX_LAST = np.array([[2, 0], [1, 1]])


def _uniform(lo, hi, shape, seed=0, away=0.0):
    x = np.random.default_rng(seed).uniform(lo, hi, size=shape)
    return np.where(np.abs(x) < away, np.copysign(away + np.abs(x), x), x)


def _distinct(shape, seed=0):
    size = int(np.prod(shape))
    return ((np.random.default_rng(seed).permutation(size) - size / 2) * 0.3).reshape(shape)


def _well(k, shape=None):
    """A well-conditioned matrix: k on the diagonal, uniform values in [-1, 1] elsewhere."""
    shape = shape or (k, k)
    return _uniform(-1, 1, shape, seed=3) + k * np.eye(*shape)


def _spd(a):
    return a @ a.T + a.shape[0] * sg.linalg.eye(a.shape[0])


UNARY_DOMAIN = {
    "neg": (-2, 2),
    "abs": (-2, 2),
    "exp": (-2, 2),
    "expm1": (-2, 2),
    "log": (0.2, 3),
    "log1p": (-0.5, 3),
    "sqrt": (0.2, 3),
    "square": (-2, 2),
    "reciprocal": (0.3, 2),
    "sin": (-3, 3),
    "cos": (-3, 3),
    "tan": (-1.2, 1.2),
    "arcsin": (-0.9, 0.9),
    "arccos": (-0.9, 0.9),
    "arctan": (-3, 3),
    "sinh": (-2, 2),
    "cosh": (-2, 2),
    "tanh": (-2, 2),
    "sigmoid": (-4, 4),
    "relu": (-2, 2),
    "softplus": (-4, 4),
    "erf": (-2, 2),
    "erfinv": (-0.9, 0.9),
    "gammaln": (0.3, 5),
    "digamma": (0.3, 5),
    "ndtr": (-3, 3),
    "log_ndtr": (-3, 3),
    "ndtri": (0.05, 0.95),
    "erfcinv": (0.1, 1.9),
    "logit": (0.05, 0.95),
    "i0e": (-4, 4),  # away from the kink at 0 (_uniform's away=0.1)
    "i1e": (-4, 4),
}


@sg.custom_vjp
def _custom_product(a, b):
    return a * b


_custom_product.defvjp(lambda a, b: (a * b, (a, b)), lambda res, g: (g * res[1], g * res[0]))

# op -> (build from symbols, input arrays); every op with a differentiable input is here
CASES = {
    name: (lambda a, _n=name: getattr(sg, _n)(a), [_uniform(*dom, (2, 3), away=0.1)])
    for name, dom in UNARY_DOMAIN.items()
}
CASES.update(
    {
        "add": (sg.add, [_uniform(-2, 2, (2, 3)), _uniform(-2, 2, (3,), 1)]),
        "sub": (sg.sub, [_uniform(-2, 2, (2, 3)), _uniform(-2, 2, (3,), 1)]),
        "mul": (sg.mul, [_uniform(-2, 2, (2, 3)), _uniform(-2, 2, (3,), 1)]),
        "div": (sg.div, [_uniform(-2, 2, (2, 3)), _uniform(0.5, 2, (3,), 1)]),
        "pow": (sg.pow, [_uniform(0.5, 2, (2, 3)), _uniform(-1.5, 1.5, (3,), 1)]),
        "maximum": (sg.maximum, [_distinct((2, 3)), _distinct((3,), 1) + 0.05]),
        "minimum": (sg.minimum, [_distinct((2, 3)), _distinct((3,), 1) + 0.05]),
        "arctan2": (sg.arctan2, [_uniform(-2, 2, (2, 3)), _uniform(0.5, 2, (3,), 1)]),
        "logaddexp": (sg.logaddexp, [_uniform(-4, 4, (2, 3)), _uniform(-4, 4, (3,), 1)]),
        # a / b is at least 0.1 from a whole number, where the remainder jumps
        "mod": (sg.mod, [np.array([[0.3, -1.3, 1.7], [-0.45, 0.8, 2.6]]), np.array([0.7, 1.1, 1.9])]),
        "fmod": (sg.fmod, [np.array([[0.3, -1.3, 1.7], [-0.45, 0.8, 2.6]]), np.array([0.7, 1.1, 1.9])]),
        "xlogy": (sg.xlogy, [_uniform(-2, 2, (2, 3)), _uniform(0.3, 3, (3,), 1)]),
        "polygamma": (lambda a: sg.polygamma(2, a), [_uniform(0.3, 5, (2, 3))]),
        "xlog1py": (sg.xlog1py, [_uniform(-2, 2, (2, 3)), _uniform(-0.7, 3, (3,), 1)]),
        "betaln": (sg.betaln, [_uniform(0.3, 5, (2, 3)), _uniform(0.3, 5, (3,), 1)]),
        "where": (
            lambda a, b: sg.where(a > 0, a * 2, b),
            [_uniform(-2, 2, (2, 3), away=0.1), _uniform(-2, 2, (3,), 1)],
        ),
        "cast": (lambda a: sg.cast(a, "float32") * 1.0, [_uniform(-2, 2, (2, 3))]),
        "sum": (lambda a: sg.sum(a, axis=1), [_uniform(-2, 2, (2, 3))]),
        "max": (lambda a: sg.max(a, axis=0, keepdims=True), [_distinct((2, 3))]),
        "min": (lambda a: sg.min(a, axis=1), [_distinct((2, 3))]),
        "prod": (lambda a: sg.prod(a, axis=1), [_uniform(-2, 2, (2, 3))]),
        "prod_others": (lambda a: reduce_ops.prod_others(a, (1,)), [_uniform(-2, 2, (2, 3))]),
        "reshape": (lambda a: sg.reshape(a, (3, 2)) * 2.0, [_uniform(-2, 2, (2, 3))]),
        "broadcast_to": (lambda a: sg.broadcast_to(a, (2, 3)), [_uniform(-2, 2, (3,))]),
        "transpose": (lambda a: a.T, [_uniform(-2, 2, (2, 3))]),
        "getitem": (lambda a: a[:, 1:], [_uniform(-2, 2, (2, 3))]),
        "slice_grad": (
            lambda a: structure_ops.slice_grad(a, (("s", 1, None, None), ("s", None, None, None)), (2, 3)),
            [_uniform(-2, 2, (1, 3))],
        ),
        "concatenate": (
            lambda a, b: sg.concatenate([a, b], axis=0),
            [_uniform(-2, 2, (2, 3)), _uniform(-2, 2, (1, 3), 1)],
        ),
        "matmul": (lambda a, b: a @ b, [_uniform(-2, 2, (2, 3)), _uniform(-2, 2, (3, 4), 1)]),
        "take0": (lambda a: sg.take(a, IDX, axis=0), [_uniform(-2, 2, (2, 3))]),
        "scatter_add0": (
            lambda a: structure_ops.scatter_add0(a, sg.constant(IDX), 2),
            [_uniform(-2, 2, (3, 2))],
        ),
        "take_last": (lambda a: sg.take_along_axis(a, IDX_LAST, axis=1), [_uniform(-2, 2, (2, 3))]),
        "scatter_last": (
            lambda a: make("scatter_last", [a, sg.constant(IDX_LAST)], size=3),
            [_uniform(-2, 2, (2, 2))],
        ),
        "cumsum": (lambda a: sg.cumsum(a, axis=0), [_uniform(-2, 2, (2, 3))]),
        "cumprod": (lambda a: sg.cumprod(a, axis=1), [_uniform(0.5, 2, (2, 3))]),
        # decompositions and solves (tests/symgrad/test_linalg_decomp.py checks them against numpy)
        "solve": (sg.linalg.solve, [_well(3), _uniform(-2, 2, (3, 2), 1)]),
        "inv": (sg.linalg.inv, [_well(3)]),
        "det": (sg.linalg.det, [_well(3)]),
        "logabsdet": (lambda a: sg.linalg.slogdet(a)[1], [_well(3)]),
        "cholesky": (lambda a: sg.linalg.cholesky(_spd(a)), [_uniform(-2, 2, (3, 3))]),
        "solve_triangular": (
            lambda a, b: sg.linalg.solve_triangular(a, b, lower=True, trans=1),
            [_well(3), _uniform(-2, 2, (3,), 1)],
        ),
        # eigen- and singular vectors are defined up to sign: their squares are not
        "eigh_w": (lambda a: sg.linalg.eigh(_spd(a))[0], [_uniform(-2, 2, (3, 3))]),
        "eigh_v": (lambda a: sg.linalg.eigh(_spd(a))[1] ** 2, [_uniform(-2, 2, (3, 3))]),
        "svd_u": (lambda a: sg.linalg.svd(a, full_matrices=False)[0] ** 2, [_uniform(-2, 2, (4, 3))]),
        "svd_s": (lambda a: sg.linalg.svd(a, compute_uv=False), [_uniform(-2, 2, (3, 4))]),
        "svd_vt": (lambda a: sg.linalg.svd(a, full_matrices=False)[2] ** 2, [_uniform(-2, 2, (3, 4))]),
        "qr_q": (lambda a: sg.linalg.qr(a)[0], [_well(3, (4, 3))]),
        "qr_r": (lambda a: sg.linalg.qr(a)[1], [_well(3, (4, 3))]),
        "pinv": (sg.linalg.pinv, [_uniform(-2, 2, (4, 3))]),
        # through a Cholesky factor the function computes (a symmetric tangent: _spd's)
        "cho_solve": (
            lambda a, b: sg.linalg.cho_solve((sg.linalg.cholesky(_spd(a)), True), b),
            [_uniform(-2, 2, (3, 3)), _uniform(-2, 2, (3, 2), 1)],
        ),
        "cho_inverse": (
            lambda a: make("cho_inverse", [_spd(a), sg.linalg.cholesky(_spd(a))]),
            [_uniform(-2, 2, (3, 3))],
        ),
        "cho_logdet": (
            lambda a: make("cho_logdet", [_spd(a), sg.linalg.cholesky(_spd(a))]),
            [_uniform(-2, 2, (3, 3))],
        ),
        # a user's VJP rule, linear in the cotangent: forward mode is its transpose
        "custom": (
            lambda a, b: _custom_product(sg.sin(a), b),
            [_uniform(-2, 2, (2, 3)), _uniform(-2, 2, (2, 3), 1)],
        ),
    }
)


def _differentiable_ops():
    """Ops with at least one input that has a derivative rule (read off the registry)."""
    out = set()
    for name, op in OPS.items():
        if op.vjp_variadic is not None or any(r is not None for r in op.vjp):
            out.add(name)
    return out


def test_every_derivative_rule_has_a_forward_rule():
    # a VJP rule without a JVP rule (or the reverse) would make the two modes disagree
    for name, op in OPS.items():
        assert (op.vjp_variadic is None) == (op.jvp_variadic is None), name
        for index in range(max(len(op.vjp), 3)):
            has_vjp, has_jvp = op.vjp_rule(index) is not None, op.jvp_rule(index) is not None
            assert has_vjp == has_jvp, f"{name} input {index}: vjp {has_vjp}, jvp {has_jvp}"


def test_every_differentiable_op_has_a_jvp_case():
    missing = _differentiable_ops() - set(CASES)
    assert not missing, f"add a JVP case for {sorted(missing)}"


def _directional(f, arrays, tangents, h=1e-3):
    def at(e):
        return np.asarray(f(*[a + e * t for a, t in zip(arrays, tangents)]), dtype=np.float64)

    return (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h)


def check_jvp(build, arrays, backend="numpy", op=None):
    rng = np.random.default_rng(7)
    symbols = [sg.tensor(NAMES[i], a.shape) for i, a in enumerate(arrays)]
    out = build(*symbols)
    if op is not None:
        assert any(n.op == op for n in topo_order([out])), f"the case for {op} has no {op} node"
    tangents = [rng.normal(size=a.shape) for a in arrays]
    tangent = sg.jvp(out, symbols, [sg.constant(t) for t in tangents])
    assert tangent.shape == out.shape
    f = sg.compile([out, tangent], inputs=symbols, backend=backend)
    got = np.asarray(f(*arrays)[1], dtype=np.float64)
    numeric = _directional(lambda *xs: f(*xs)[0], arrays, tangents)
    tol = 1e-4 if out.dtype == "float32" else 1e-7
    np.testing.assert_allclose(got, numeric, rtol=tol, atol=tol * max(1.0, np.abs(numeric).max()))


@pytest.mark.parametrize("op", sorted(CASES))
def test_jvp_matches_central_differences(op):
    build, arrays = CASES[op]
    check_jvp(build, arrays, op=op)


@pytest.mark.parametrize("op", ["matmul", "concatenate", "sigmoid", "take_last"])
def test_jvp_matches_central_differences_numba(op):
    build, arrays = CASES[op]
    check_jvp(build, arrays, backend="numba", op=op)


def test_seed_forward_mode_z_equals_xy_plus_sin_x():
    x, y = sg.scalars("x y")
    z = x * y + sg.sin(x)
    dz_dx = sg.jvp(z, [x, y], [1.0, 0.0])
    dz_dy = sg.jvp(z, [x, y], [0.0, 1.0])
    f = sg.compile([dz_dx, dz_dy], inputs=[x, y], backend="numpy")
    got = f(0.7, -1.3)
    assert got[0] == pytest.approx(-1.3 + np.cos(0.7), rel=1e-15)
    assert got[1] == pytest.approx(0.7, rel=1e-15)


def test_jvp_of_a_symbol_the_expression_does_not_use_is_zero():
    x, y = sg.scalars("x y")
    t = sg.jvp(sg.sin(x), y, 1.0)
    assert sg.compile(t, inputs=[x, y], backend="numpy")(0.3, 0.4) == 0.0


def test_forward_mode_through_a_deep_recurrence_is_iterative_and_linear_in_size():
    x = sg.scalar("x")
    e = x
    depth = 10000
    for _ in range(depth):
        e = sg.sin(e) * 0.5 + x
    t = sg.jvp(e, x, 1.0)
    assert len(topo_order([t])) < 8 * depth


# ---------------------------------------------------------------- jacobian


def _maps():
    u = sg.tensor("u", (3,))
    wide = sg.stack([u[0] * u[1], sg.sin(u[2]), u[0] ** 2, sg.exp(u[1]) * u[2], sg.tanh(u[0] - u[2])])
    w = sg.tensor("w", (5,))
    narrow = sg.stack([sg.sum(w**2), w[0] * w[4], sg.log1p(sg.sum(sg.exp(w)))])
    return (u, wide), (w, narrow)


@pytest.mark.parametrize("which", [0, 1], ids=["3->5", "5->3"])
def test_jacobian_modes_agree_and_match_central_differences(which):
    sym, expr = _maps()[which]
    x0 = np.linspace(-0.4, 0.8, sym.shape[0])
    results = {}
    for mode in ("forward", "reverse", "auto"):
        J = sg.jacobian(expr, sym, mode=mode)
        assert J.shape == expr.shape + sym.shape
        results[mode] = np.asarray(sg.compile(J, inputs=[sym], backend="numpy")(x0))
    np.testing.assert_allclose(results["forward"], results["reverse"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(results["auto"], results["reverse"], rtol=1e-12, atol=1e-12)
    f = sg.compile(expr, inputs=[sym], backend="numpy")
    numeric = np.stack(
        [_directional(f, [x0], [np.eye(sym.shape[0])[j]]) for j in range(sym.shape[0])], axis=-1
    )
    np.testing.assert_allclose(results["auto"], numeric, rtol=1e-8, atol=1e-8)


def test_jacobian_auto_mode_follows_the_input_output_sizes():
    (u, wide), (w, narrow) = _maps()
    assert sg.jacobian_mode(wide, u) == ("forward", 3, 5)
    assert sg.jacobian_mode(narrow, w) == ("reverse", 5, 3)
    n = sg.tensor("s", ("n",))
    assert sg.jacobian_mode(sg.sin(n) * u[0], [u])[0] == "forward"  # symbolic output size
    assert sg.jacobian_mode(sg.sum(n) * wide, [n])[0] == "reverse"  # symbolic input size


def test_jacobian_of_several_tensors_in_the_numba_backend():
    A = sg.tensor("A", (2, 3))
    v = sg.tensor("v", (3,))
    y = sg.tanh(A @ v)
    JA, Jv = sg.jacobian(y, [A, v])
    assert JA.shape == (2, 2, 3) and Jv.shape == (2, 3)
    A0, v0 = np.arange(6.0).reshape(2, 3) / 10, np.array([0.3, -0.2, 0.5])
    gotA, gotv = sg.compile([JA, Jv], inputs=[A, v])(A0, v0)
    s = 1 - np.tanh(A0 @ v0) ** 2
    np.testing.assert_allclose(gotv, s[:, None] * A0, rtol=1e-13)
    expectedA = np.zeros((2, 2, 3))
    for i in range(2):
        expectedA[i, i] = s[i] * v0
    np.testing.assert_allclose(gotA, expectedA, rtol=1e-13)


def test_jvp_and_jacobian_errors_name_the_problem():
    x = sg.scalar("x")
    v = sg.tensor("v", (3,))
    with pytest.raises(ShapeError, match="tangent for v has shape"):
        sg.jvp(sg.sum(v), v, np.ones(2))
    with pytest.raises(UnsupportedError, match="one tangent per symbol"):
        sg.jvp(x * v, [x, v], [1.0])
    with pytest.raises(UnsupportedError, match="mode must be"):
        sg.jacobian(v * x, v, mode="sideways")
    with pytest.raises(UnsupportedError, match="wrt must be symbols"):
        sg.jvp(v * x, [x * 2], [1.0])
    n = sg.tensor("m", ("n",))
    with pytest.raises(
        UnsupportedError,
        match=r"the input size n and the output size n\*\*2 are both symbolic, and the Jacobian "
        r"through reshape \(shape \(n, 1\)\) cannot be written for every size",
    ):
        sg.jacobian(sg.outer(n, n), n)
    with pytest.raises(
        UnsupportedError, match=r"jacobian: M of shape \(n, k\) and the output .* vector inputs only"
    ):
        M = sg.tensor("M", ("n", "k"))
        sg.jacobian(M * 2.0, M)
    with pytest.raises(UnsupportedError, match=r"input m has the symbolic size n; a Jacobian or Hessian"):
        sg.jacobian(n * 2.0, n, mode="forward")


def _central_columns(f, x0, eps=1e-6):
    columns = []
    for j in range(x0.size):
        step = np.zeros_like(x0)
        step[j] = eps
        columns.append((np.asarray(f(x0 + step)) - np.asarray(f(x0 - step))) / (2 * eps))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("which", ["elementwise", "stencil", "matvec", "vecmat", "dot", "mixed"])
def test_jacobian_with_symbolic_sizes_on_both_sides_matches_central_differences_at_every_size(which):
    x, A, c = sg.tensor("x", ("n",)), sg.tensor("A", ("m", "n")), sg.scalar("c")
    built = {
        "elementwise": lambda xp, x, A, c: xp.sin(x) * x + c,
        "stencil": lambda xp, x, A, c: xp.concatenate(
            [x[:1] - 1.0, x[:-2] - 2 * x[1:-1] + x[2:], x[-1:] * x[0]]
        ),
        "matvec": lambda xp, x, A, c: xp.tanh(A @ x) * xp.sum(x**2, axis=0),
        "vecmat": lambda xp, x, A, c: xp.exp(x @ xp.transpose(A)),
        "dot": lambda xp, x, A, c: (x @ xp.cos(x)) * c,
        "mixed": lambda xp, x, A, c: xp.sum(A * xp.sin(x), axis=1) + x[2] * c,
    }[which]
    expr = built(sg, x, A, c)
    J = sg.jacobian(expr, x)
    assert J.shape == tuple(expr.shape) + tuple(x.shape)
    if expr.ndim:  # both sizes symbolic (a scalar output has one reverse pass)
        assert sg.jacobian_mode(expr, x)[0] == "whole"
    f = sg.compile(J, inputs=[x, A, c], backend="numpy")
    rng = np.random.default_rng(3)
    for n, m in ((5, 4), (9, 2)):  # one compiled function, every size
        x0, A0 = rng.normal(size=n), rng.normal(size=(m, n))
        want = _central_columns(lambda v: built(np, v, A0, 0.3), x0)
        np.testing.assert_allclose(f(x0, A0, 0.3), want, rtol=1e-6, atol=1e-7)
