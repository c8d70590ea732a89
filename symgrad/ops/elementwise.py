"""Elementwise ops: unary maths, binary arithmetic with numpy broadcasting, comparisons, where.

Conventions at non-smooth points (the subgradient each rule picks):

- ``abs'(0) = sign(0) = 0``; ``sign' = 0`` everywhere.
- ``relu'(0) = 0``; ``maximum(x, 0)``, ``maximum(0, x)``, ``np.clip(x, 0, inf)`` and
  ``where(x > 0, x, 0)`` give the same; ``(x + abs(x)) / 2`` gives 0.5 (the sum rule).
- ``where(c, a, b)`` follows the branch ``c`` selects, the user's explicit choice:
  ``where(x >= 0, x, 0)'(0) = 1``, ``where(x > 0, x, -x)'(0) = -1``.
- ``maximum(a, b)`` / ``minimum(a, b)`` at a tie route the whole gradient to one
  argument: the one that sorts last in canonical order, which is the constant
  when one operand is a constant (so ``maximum(x, 0)`` is relu, and a clamp has
  slope 0 at a constant bound). Canonical order of two symbolic operands is the
  order they were created in: the gradient at a tie goes to the younger node.
  The forward rule is the same pointwise factor, so a tangent at a tie is the
  directional derivative of that choice. ``logaddexp`` is smooth and is not built
  on ``maximum``: a tie gives 1/2 to each operand.
- ``sqrt'(0) = inf``, ``log'(0) = inf`` as the maths says; ``(x**b)'`` with
  respect to ``b`` is 0 where ``x == 0``, and with respect to ``x`` is 0 where ``b == 0``.
- Comparisons, ``sign``, ``floor``-like ops and casts to int/bool have zero
  derivative; integer and bool values never get a gradient.
- ``floor``, ``ceil``, ``round`` (half to even, numpy's ``rint``) and ``trunc`` have
  derivative 0 everywhere, at their jumps too. ``mod(a, b)`` (numpy's ``remainder``, the
  sign of ``b``, Python's ``%``) has ``d/da = 1`` and ``d/db = -floor(a/b)``, and
  ``fmod(a, b)`` (the sign of ``a``, C's ``fmod``) ``d/da = 1`` and ``d/db = -trunc(a/b)``,
  at their jumps too: where ``a/b`` is a whole number ``k`` (the remainder jumps there as
  ``b`` moves), ``d/da = 1`` (the slope on both sides) and ``d/db = -k``, one of the two
  one-sided slopes.
- ``where(c, a, b)`` sends ``g`` to ``a`` where ``c`` and to ``b`` elsewhere, and
  the branch not taken gets exactly 0 even when it is nan or inf there
  (``grad(where(x > 0, sqrt(x), 0))`` at x = -1 is 0): the reverse pass keeps
  ``c`` as a mask on every adjoint below the branch (see ``autodiff``).
"""

import math

import numpy as np

from ..errors import UnsupportedError
from ..graph import Expr, as_dtype, broadcast_shapes, float_of, is_float, promote
from .registry import POINTWISE, register, make, as_expr

# ---------------------------------------------------------------- shape/dtype rules


def _same(inputs, attrs):
    (x,) = inputs
    return x.shape, x.dtype


def _broadcast(inputs, attrs, what="operands"):
    return broadcast_shapes(*[i.shape for i in inputs], what=what)


def _arith(inputs, attrs):
    return _broadcast(inputs, attrs), promote(*[i.dtype for i in inputs])


def _float_binary(inputs, attrs):
    return _broadcast(inputs, attrs), float_of(promote(*[i.dtype for i in inputs]))


def _compare(inputs, attrs):
    return _broadcast(inputs, attrs), "bool"


def _logical(inputs, attrs):
    for i in inputs:
        if i.dtype != "bool":
            raise UnsupportedError(f"logical ops take bool operands, got {i.dtype}")
    return _broadcast(inputs, attrs), "bool"


def _where(inputs, attrs):
    c, a, b = inputs
    if c.dtype != "bool":
        raise UnsupportedError(f"where(cond, a, b): cond must be bool, got {c.dtype}")
    return broadcast_shapes(c.shape, a.shape, b.shape, what="where(cond, a, b)"), promote(a.dtype, b.dtype)


# ---------------------------------------------------------------- builders


def _float(x):
    """ints and bools are computed in float64 by float-valued ops."""
    x = as_expr(x)
    return x if is_float(x.dtype) else cast(x, "float64")


def _pair(a, b):
    if isinstance(a, Expr):
        return a, as_expr(b, like=a)
    b = as_expr(b)
    return as_expr(a, like=b), b


def cast(x, dtype):
    """``x`` converted to ``dtype`` (``astype``)."""
    x = as_expr(x)
    return make("cast", [x], dtype=as_dtype(dtype))


def add(a, b):
    a, b = _pair(a, b)
    return make("add", [a, b])


def sub(a, b):
    a, b = _pair(a, b)
    return make("sub", [a, b])


def mul(a, b):
    a, b = _pair(a, b)
    return make("mul", [a, b])


def div(a, b):
    a, b = _pair(a, b)
    if not is_float(a.dtype) and not is_float(b.dtype):
        a, b = _float(a), _float(b)
    return make("div", [a, b])


def pow(a, b):
    a, b = _pair(a, b)
    if not is_float(a.dtype) and not is_float(b.dtype):
        a, b = _float(a), _float(b)
    return make("pow", [a, b])


def maximum(a, b):
    a, b = _pair(a, b)
    return make("maximum", [a, b])


def minimum(a, b):
    a, b = _pair(a, b)
    return make("minimum", [a, b])


def arctan2(a, b):
    a, b = _pair(a, b)
    return make("arctan2", [_float(a), _float(b)])


def logaddexp(a, b):
    """log(exp(a) + exp(b)) without overflow: ``max(a, b) + log1p(exp(-|a - b|))``.

    One op with the smooth derivatives ``sigmoid(a - b)`` and ``sigmoid(b - a)``, so a
    tie gets 1/2 each (not the kink rules' all-to-one-operand), and a compiled kernel
    computes ``exp(-|a - b|)`` once for the value and its derivative."""
    a, b = _pair(a, b)
    return make("logaddexp", [_float(a), _float(b)])


def mod(a, b):
    """The remainder with the sign of ``b`` (``np.mod``, ``np.remainder``, Python's ``%``)."""
    a, b = _pair(a, b)
    return make("mod", [a, b])


def fmod(a, b):
    """The remainder with the sign of ``a`` (``np.fmod``, C's ``fmod``)."""
    a, b = _pair(a, b)
    if not is_float(promote(a.dtype, b.dtype)):
        # numba's integer np.fmod disagrees with numpy's for negative operands (0.68:
        # fmod(-7, 3) gives 0); the integer remainder with a's sign, exactly (0 where b == 0)
        return mul(sign(a), mod(abs(a), abs(b)))
    return make("fmod", [a, b])


remainder = mod


def _compare_builder(op):
    def build(a, b):
        a, b = _pair(a, b)
        return make(op, [a, b])

    build.__name__ = op
    return build


less = _compare_builder("less")
less_equal = _compare_builder("less_equal")
greater = _compare_builder("greater")
greater_equal = _compare_builder("greater_equal")
equal = _compare_builder("equal")
not_equal = _compare_builder("not_equal")


def logical_and(a, b):
    return make("logical_and", list(_pair(a, b)))


def logical_or(a, b):
    return make("logical_or", list(_pair(a, b)))


def logical_not(x):
    return make("logical_not", [as_expr(x)])


def isfinite(x):
    return make("isfinite", [as_expr(x)])


def where(cond, a, b):
    """``a`` where ``cond`` holds, else ``b``, with numpy broadcasting of all three."""
    cond = as_expr(cond)
    a, b = _pair(a, b)
    if cond.dtype != "bool":
        cond = not_equal(cond, 0)
    return make("where", [cond, a, b])


def stop_gradient(x):
    """``x`` itself, with zero derivative."""
    return make("stop_gradient", [as_expr(x)])


# unary builders are generated from the table below
_UNARY_FLOAT = set()


def _unary_builder(name, float_only):
    def build(x):
        x = as_expr(x)
        if float_only:
            x = _float(x)
        return make(name, [x])

    build.__name__ = name
    build.__doc__ = f"elementwise {name}"
    return build


def unary(name, impl, vjp=None, note="", float_only=True, infer=_same):
    # the rule is a pointwise factor (g * f'(x)), so it maps a tangent forward too
    register(name, infer=infer, impl=impl, vjp=(vjp,) if vjp else (), jvp=POINTWISE, note=note)
    builder = _unary_builder(name, float_only)
    globals()[name] = builder
    return builder


# ---------------------------------------------------------------- numpy definitions of the composites


def _np_sigmoid(x):
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _np_softplus(x):
    x = np.asarray(x)
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype)


def _np_erf(x):
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _np_relu(x):
    return np.maximum(x, 0).astype(np.asarray(x).dtype)


# ---------------------------------------------------------------- the unary table
# rule(g, x, out): the adjoint of x given the adjoint g of out = op(x)

unary("neg", np.negative, lambda g, x, out: -g, "d/dx -x = -1", float_only=False)
unary("abs", np.abs, lambda g, x, out: g * sign(x), "d/dx |x| = sign(x), 0 at 0", float_only=False)
unary("sign", np.sign, None, "d/dx sign(x) = 0", float_only=False)
unary("exp", np.exp, lambda g, x, out: g * out, "d/dx exp(x) = exp(x)")
unary("expm1", np.expm1, lambda g, x, out: g * (out + 1), "d/dx expm1(x) = exp(x)")
unary("log", np.log, lambda g, x, out: g / x, "d/dx log(x) = 1/x")
unary("log1p", np.log1p, lambda g, x, out: g / (1 + x), "d/dx log1p(x) = 1/(1+x)")
unary("sqrt", np.sqrt, lambda g, x, out: g / (2 * out), "d/dx sqrt(x) = 1/(2 sqrt(x))")
unary("square", np.square, lambda g, x, out: g * (2 * x), "d/dx x^2 = 2x", float_only=False)
unary("reciprocal", lambda x: 1 / x, lambda g, x, out: -g * square(out), "d/dx 1/x = -1/x^2")
unary("sin", np.sin, lambda g, x, out: g * cos(x), "d/dx sin(x) = cos(x)")
unary("cos", np.cos, lambda g, x, out: -(g * sin(x)), "d/dx cos(x) = -sin(x)")
unary("tan", np.tan, lambda g, x, out: g * (1 + square(out)), "d/dx tan(x) = 1 + tan^2(x)")
unary("arcsin", np.arcsin, lambda g, x, out: g / sqrt(1 - square(x)), "d/dx arcsin(x) = 1/sqrt(1-x^2)")
unary("arccos", np.arccos, lambda g, x, out: -g / sqrt(1 - square(x)), "d/dx arccos(x) = -1/sqrt(1-x^2)")
unary("arctan", np.arctan, lambda g, x, out: g / (1 + square(x)), "d/dx arctan(x) = 1/(1+x^2)")
unary("sinh", np.sinh, lambda g, x, out: g * cosh(x), "d/dx sinh(x) = cosh(x)")
unary("cosh", np.cosh, lambda g, x, out: g * sinh(x), "d/dx cosh(x) = sinh(x)")
unary("tanh", np.tanh, lambda g, x, out: g * (1 - square(out)), "d/dx tanh(x) = 1 - tanh^2(x)")
# s (1 - s) spelled s(x) s(-x): 1 - s would round to 0 where s is within 1e-16 of 1
unary("sigmoid", _np_sigmoid, lambda g, x, out: g * (out * sigmoid(-x)), "d/dx sigmoid(x) = s(x) s(-x)")
unary(
    "relu", _np_relu, lambda g, x, out: where(x > 0, g, 0), "d/dx relu(x) = [x > 0], 0 at 0", float_only=False
)
unary("softplus", _np_softplus, lambda g, x, out: g * sigmoid(x), "d/dx softplus(x) = sigmoid(x)")
unary(
    "erf",
    _np_erf,
    lambda g, x, out: g * ((2 / math.sqrt(math.pi)) * exp(-square(x))),
    "d/dx erf(x) = 2/sqrt(pi) exp(-x^2)",
)
unary(
    "isfinite",
    np.isfinite,
    None,
    "not differentiable",
    float_only=False,
    infer=lambda inputs, attrs: (inputs[0].shape, "bool"),
)
unary(
    "logical_not",
    np.logical_not,
    None,
    "not differentiable",
    float_only=False,
    infer=lambda inputs, attrs: (inputs[0].shape, "bool"),
)


def _rounding(name, impl, note):
    """A piecewise-constant rounding op; an integer or bool operand is already whole and is
    returned as it is (numpy 2's ``np.floor`` of an integer array keeps its dtype)."""
    unary(name, impl, None, note, float_only=False)

    def build(x):
        x = as_expr(x)
        return make(name, [x]) if is_float(x.dtype) else x

    build.__name__ = name
    build.__doc__ = f"elementwise {name} ({note})"
    globals()[name] = build
    return build


floor = _rounding("floor", np.floor, "d/dx floor(x) = 0, at the jumps too")
ceil = _rounding("ceil", np.ceil, "d/dx ceil(x) = 0, at the jumps too")
# half to even, as np.round, np.rint and Python's round
round = _rounding("round", np.rint, "d/dx round(x) = 0, at the jumps too")
trunc = _rounding("trunc", np.trunc, "d/dx trunc(x) = 0, at the jumps too")
register("stop_gradient", infer=_same, impl=lambda x: x, vjp=(), note="zero derivative")


def _cast_vjp(g, x, out):
    return cast(g, x.dtype) if is_float(x.dtype) and is_float(out.dtype) else None


def _cast_jvp(t, x, out):
    return cast(t, out.dtype) if is_float(x.dtype) and is_float(out.dtype) else None


register(
    "cast",
    infer=lambda inputs, attrs: (inputs[0].shape, attrs["dtype"]),
    impl=lambda x, dtype: np.asarray(x).astype(dtype),
    vjp=(_cast_vjp,),
    jvp=(_cast_jvp,),
    note="d/dx cast(x) = 1",
)
# the unary builders defined through globals() above, named for linters and readers
neg, abs, sign, exp, expm1, log, log1p, sqrt, square, reciprocal = (
    globals()[n] for n in "neg abs sign exp expm1 log log1p sqrt square reciprocal".split()
)
sin, cos, tan, arcsin, arccos, arctan, sinh, cosh, tanh = (
    globals()[n] for n in "sin cos tan arcsin arccos arctan sinh cosh tanh".split()
)
sigmoid, relu, softplus, erf = (globals()[n] for n in "sigmoid relu softplus erf".split())


# ---------------------------------------------------------------- binary ops
# rule(g, a, b, out) for each operand; broadcasting is undone by the autodiff pass.
# jvp=POINTWISE: each rule is a pointwise factor, so it also maps a tangent forward.


def _pow_base_rule(g, a, b, out):
    # d/da a^b = b a^(b-1); defined as 0 where b == 0 (else 0 * 0^-1 = nan at a == 0)
    if b.op == "constant" and np.all(b.value != 0):
        return g * (b * a ** (b - 1))
    return g * where(b == 0, 0, b * a ** (b - 1))


def _pow_exponent_rule(g, a, b, out):
    # d/db a^b = a^b log(a); defined as 0 where a == 0 (the limit for b > 0)
    safe_a = where(a == 0, 1, a)
    return g * (out * log(safe_a))


register(
    "add",
    _arith,
    np.add,
    (lambda g, a, b, out: g, lambda g, a, b, out: g),
    jvp=POINTWISE,
    note="d(a+b) = da + db",
    commutative=True,
)
register(
    "sub",
    _arith,
    np.subtract,
    (lambda g, a, b, out: g, lambda g, a, b, out: -g),
    jvp=POINTWISE,
    note="d(a-b) = da - db",
)
register(
    "mul",
    _arith,
    np.multiply,
    (lambda g, a, b, out: g * b, lambda g, a, b, out: g * a),
    jvp=POINTWISE,
    note="d(ab) = b da + a db",
    commutative=True,
)
register(
    "div",
    _float_binary,
    np.true_divide,
    (lambda g, a, b, out: g / b, lambda g, a, b, out: -(g * out) / b),
    jvp=POINTWISE,
    note="d(a/b) = da/b - (a/b) db/b",
)
register(
    "pow",
    _float_binary,
    np.power,
    (_pow_base_rule, _pow_exponent_rule),
    jvp=POINTWISE,
    note="d(a^b) = b a^(b-1) da + a^b log(a) db",
)
register(
    "maximum",
    _arith,
    np.maximum,
    (lambda g, a, b, out: where(a > b, g, 0), lambda g, a, b, out: where(a > b, 0, g)),
    jvp=POINTWISE,
    note="d max(a, b): to a where a > b, else to b",
    commutative=True,
)
register(
    "minimum",
    _arith,
    np.minimum,
    (lambda g, a, b, out: where(a < b, g, 0), lambda g, a, b, out: where(a < b, 0, g)),
    jvp=POINTWISE,
    note="d min(a, b): to a where a < b, else to b",
    commutative=True,
)
register(
    "logaddexp",
    _float_binary,
    np.logaddexp,
    (lambda g, a, b, out: g * sigmoid(a - b), lambda g, a, b, out: g * sigmoid(b - a)),
    jvp=POINTWISE,
    note="d logaddexp(a, b) = sigmoid(a - b) da + sigmoid(b - a) db",
)
register(
    "mod",
    _arith,
    np.remainder,
    (lambda g, a, b, out: g, lambda g, a, b, out: -(g * floor(a / b))),
    jvp=POINTWISE,
    note="d mod(a, b) = da - floor(a/b) db",
)
register(
    "fmod",
    _arith,
    np.fmod,
    (lambda g, a, b, out: g, lambda g, a, b, out: -(g * trunc(a / b))),
    jvp=POINTWISE,
    note="d fmod(a, b) = da - trunc(a/b) db",
)
register(
    "arctan2",
    _float_binary,
    np.arctan2,
    (
        lambda g, a, b, out: g * b / (square(a) + square(b)),
        lambda g, a, b, out: -(g * a) / (square(a) + square(b)),
    ),
    jvp=POINTWISE,
    note="d atan2(a, b) = (b da - a db)/(a^2 + b^2)",
)

for _name, _impl in [
    ("less", np.less),
    ("less_equal", np.less_equal),
    ("greater", np.greater),
    ("greater_equal", np.greater_equal),
    ("equal", np.equal),
    ("not_equal", np.not_equal),
]:
    register(_name, _compare, _impl, note="not differentiable", commutative=_name in ("equal", "not_equal"))
register("logical_and", _logical, np.logical_and, commutative=True)
register("logical_or", _logical, np.logical_or, commutative=True)
register(
    "where",
    _where,
    np.where,
    (None, lambda g, c, a, b, out: where(c, g, 0), lambda g, c, a, b, out: where(c, 0, g)),
    jvp=POINTWISE,
    note="d where(c, a, b): to a where c, else to b",
)

UNARY_OPS = (
    "neg abs sign exp expm1 log log1p sqrt square reciprocal sin cos tan arcsin arccos "
    "arctan sinh cosh tanh sigmoid relu softplus erf floor ceil round trunc"
).split()
BINARY_OPS = "add sub mul div pow maximum minimum arctan2 logaddexp mod fmod".split()
COMPARISON_OPS = "less less_equal greater greater_equal equal not_equal".split()
