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

import importlib
import math

import numpy as np
import sympy

from ..errors import UnsupportedError
from ..graph import Expr, as_dtype, broadcast_shapes, float_of, is_float, promote
from .registry import OPS, POINTWISE, TRAITS, register, make, as_expr

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


# ---------------------------------------------------------------- declaring an elementwise op


def _unary_builder(name, float_only, whole_stays=False):
    def build(x):
        x = as_expr(x)
        if whole_stays and not is_float(x.dtype):
            return x  # an integer or bool is already whole (numpy 2's np.floor keeps its dtype)
        if float_only:
            x = _float(x)
        return make(name, [x])

    build.__name__ = name
    build.__doc__ = f"elementwise {name}"
    return build


def _binary_builder(name, float_only):
    def build(a, b):
        a, b = _pair(a, b)
        if float_only:
            a, b = _float(a), _float(b)
        return make(name, [a, b])

    build.__name__ = name
    build.__doc__ = f"elementwise {name}"
    return build


def _declare(name, arity, impl, vjp, note, infer, builder, commutative, spellings):
    """Register an elementwise op with numpy's spelling of ``name`` as the default: the ufunc
    it traces from and its lowering ``np.<name>(...)`` are ``np.<name>`` when numpy has that
    ufunc, and its numpy definition (``impl``) is the first ufunc it traces from. The parser
    knows it by its name. Keywords override each (see ``registry``)."""
    unknown = set(spellings) - TRAITS
    if unknown:
        raise TypeError(
            f"op {name!r}: unknown keyword(s) {sorted(unknown)}; the record's fields are {sorted(TRAITS)}"
        )
    ufunc = getattr(np, name, None)
    ufunc = ufunc if isinstance(ufunc, np.ufunc) else None
    operands = ", ".join(f"{{{k}}}" for k in range(arity))
    if ufunc is not None:
        spellings.setdefault("lower", f"np.{name}({operands})")
    numpy_spelling = spellings.pop("numpy", (ufunc,) if ufunc is not None else ())
    spellings["numpy"] = numpy_spelling if isinstance(numpy_spelling, tuple) else (numpy_spelling,)
    parse = spellings.pop("parse", (name,))
    spellings["parse"] = parse if isinstance(parse, tuple) else (parse,)
    if impl is None:  # the ufunc it traces from
        impl = next((u for u in spellings["numpy"] if isinstance(u, np.ufunc)), None)
    register(
        name,
        infer=infer,
        impl=impl,
        vjp=vjp,
        jvp=POINTWISE,  # the rules are pointwise factors: they map a tangent forward too
        note=note,
        commutative=commutative,
        elementwise=True,
        arity=arity,
        builder=builder,
        **spellings,
    )
    return builder


def unary(
    name, vjp=None, note="", *, impl=None, float_only=True, whole_stays=False, infer=_same, **spellings
):
    """Declare the elementwise op ``name(x)``; ``vjp(g, x, out)`` is its rule (None: not
    differentiable). Returns the builder (ints and bools become float64 when ``float_only``;
    ``whole_stays``: an integer or bool operand is returned as it is)."""
    builder = spellings.pop("builder", None) or _unary_builder(name, float_only, whole_stays)
    return _declare(name, 1, impl, (vjp,) if vjp else (), note, infer, builder, False, spellings)


def binary(
    name, vjp=(), note="", *, impl=None, float_only=False, infer=_arith, commutative=False, **spellings
):
    """Declare the elementwise op ``name(a, b)`` with numpy broadcasting; ``vjp`` is one
    rule ``(g, a, b, out)`` per operand (broadcasting is undone by the autodiff pass).
    Returns the builder (ints and bools become float64 when ``float_only``)."""
    builder = spellings.pop("builder", None) or _binary_builder(name, float_only)
    return _declare(name, 2, impl, vjp, note, infer, builder, commutative, spellings)


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


def _np_xlogy(x, y):
    x, y = np.asarray(x), np.asarray(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where((x == 0) & ~np.isnan(y), 0.0, x * np.log(y))
    return out.astype(np.result_type(x, y))


def _np_special(name):
    """scipy.special.<name> as an op's numpy definition, imported on the first call (SciPy's
    import is paid only by a process that folds or runs such an op on the numpy backend); the
    result in the float dtype of the last operand (a float32 operand gives float32)."""

    def impl(*args):
        out = getattr(importlib.import_module("scipy.special"), name)(*args)
        dtype = np.result_type(args[-1])
        return np.asarray(out, dtype=dtype if dtype.kind == "f" else np.float64)

    impl.__name__ = name
    return impl


def _np_polygamma(x, n):
    return _np_special("polygamma")(n, x)


def polygamma(n: int, x):
    """ψ^(n)(x), the n-th derivative of digamma (SciPy's ``polygamma(n, x)``), for an order ``n``
    that is a non-negative Python integer (an attribute of the op, not an operand); ``n = 0`` is
    ``digamma(x)``."""
    if isinstance(n, Expr) and n.op == "constant" and n.ndim == 0 and n.dtype.startswith("int"):
        n = int(n.value)  # SymPy's polygamma(Integer, x) converts its order to a constant
    if isinstance(n, np.integer):
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise UnsupportedError(
            f"polygamma(n, x): the order n must be a non-negative integer (a Python int), got {n!r:.60}"
        )
    x = _float(x)
    return digamma(x) if n == 0 else make("polygamma", [x], n=n)


_SQRT_2PI = math.sqrt(2 * math.pi)
_INV_SQRT_2PI = 1 / _SQRT_2PI
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# φ(x)/Φ(x) = -x / S(x) for x < -20, S = 1 + sum_k (-1)^k (2k-1)!! / x^2k (log_ndtr's series, k = 1..10)
_MILLS_SERIES = (-1.0, 3.0, -15.0, 105.0, -945.0, 10395.0, -135135.0, 2027025.0, -34459425.0, 654729075.0)


def _log_ndtr_slope(x, out):
    """d/dx log Φ(x) = φ(x)/Φ(x): exp(-x^2/2 - log Φ(x)) / sqrt(2 pi) (neither underflows nor
    divides 0 by 0) for x >= -20; below, where that difference of two large terms would keep only
    an absolute accuracy (1e-13 relative at x = -40, 6e-11 at -1000), -x / S(x) from the
    asymptotic series of Φ, to an ulp or two (and its own derivative as accurate)."""
    tail = x < -20
    z = 1 / square(where(tail, x, -20.0))
    s = _MILLS_SERIES[-1]
    for c in reversed(_MILLS_SERIES[:-1]):
        s = s * z + c
    return where(tail, -x / (1 + z * s), exp((-0.5 * square(x) - out) - _LOG_SQRT_2PI))


def _i1e_slope(x, out):
    """i1e'(x) = i0e(x) - i1e(x) (sign(x) + 1/x), and its limit 1/2 at x = 0."""
    at_zero = x == 0
    return where(at_zero, 0.5, i0e(x) - out * (sign(x) + 1 / where(at_zero, 1.0, x)))


def _np_betaln(a, b):
    """SciPy's betaln in the float dtype of both operands (float32 only when both are)."""
    out = _np_special("betaln")(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    dtype = np.result_type(a, b)
    return out.astype(dtype if dtype.kind == "f" else np.float64)


def _np_xlog1py(x, y):
    x, y = np.asarray(x), np.asarray(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where((x == 0) & ~np.isnan(y), 0.0, x * np.log1p(y))
    return out.astype(np.result_type(x, y))


def _sympy_trunc(x):
    return sympy.Piecewise((sympy.floor(x), x >= 0), (sympy.ceiling(x), True))


_BOOL = dict(float_only=False, infer=lambda inputs, attrs: (inputs[0].shape, "bool"), boolean=True)

# ---------------------------------------------------------------- the unary ops
# rule(g, x, out): the adjoint of x given the adjoint g of out = op(x)
# fmt: off
neg = unary("neg", lambda g, x, out: -g, "d/dx -x = -1", float_only=False, lower="-{0}", numpy=np.negative,
            parse=("neg", "negative"), linear=True, to_sympy=lambda a: -a)
abs = unary("abs", lambda g, x, out: g * sign(x), "d/dx |x| = sign(x), 0 at 0", float_only=False,
            numpy=(np.absolute, np.fabs), sympy=sympy.Abs)
sign = unary("sign", None, "d/dx sign(x) = 0", float_only=False, sympy=sympy.sign)
exp = unary("exp", lambda g, x, out: g * out, "d/dx exp(x) = exp(x)", sympy=sympy.exp, vector=True)
expm1 = unary("expm1", lambda g, x, out: g * (out + 1), "d/dx expm1(x) = exp(x)", libm=True, vector="tile",
              to_sympy=lambda a: sympy.exp(a) - 1)
log = unary("log", lambda g, x, out: g / x, "d/dx log(x) = 1/x", sympy=sympy.log, vector=True)
log1p = unary("log1p", lambda g, x, out: g / (1 + x), "d/dx log1p(x) = 1/(1+x)", vector=True,
              to_sympy=lambda a: sympy.log(1 + a))
sqrt = unary("sqrt", lambda g, x, out: g / (2 * out), "d/dx sqrt(x) = 1/(2 sqrt(x))", to_sympy=sympy.sqrt)
def _constant_seed(g):
    """Is the adjoint ``g`` a constant (or a constant broadcast): a seed, known while building?"""
    return g.op == "constant" or (g.op == "broadcast_to" and g.inputs[0].op == "constant")


def _square_vjp(g, x, out):
    # (2 g) x and g (2 x) are equal floats (a doubling is exact) but where the doubled factor
    # overflows. A constant seed takes the 2 first, folded into it: 0.5 * sum(x^2) differentiates
    # to x itself (no multiply, no overflow at 2x). Any other adjoint takes g (2 x): 2x is ready
    # before g is, one multiply fewer on the path from g
    return (2 * g) * x if _constant_seed(g) else g * (2 * x)


square = unary("square", _square_vjp, "d/dx x^2 = 2x", float_only=False,
               to_sympy=lambda a: a**2)
reciprocal = unary("reciprocal", lambda g, x, out: -g * square(out), "d/dx 1/x = -1/x^2",
                   impl=lambda x: 1 / x, to_sympy=lambda a: 1 / a)
# on SIMD lanes, sin and cos of one operand are one vsincos call (one argument reduction); scalar
# code calls libm: the runtime's arithmetic sin and cos (_rt.sin, _rt.cos, _rt.sincos), inlined by
# numba, cost every kernel 0.1-0.3 s of type inference for a few ns a call; a rolled loop's body
# calls them as cached functions (_rt.ssin, _rt.scos: serial)
sin = unary("sin", lambda g, x, out: g * cos(x), "d/dx sin(x) = cos(x)", sympy=sympy.sin, vector=True,
            lanes_range=True, pair=("cos", "sincos"), serial=True)
cos = unary("cos", lambda g, x, out: -(g * sin(x)), "d/dx cos(x) = -sin(x)", sympy=sympy.cos,
            vector=True, lanes_range=True, serial=True)
tan = unary("tan", lambda g, x, out: g * (1 + square(out)), "d/dx tan(x) = 1 + tan^2(x)", sympy=sympy.tan,
            vector=True, lanes_range=True)
arcsin = unary("arcsin", lambda g, x, out: g / sqrt(1 - square(x)), "d/dx arcsin(x) = 1/sqrt(1-x^2)",
               sympy=sympy.asin, libm=True, vector="tile")
arccos = unary("arccos", lambda g, x, out: -g / sqrt(1 - square(x)), "d/dx arccos(x) = -1/sqrt(1-x^2)",
               sympy=sympy.acos, libm=True, vector="tile")
arctan = unary("arctan", lambda g, x, out: g / (1 + square(x)), "d/dx arctan(x) = 1/(1+x^2)",
               sympy=sympy.atan, vector=True)
sinh = unary("sinh", lambda g, x, out: g * cosh(x), "d/dx sinh(x) = cosh(x)", sympy=sympy.sinh, libm=True,
            vector="tile")
cosh = unary("cosh", lambda g, x, out: g * sinh(x), "d/dx cosh(x) = sinh(x)", sympy=sympy.cosh, libm=True,
            vector="tile")
tanh = unary("tanh", lambda g, x, out: g * (1 - square(out)), "d/dx tanh(x) = 1 - tanh^2(x)",
             sympy=sympy.tanh, vector=True)
# s (1 - s) spelled s(x) s(-x): 1 - s would round to 0 where s is within 1e-16 of 1
sigmoid = unary("sigmoid", lambda g, x, out: g * (out * sigmoid(-x)), "d/dx sigmoid(x) = s(x) s(-x)",
                impl=_np_sigmoid, lower="_rt.sigmoid({0})", numpy="scipy.special.expit", vector=True,
                to_sympy=lambda a: 1 / (1 + sympy.exp(-a)))
relu = unary("relu", lambda g, x, out: where(x > 0, g, 0), "d/dx relu(x) = [x > 0], 0 at 0", float_only=False,
             impl=_np_relu, lower="_rt.relu({0})", to_sympy=lambda a: sympy.Max(a, 0))
softplus = unary("softplus", lambda g, x, out: g * sigmoid(x), "d/dx softplus(x) = sigmoid(x)",
                 impl=_np_softplus, lower="_rt.softplus({0})", vector=True,
                 to_sympy=lambda a: sympy.log(1 + sympy.exp(a)))
erf = unary("erf", lambda g, x, out: g * ((2 / math.sqrt(math.pi)) * exp(-square(x))),
            "d/dx erf(x) = 2/sqrt(pi) exp(-x^2)", impl=_np_erf, lower="_rt.erf({0})",
            numpy="scipy.special.erf", sympy=sympy.erf, libm=True, vector="tile")
erfinv = unary("erfinv", lambda g, x, out: g * ((math.sqrt(math.pi) / 2) * exp(square(out))),
                "d/dx erfinv(x) = sqrt(pi)/2 exp(erfinv(x)^2)", impl=_np_special("erfinv"),
                lower="_rt.erfinv({0})", numpy="scipy.special.erfinv", sympy=sympy.erfinv, libm=True)
# log|Γ(x)| (SciPy's gammaln). From SymPy's loggamma, which is log Γ: equal for x > 0 (for x < 0
# loggamma is complex, and gammaln its real part); to SymPy as log(Abs(gamma(x))), equal everywhere
gammaln = unary("gammaln", lambda g, x, out: g * digamma(x), "d/dx gammaln(x) = digamma(x)",
                impl=_np_special("gammaln"), lower="_rt.gammaln({0})", numpy="scipy.special.gammaln",
                libm=True, sympy=sympy.loggamma, to_sympy=lambda a: sympy.log(sympy.Abs(sympy.gamma(a))))
digamma = unary("digamma", lambda g, x, out: g * polygamma(1, x), "d/dx digamma(x) = polygamma(1, x)",
                impl=_np_special("digamma"), lower="_rt.digamma({0})",
                numpy=("scipy.special.digamma", "scipy.special.psi"), sympy=sympy.digamma, libm=True)
unary("polygamma", lambda g, x, out: g * polygamma(out.attrs["n"] + 1, x),
      "d/dx polygamma(n, x) = polygamma(n + 1, x)", impl=_np_polygamma, builder=polygamma,
      lower="_rt.polygamma({n}, {0})", libm=True, sympy=sympy.polygamma,
      to_sympy=lambda a, n: sympy.polygamma(n, a))
# the normal distribution: its CDF Φ (ndtr), log Φ (log_ndtr, accurate far into the left tail, and so is
# its derivative φ/Φ: see _log_ndtr_slope), Φ's inverse (ndtri) and erfc's (erfcinv)
ndtr = unary("ndtr", lambda g, x, out: g * (_INV_SQRT_2PI * exp(-0.5 * square(x))),
             "d/dx ndtr(x) = exp(-x^2/2) / sqrt(2 pi)", impl=_np_special("ndtr"), lower="_rt.ndtr({0})",
             numpy="scipy.special.ndtr", libm=True, vector="tile",
             to_sympy=lambda a: sympy.erfc(-a / sympy.sqrt(2)) / 2)
log_ndtr = unary("log_ndtr", lambda g, x, out: g * _log_ndtr_slope(x, out),
                 "d/dx log_ndtr(x) = exp(-x^2/2 - log_ndtr(x)) / sqrt(2 pi)", impl=_np_special("log_ndtr"),
                 lower="_rt.log_ndtr({0})", numpy="scipy.special.log_ndtr", libm=True, vector="tile",
                 to_sympy=lambda a: sympy.log(sympy.erfc(-a / sympy.sqrt(2)) / 2))
ndtri = unary("ndtri", lambda g, x, out: g * (_SQRT_2PI * exp(0.5 * square(out))),
              "d/dp ndtri(p) = sqrt(2 pi) exp(ndtri(p)^2 / 2)", impl=_np_special("ndtri"),
              lower="_rt.ndtri({0})", numpy="scipy.special.ndtri", libm=True,
              to_sympy=lambda a: sympy.sqrt(2) * sympy.erfinv(2 * a - 1))
erfcinv = unary("erfcinv", lambda g, x, out: g * (-(math.sqrt(math.pi) / 2) * exp(square(out))),
                "d/dy erfcinv(y) = -sqrt(pi)/2 exp(erfcinv(y)^2)", impl=_np_special("erfcinv"),
                lower="_rt.erfcinv({0})", numpy="scipy.special.erfcinv", libm=True, sympy=sympy.erfcinv)
logit = unary("logit", lambda g, x, out: g / (x * (1 - x)), "d/dp logit(p) = 1 / (p (1 - p))",
              impl=_np_special("logit"), lower="_rt.logit({0})", numpy="scipy.special.logit", libm=True,
              vector="tile",
              to_sympy=lambda a: sympy.log(a / (1 - a)))
# exp(-|x|) I0(x) and exp(-|x|) I1(x); i1e'(0) = 1/2, the limit of i0e - i1e (sign(x) + 1/x)
i0e = unary("i0e", lambda g, x, out: g * (i1e(x) - sign(x) * out), "d/dx i0e(x) = i1e(x) - sign(x) i0e(x)",
            impl=_np_special("i0e"), lower="_rt.i0e({0})", numpy="scipy.special.i0e", libm=True,
            to_sympy=lambda a: sympy.besseli(0, a) * sympy.exp(-sympy.Abs(a)))
i1e = unary("i1e", lambda g, x, out: g * _i1e_slope(x, out),
            "d/dx i1e(x) = i0e(x) - i1e(x) (sign(x) + 1/x), 1/2 at 0", impl=_np_special("i1e"),
            lower="_rt.i1e({0})", numpy="scipy.special.i1e", libm=True,
            to_sympy=lambda a: sympy.besseli(1, a) * sympy.exp(-sympy.Abs(a)))
isfinite = unary("isfinite", None, "not differentiable", **_BOOL,
                 to_sympy=lambda a: sympy.And(sympy.Ne(a, sympy.oo), sympy.Ne(a, -sympy.oo)))
logical_not = unary("logical_not", None, "not differentiable", **_BOOL, scalar="not {0}", sympy=sympy.Not)
# piecewise constant, derivative 0 at the jumps too; round is half to even (np.rint, Python's round)
floor = unary("floor", None, "d/dx floor(x) = 0, at the jumps too", whole_stays=True, sympy=sympy.floor)
ceil = unary("ceil", None, "d/dx ceil(x) = 0, at the jumps too", whole_stays=True, sympy=sympy.ceiling)
round = unary("round", None, "d/dx round(x) = 0, at the jumps too", whole_stays=True, impl=np.rint,
              lower="np.rint({0})", numpy=())  # np.rint of an int is float: numpy_protocol.rint
trunc = unary("trunc", None, "d/dx trunc(x) = 0, at the jumps too", whole_stays=True, to_sympy=_sympy_trunc)
# fmt: on
register(
    "stop_gradient",
    infer=_same,
    impl=lambda x: x,
    vjp=(),
    note="zero derivative",
    elementwise=True,
    arity=1,
    builder=stop_gradient,
    parse=("stop_gradient",),
    to_sympy=lambda a: a,
    aliases=True,
    value_of=0,
)


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
    moves_adjoint=(0,),
    batch=lambda node, args, batched: make("cast", args, **node.attrs),
)


# ---------------------------------------------------------------- binary ops
# rule(g, a, b, out) for each operand; broadcasting is undone by the autodiff pass.


# the constant exponents whose power the numba runtime spells in sqrt (its vpow): on SIMD lanes
POW_ON_LANES = (0.5, -0.5, 1.5)


# the integer exponents the runtime's vpow spells in products (within 2 ulp of pow: more products,
# or a reciprocal of more, round more often)
POW_BY_PRODUCTS = (-3, 4)


def _pow_exponent(node):
    """pow ``node``'s exponent as a float when it is one constant, else None."""
    b = node.inputs[1]
    if not OPS[b.op].given or "value" not in b.attrs or b.attrs["value"].size != 1:
        return None
    return float(b.attrs["value"].reshape(()))


def _pow_by_products(node):
    k = _pow_exponent(node)
    return k is not None and k.is_integer() and POW_BY_PRODUCTS[0] <= k <= POW_BY_PRODUCTS[1]


def _pow_on_lanes(node):
    """pow's twin on SIMD lanes: the inlined vpow when its exponent is one constant of POW_ON_LANES
    (sqrt), none for an integer in POW_BY_PRODUCTS (its scalar spelling, vpow's products, is
    arithmetic LLVM vectorises where it stands), else the compiled tile kernel vpow_tile."""
    if _pow_by_products(node):
        return False
    return True if _pow_exponent(node) in POW_ON_LANES else "tile"


def _pow_calls_libm(node):
    return not _pow_by_products(node)


def _pow_base_rule(g, a, b, out):
    # d/da a^b = b a^(b-1); defined as 0 where b == 0 (else 0 * 0^-1 = nan at a == 0)
    if b.op == "constant" and np.all(b.value != 0):
        return g * (b * a ** (b - 1))
    return g * where(b == 0, 0, b * a ** (b - 1))


def _pow_exponent_rule(g, a, b, out):
    # d/db a^b = a^b log(a); defined as 0 where a == 0 (the limit for b > 0)
    safe_a = where(a == 0, 1, a)
    return g * (out * log(safe_a))


# fmt: off
binary("add", (lambda g, a, b, out: g, lambda g, a, b, out: g), "d(a+b) = da + db", commutative=True,
       builder=add, lower="{0} + {1}", linear=True, infix="+", precedence=1, to_sympy=lambda a, b: a + b)
binary("sub", (lambda g, a, b, out: g, lambda g, a, b, out: -g), "d(a-b) = da - db", builder=sub,
       lower="{0} - {1}", numpy=np.subtract, parse=("sub", "subtract"), linear=True, infix="-", precedence=1,
       to_sympy=lambda a, b: a - b)
binary("mul", (lambda g, a, b, out: g * b, lambda g, a, b, out: g * a), "d(ab) = b da + a db",
       commutative=True, builder=mul, lower="{0} * {1}", numpy=np.multiply, parse=("mul", "multiply"),
       bilinear=True, infix="*", precedence=2, to_sympy=lambda a, b: a * b)
binary("div", (lambda g, a, b, out: g / b, lambda g, a, b, out: -(g * out) / b), "d(a/b) = da/b - (a/b) db/b",
       infer=_float_binary, builder=div, lower="{0} / {1}", infix="/", precedence=2, numpy=np.divide,
       parse=("div", "divide", "true_divide"), to_sympy=lambda a, b: a / b)
binary("pow", (_pow_base_rule, _pow_exponent_rule), "d(a^b) = b a^(b-1) da + a^b log(a) db",
       infer=_float_binary, builder=pow, lower="{0} ** {1}", scalar="_rt.vpow({0}, {1})", numpy=np.power,
       parse=("pow", "power"), libm=_pow_calls_libm, vector=_pow_on_lanes, infix="**", precedence=4,
       to_sympy=lambda a, b: a**b)
binary("maximum", (lambda g, a, b, out: where(a > b, g, 0), lambda g, a, b, out: where(a > b, 0, g)),
       "d max(a, b): to a where a > b, else to b", commutative=True, builder=maximum, sympy=sympy.Max)
binary("minimum", (lambda g, a, b, out: where(a < b, g, 0), lambda g, a, b, out: where(a < b, 0, g)),
       "d min(a, b): to a where a < b, else to b", commutative=True, builder=minimum, sympy=sympy.Min)
binary("logaddexp", (lambda g, a, b, out: g * sigmoid(a - b), lambda g, a, b, out: g * sigmoid(b - a)),
       "d logaddexp(a, b) = sigmoid(a - b) da + sigmoid(b - a) db", infer=_float_binary, builder=logaddexp,
       lower="_rt.logaddexp({0}, {1})", vector=True,
       to_sympy=lambda a, b: sympy.log(sympy.exp(a) + sympy.exp(b)))
binary("mod", (lambda g, a, b, out: g, lambda g, a, b, out: -(g * floor(a / b))),
       "d mod(a, b) = da - floor(a/b) db", builder=mod, lower="np.remainder({0}, {1})", numpy=np.remainder,
       parse=("mod", "remainder"), libm=True, infix="%", precedence=2,
       sympy=sympy.Mod)  # SymPy's Mod has the sign of b, as np.mod
binary("fmod", (lambda g, a, b, out: g, lambda g, a, b, out: -(g * trunc(a / b))),
       "d fmod(a, b) = da - trunc(a/b) db", builder=fmod, libm=True,
       to_sympy=lambda a, b: a - b * _sympy_trunc(a / b))
binary("arctan2", (lambda g, a, b, out: g * b / (square(a) + square(b)),
                   lambda g, a, b, out: -(g * a) / (square(a) + square(b))),
       "d atan2(a, b) = (b da - a db)/(a^2 + b^2)", infer=_float_binary, builder=arctan2, libm=True,
       vector="tile", sympy=sympy.atan2)
xlogy = binary("xlogy", (lambda g, x, y, out: g * log(y), lambda g, x, y, out: g * where(x == 0, 0, x / y)),
               "d xlogy(x, y) = log(y) dx + x/y dy", float_only=True, infer=_float_binary, impl=_np_xlogy,
               lower="_rt.xlogy({0}, {1})", libm=True, vector=True, numpy="scipy.special.xlogy",
               to_sympy=lambda x, y: sympy.Piecewise((0, sympy.Eq(x, 0)), (x * sympy.log(y), True)))
xlog1py = binary("xlog1py", (lambda g, x, y, out: g * log1p(y),
                            lambda g, x, y, out: g * where(x == 0, 0, x / (1 + y))),
                 "d xlog1py(x, y) = log1p(y) dx + x/(1+y) dy", float_only=True, infer=_float_binary,
                 impl=_np_xlog1py, lower="_rt.xlog1py({0}, {1})", libm=True,
                 vector=True, numpy="scipy.special.xlog1py",
                 to_sympy=lambda x, y: sympy.Piecewise((0, sympy.Eq(x, 0)), (x * sympy.log(1 + y), True)))
# log|B(a, b)|, accurate where the gammaln terms cancel (one a large): its own kernel, not their sum
betaln = binary("betaln", (lambda g, a, b, out: g * (digamma(a) - digamma(a + b)),
                           lambda g, a, b, out: g * (digamma(b) - digamma(a + b))),
                "d betaln(a, b) = (digamma(a) - digamma(a+b)) da + (digamma(b) - digamma(a+b)) db",
                float_only=True, infer=_float_binary, commutative=True, impl=_np_betaln,
                lower="_rt.betaln({0}, {1})", libm=True, numpy="scipy.special.betaln",
                to_sympy=lambda a, b: sympy.log(sympy.Abs(sympy.beta(a, b))))
# comparisons and logic: not differentiable
_COMPARE = dict(infer=_compare, note="not differentiable", boolean=True)
binary("less", **_COMPARE, builder=less, lower="{0} < {1}", infix="<", sympy=sympy.StrictLessThan)
binary("less_equal", **_COMPARE, builder=less_equal, lower="{0} <= {1}", infix="<=", sympy=sympy.LessThan)
binary("greater", **_COMPARE, builder=greater, lower="{0} > {1}", infix=">", sympy=sympy.StrictGreaterThan)
binary("greater_equal", **_COMPARE, builder=greater_equal, lower="{0} >= {1}", infix=">=",
       sympy=sympy.GreaterThan)
binary("equal", **_COMPARE, builder=equal, lower="{0} == {1}", infix="==", commutative=True,
       sympy=sympy.Equality)
binary("not_equal", **_COMPARE, builder=not_equal, lower="{0} != {1}", infix="!=", commutative=True,
       sympy=sympy.Unequality)
binary("logical_and", infer=_logical, boolean=True, commutative=True, builder=logical_and,
       scalar="{0} and {1}", sympy=sympy.And)
binary("logical_or", infer=_logical, boolean=True, commutative=True, builder=logical_or,
       scalar="{0} or {1}", sympy=sympy.Or)
# fmt: on
register(
    "where",
    _where,
    np.where,
    (None, lambda g, c, a, b, out: where(c, g, 0), lambda g, c, a, b, out: where(c, 0, g)),
    jvp=POINTWISE,
    note="d where(c, a, b): to a where c, else to b",
    elementwise=True,
    arity=3,
    builder=where,
    parse=("where",),
    scalar="{1} if {0} else {2}",  # arrays: emit's lower_where
    to_sympy=lambda c, a, b: sympy.Piecewise(
        (a, c), *(b.args if isinstance(b, sympy.Piecewise) else [(b, True)])
    ),
)


# ---------------------------------------------------------------- composites
# written with the ops above, exactly (numpy_protocol traces np.arcsinh etc. to them; from_sympy
# SymPy's asinh, acosh, atanh and Heaviside). arcsinh loses accuracy for large negative x.


def arcsinh(x):
    x = as_expr(x)
    return log(x + sqrt(square(x) + 1))


def arccosh(x):
    x = as_expr(x)
    return log(x + sqrt(square(x) - 1))


def arctanh(x):
    x = as_expr(x)
    return (log1p(x) - log1p(-x)) * 0.5


def hypot(a, b):
    return sqrt(square(a) + square(b))


def cbrt(x):
    x = as_expr(x)
    return sign(x) * pow(abs(x), 1 / 3)


def heaviside(x, h0):
    x = as_expr(x)
    return where(x < 0, 0.0, where(x > 0, 1.0, h0))


# every elementwise op's builder, by its name: what ``symgrad.ops`` and ``symgrad`` export
__all__ = ["cast", "remainder"] + [name for name, op in OPS.items() if op.elementwise]
