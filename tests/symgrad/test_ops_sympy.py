"""Scalar derivative rules against ``sympy.diff``: first and second derivatives.

Each case is the op in symgrad and the same function written in SymPy; the truth
is ``sympy.lambdify(sympy.diff(...))`` evaluated at random points inside the op's
domain, away from kinks. Both backends run every case: numba's scalar code path
differs from its array one, and scalar kernels compile in a fraction of a second.
"""

import numpy as np
import pytest
import sympy

import symgrad as sg

X = sympy.Symbol("x", real=True)
A, B = sympy.symbols("a b", real=True)
BACKENDS = ["numpy", "numba"]

UNARY = {  # name: (SymPy function, domain)
    "neg": (-X, (-2, 2)),
    "abs": (sympy.Abs(X), (0.1, 2)),
    "exp": (sympy.exp(X), (-2, 2)),
    "expm1": (sympy.exp(X) - 1, (-2, 2)),
    "log": (sympy.log(X), (0.2, 3)),
    "log1p": (sympy.log(1 + X), (-0.5, 3)),
    "sqrt": (sympy.sqrt(X), (0.2, 3)),
    "square": (X**2, (-2, 2)),
    "reciprocal": (1 / X, (0.3, 2)),
    "sin": (sympy.sin(X), (-3, 3)),
    "cos": (sympy.cos(X), (-3, 3)),
    "tan": (sympy.tan(X), (-1.2, 1.2)),
    "arcsin": (sympy.asin(X), (-0.9, 0.9)),
    "arccos": (sympy.acos(X), (-0.9, 0.9)),
    "arctan": (sympy.atan(X), (-3, 3)),
    "sinh": (sympy.sinh(X), (-2, 2)),
    "cosh": (sympy.cosh(X), (-2, 2)),
    "tanh": (sympy.tanh(X), (-2, 2)),
    "sigmoid": (1 / (1 + sympy.exp(-X)), (-4, 4)),
    "relu": (sympy.Max(X, 0), (0.1, 2)),
    "softplus": (sympy.log(1 + sympy.exp(X)), (-4, 4)),
    "erf": (sympy.erf(X), (-2, 2)),
    "erfinv": (sympy.erfinv(X), (-0.9, 0.9)),
    "gammaln": (sympy.loggamma(X), (0.3, 5)),  # log Γ = log|Γ| for x > 0
    "digamma": (sympy.digamma(X), (0.3, 5)),
    "polygamma": (sympy.polygamma(1, X), (0.3, 5)),  # n = 1 (BUILD); n = 2 below
    "ndtr": (sympy.erfc(-X / sympy.sqrt(2)) / 2, (-3, 3)),
    "log_ndtr": (sympy.log(sympy.erfc(-X / sympy.sqrt(2)) / 2), (-3, 3)),  # SymPy: 2 - erfc(-z), cancels
    "ndtri": (sympy.sqrt(2) * sympy.erfinv(2 * X - 1), (0.05, 0.95)),
    "erfcinv": (sympy.erfcinv(X), (0.1, 1.9)),
    "logit": (sympy.log(X / (1 - X)), (0.05, 0.95)),
    # exp(-|x|) by branches (the derivative of Abs brings DiracDelta); both signs (NEGATIVE_TOO)
    "i0e": (sympy.besseli(0, X) * sympy.Piecewise((sympy.exp(-X), X >= 0), (sympy.exp(X), True)), (0.2, 4)),
    "i1e": (sympy.besseli(1, X) * sympy.Piecewise((sympy.exp(-X), X >= 0), (sympy.exp(X), True)), (0.2, 4)),
}
BUILD = {"polygamma": lambda x: sg.polygamma(1, x), "polygamma2": lambda x: sg.polygamma(2, x)}
# sign is piecewise constant: sympy says 2*DiracDelta(x); the central-difference tests pin its 0,
# as they do for floor, ceil, round and trunc (SymPy leaves their derivatives unevaluated)
PIECEWISE_CONSTANT = {"sign", "floor", "ceil", "round", "trunc"}
NEGATIVE_TOO = {"neg", "abs", "relu", "i0e", "i1e"}  # kinked ops: test both sides of the kink

BINARY = {  # name: (SymPy function of a, b, domain of a, domain of b)
    "add": (A + B, (-2, 2), (-2, 2)),
    "sub": (A - B, (-2, 2), (-2, 2)),
    "mul": (A * B, (-2, 2), (-2, 2)),
    "div": (A / B, (-2, 2), (0.5, 2)),
    "pow": (A**B, (0.5, 2), (-2, 2)),
    "maximum": (sympy.Max(A, B), (-2, -0.1), (0.1, 2)),
    "minimum": (sympy.Min(A, B), (0.1, 2), (-2, -0.1)),
    "arctan2": (sympy.atan2(A, B), (-2, 2), (0.3, 2)),
    "logaddexp": (sympy.log(sympy.exp(A) + sympy.exp(B)), (-4, 4), (-4, 4)),
    # a/b stays in (1.2, 1.9) and (-1.9, -1.3): away from the jumps at whole quotients
    "mod": (sympy.Mod(A, B), (1.5, 1.9), (1.0, 1.25)),
    "fmod": (
        A - B * sympy.Piecewise((sympy.floor(A / B), A / B >= 0), (sympy.ceiling(A / B), True)),
        (-1.9, -1.5),
        (1.0, 1.15),
    ),
    "xlogy": (A * sympy.log(B), (-2, 2), (0.3, 3)),
    "xlog1py": (A * sympy.log(1 + B), (-2, 2), (-0.7, 3)),
    "betaln": (sympy.log(sympy.beta(A, B)), (0.3, 5), (0.3, 5)),
}
# SymPy leaves floor'(x) (and Mod's partials) as Derivative/Subs objects: 0 wherever they exist


def _diff(expr, *symbols):
    expr = expr.rewrite(sympy.floor) if expr.has(sympy.Mod) else expr
    d = sympy.diff(expr, *symbols)
    return d.replace(lambda e: isinstance(e, (sympy.Derivative, sympy.Subs)), lambda e: sympy.Integer(0))


def _points(domain, kinked=False, count=5, seed=0):
    x = np.random.default_rng(seed).uniform(*domain, size=count)
    if kinked:
        x[::2] = -x[::2]
    return x


def _lambdify(args, expr):
    return sympy.lambdify(args, expr, modules=["scipy", "numpy"])


def test_every_unary_and_binary_op_has_a_sympy_case():
    from symgrad.ops.registry import OPS

    def math_ops(arity):  # the elementwise ops of the table that compute numbers, not bools
        return {
            n for n, op in OPS.items() if op.elementwise and op.lower and not op.boolean and op.arity == arity
        }

    assert sorted(UNARY) == sorted(math_ops(1) - PIECEWISE_CONSTANT)
    assert sorted(BINARY) == sorted(math_ops(2))


def _check_unary(names, backend, order):
    x = sg.scalar("x")
    outputs = []
    for name in names:
        e = BUILD[name](x) if name in BUILD else getattr(sg, name)(x)
        for _ in range(order):
            e = sg.grad(e, x)
        outputs.append(e)
    f = sg.compile(outputs, inputs=[x], backend=backend)
    for name, k in zip(names, range(len(names))):
        expr, domain = {**UNARY, **MORE}[name]
        truth = _lambdify(X, sympy.diff(expr, X, order))
        for point in _points(domain, kinked=name in NEGATIVE_TOO):
            got = f(point)[k]
            assert got == pytest.approx(float(truth(point)), rel=1e-12, abs=1e-12), (name, point)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_derivative_matches_sympy(op, backend):
    _check_unary([op], backend, 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", sorted(set(UNARY) - {"abs", "relu", "neg"}))
def test_unary_second_derivative_matches_sympy(op, backend):
    _check_unary([op], backend, 2)


# more cases of the ops above: polygamma of another order
MORE = {"polygamma2": (sympy.polygamma(2, X), (0.3, 5))}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", [1, 2])
def test_polygamma_of_order_two_derivatives_match_sympy(order, backend):
    _check_unary(["polygamma2"], backend, order)


def _check_binary(name, backend, order):
    a, b = sg.scalars("a b")
    expr, dom_a, dom_b = BINARY[name]
    first = sg.grad(getattr(sg, name)(a, b), [a, b])
    if order == 1:
        outputs, truths = first, [_diff(expr, A), _diff(expr, B)]
    else:
        outputs = [*sg.grad(first[0], [a, b]), *sg.grad(first[1], [a, b])]
        truths = [
            sympy.diff(expr, A, A),
            sympy.diff(expr, A, B),
            sympy.diff(expr, B, A),
            sympy.diff(expr, B, B),
        ]
    f = sg.compile(outputs, inputs=[a, b], backend=backend)
    for pa, pb in zip(_points(dom_a, seed=1), _points(dom_b, seed=2)):
        got = f(pa, pb)
        for k, truth in enumerate(truths):
            want = float(_lambdify((A, B), truth)(pa, pb))
            assert got[k] == pytest.approx(want, rel=1e-12, abs=1e-12), (name, k, pa, pb)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_partial_derivatives_match_sympy(op, backend):
    _check_binary(op, backend, 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["mul", "div", "pow", "arctan2", "logaddexp", "xlogy", "xlog1py", "betaln"])
def test_binary_second_derivatives_match_sympy(op, backend):
    _check_binary(op, backend, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pow_with_constant_exponent_and_base(backend):
    x = sg.scalar("x")
    f = sg.compile(
        [
            sg.grad(x**3.5, x),
            sg.grad(sg.grad(x**3.5, x), x),
            sg.grad(2.5**x, x),
            sg.grad(sg.grad(2.5**x, x), x),
        ],
        inputs=[x],
        backend=backend,
    )
    truths = [
        sympy.diff(X**3.5, X),
        sympy.diff(X**3.5, X, 2),
        sympy.diff(2.5**X, X),
        sympy.diff(2.5**X, X, 2),
    ]
    for point in _points((0.3, 2)):
        for got, truth in zip(f(point), truths):
            assert got == pytest.approx(float(_lambdify(X, truth)(point)), rel=1e-12)
