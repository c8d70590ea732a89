"""Special functions for the numba backend: erfinv, gammaln, digamma and polygamma.

Each is a scalar kernel of float64 (``*_scalar``, numba-compiled, cached) that generated code
calls once per element, and a function of the same name as SciPy's (``erfinv(x)``, ...) that
numba code calls on a float32 or float64 scalar or array (float32 in, float32 out, computed in
float64) and that plain Python answers with ``scipy.special``: the numpy backend's reference.
The values, special values included, are SciPy's (tests/codegen/test_special.py checks them
against SciPy and mpmath), except where noted:

- erfinv: ±1 -> ±inf, |x| > 1 -> nan, -0.0 -> -0.0 (SciPy gives +0.0); within 2 ulp of mpmath,
  4 of SciPy, over the whole domain (near ±1 and the subnormals too).
- gammaln: libm's lgamma (within 3 ulp of mpmath; SciPy's is thousands of ulp off near its
  zeros at 1, 2 and on the negative axis), with SciPy's value at -inf (-inf: |Γ| -> 0 between
  the poles); poles (0, -0.0, the negative integers) -> +inf. For |x| < 5.6e-309 SciPy gives
  inf (its 1/x overflows); this gives the finite -log|x|.
- digamma: 0.0 -> -inf, -0.0 -> +inf, negative integers and -inf -> nan, +inf -> inf; within
  3 ulp of mpmath for x > 0, through the zero at 1.4616 too.
- polygamma(n, x), n >= 1: (-1)^(n+1) n! ζ(n+1, x); within 1.5e-15 relative of mpmath for
  n = 1..7 on (0, 100] and on negative non-integer x (by reflection); x a pole (0, -0.0, a
  negative integer, -inf) -> (-1)^(n+1) inf, +inf -> a zero of that sign. n = 0 is digamma;
  n negative or not an integer -> nan.

Derivatives: erfinv'(x) = sqrt(pi)/2 exp(erfinv(x)^2); gammaln' = digamma;
digamma' = polygamma(1, .); polygamma(n, .)' = polygamma(n + 1, .).
"""

import importlib
import math

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

_JIT = dict(cache=True, nogil=True, error_model="numpy")

# ---------------------------------------------------------------- erfinv
# |x| < 0.5: erfinv(x) = x P(x^2), P of degree 13 the Chebyshev interpolant of erfinv(x) / x in
# x^2 on [0, 1/4] (mpmath's chebyfit, relative error 4e-18); its low coefficients are positive
# and dominate, so Horner's rounding stays near an ulp.
# 0.5 <= |x| < 1: a starting value good to 4e-8 relative, then one Halley step on erf(y) = |x|
# with the residual formed as (1 - |x|) - erfc(y) (1 - |x| is exact there, and erfc keeps its
# relative accuracy as y grows: near ±1, erf(y) - x would be all rounding). Halley's step for
# f = erf(y) - x, with f'' = -2y f': y -= u / (1 + y u), u = f / f'. It triples the digits:
# 4e-8 -> below float64's rounding. The starting value: with w = -log(1 - x^2), erfinv(x) / x
# is a polynomial in w for w < 6.25 (|x| < 0.9981) and erfinv(|x|) one in sqrt(w) above, both
# of degree 10, fitted by least squares to SciPy's erfinv (the form of Giles' approximations).
_ERFINV_A = (
    6.061919065539176e-10,
    -4.726290370247525e-09,
    -2.3583447615169133e-08,
    4.280301467423384e-07,
    -1.3959849042221775e-06,
    -1.3902455958430898e-05,
    0.00018680889218375258,
    -0.0007406625020348389,
    -0.00603373508740365,
    0.2401581594165935,
    1.6536545710219364,
)
_ERFINV_B = (
    -1.254402497486617e-07,
    2.6280189906366184e-07,
    8.797122352417667e-07,
    -4.307274929971033e-06,
    1.417472271438566e-05,
    -5.645046225165396e-05,
    0.00020764049787391927,
    -0.0006060888115153785,
    0.000711778205137128,
    1.0099786165624376,
    4.092223393494423,
)
(_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7, _A8, _A9, _A10) = _ERFINV_A
(_B0, _B1, _B2, _B3, _B4, _B5, _B6, _B7, _B8, _B9, _B10) = _ERFINV_B
_ERFINV_SMALL = (  # erfinv(x) / x in u = x^2, highest degree first
    0.11314166859159029,
    -0.07607360776328573,
    0.07345020539520401,
    0.008446011584224939,
    0.03159332043375326,
    0.031145242581416724,
    0.036522988083139016,
    0.042832578482160585,
    0.05173148498700453,
    0.06495961132717862,
    0.08655212936268364,
    0.1275561753044084,
    0.23201366653465907,
    0.886226925452758,
)
_ERFINV_SMALL_COEFFS = np.array(_ERFINV_SMALL)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@numba.njit(**_JIT)
def erfinv_scalar(x):
    """The inverse error function of a float64."""
    a = abs(x)
    if not a < 1.0:  # 1, above 1, nan
        if a == 1.0:
            return math.copysign(math.inf, x)
        return math.nan
    if a < 0.5:  # x P(x^2), to 2 ulp; also the subnormals (x^2 is 0) and -0.0
        c = _ERFINV_SMALL_COEFFS
        u = x * x
        p = c[0]
        for k in range(1, c.size):
            p = p * u + c[k]
        return x * p
    w = -math.log((1.0 - a) * (1.0 + a))
    if w < 6.25:
        t = w - 3.125
        p = _A0 * t + _A1
        p = p * t + _A2
        p = p * t + _A3
        p = p * t + _A4
        p = p * t + _A5
        p = p * t + _A6
        p = p * t + _A7
        p = p * t + _A8
        p = p * t + _A9
        y = (p * t + _A10) * a
    else:
        t = math.sqrt(w) - 4.25
        p = _B0 * t + _B1
        p = p * t + _B2
        p = p * t + _B3
        p = p * t + _B4
        p = p * t + _B5
        p = p * t + _B6
        p = p * t + _B7
        p = p * t + _B8
        p = p * t + _B9
        y = p * t + _B10
    # one Halley step on the positive half (erfinv is odd)
    f = (1.0 - a) - math.erfc(y)
    u = f / (_TWO_OVER_SQRT_PI * math.exp(-y * y))
    y = y - u / (1.0 + y * u)
    return math.copysign(y, x)


# ---------------------------------------------------------------- gammaln


@numba.njit(**_JIT)
def gammaln_scalar(x):
    """log|Γ(x)| of a float64: libm's lgamma, and SciPy's -inf at -inf."""
    if x == -math.inf:
        return -math.inf
    return math.lgamma(x)


# ---------------------------------------------------------------- digamma
# 1 <= x <= 2: ψ(x) = (x - x0) P(x - 1.5), x0 = 1.46163... its positive zero (in two parts, so
# x - x0 is exact to below an ulp of the result), P of degree 21 the Chebyshev interpolant of
# ψ(x) / (x - x0) on [1, 2] (mpmath's chebyfit, relative error 2e-17): the product keeps ψ's
# relative accuracy through its zero. 0 < x < 1: ψ(x) = ψ(x + 1) - 1/x; 2 <= x < 10:
# ψ(x) = ψ(x - m) + sum_(k=1..m) 1/(x - k) with x - m in [1, 2) (exact), the reciprocals added
# smallest first (all of one sign). x >= 10: the asymptotic series
# log x - 1/(2x) - sum B_2k / (2k x^2k), k = 1..8 (the next term is below 2^-56 relative).
# Within 3 ulp of mpmath for x > 0.
# x < 0: for -0.25 < x < 0 one step ψ(x) = ψ(x + 1) - 1/x (also for the tiny and subnormal x,
# where pi x would lose digits); below, the reflection ψ(x) = ψ(1 - x) - pi cot(pi x), the
# cot on the reduced argument r = x - round(x) (exact), so it is accurate near the poles.
# Near the zeros of ψ on the negative axis (one in each (-k-1, -k)) the reflection cancels:
# there the error is a few ulp of the larger term. (SciPy's digamma is less accurate for x < 0:
# ~1000 ulp near some poles, 7e-7 relative at x = -2 + 1.2e-10; mpmath agrees with this one.)
_X0_HI = 1.4616321449683622
_X0_LO = 9.549995429965697e-17
_PSI_12 = (  # highest degree first
    -0.00017312261802727394,
    0.00025968482126430747,
    -0.00015148586836773365,
    0.0002272331660987376,
    -0.0004821990530566789,
    0.0007233266279287554,
    -0.0010376374098418604,
    0.0015566317474486838,
    -0.002345267632540769,
    0.003519006401502276,
    -0.005279964873257405,
    0.007926944646403797,
    -0.011908218001568644,
    0.0179072524394512,
    -0.02697579675613825,
    0.04076083381242074,
    -0.061922133273064534,
    0.09498872445494122,
    -0.14840492305390884,
    0.2405424842407742,
    -0.4236274212814605,
    0.951055876031833,
)
_PSI_12_COEFFS = np.array(_PSI_12)
_BERNOULLI_OVER_2K = (  # B_2k / (2k), k = 1..8
    1.0 / 12.0,
    -1.0 / 120.0,
    1.0 / 252.0,
    -1.0 / 240.0,
    1.0 / 132.0,
    -691.0 / 32760.0,
    1.0 / 12.0,
    -3617.0 / 8160.0,
)
(_D1, _D2, _D3, _D4, _D5, _D6, _D7, _D8) = _BERNOULLI_OVER_2K


@numba.njit(**_JIT)
def _digamma_positive(x):
    """ψ(x) for x > 0 (and +inf)."""
    if x < 10.0:
        shift = 0.0
        if x < 1.0:
            shift = -1.0 / x
            x = x + 1.0
        else:
            m = int(x) - 1  # x - m in [1, 2), exactly
            for k in range(1, m + 1):  # the reciprocals, smallest first
                shift += 1.0 / (x - k)
            x = x - m
        t = x - 1.5
        c = _PSI_12_COEFFS
        p = c[0]
        for k in range(1, c.size):
            p = p * t + c[k]
        return ((x - _X0_HI) - _X0_LO) * p + shift
    if x == math.inf:
        return x
    z = 1.0 / (x * x)
    s = _D8 * z + _D7
    s = s * z + _D6
    s = s * z + _D5
    s = s * z + _D4
    s = s * z + _D3
    s = s * z + _D2
    s = s * z + _D1
    return math.log(x) - 0.5 / x - s * z


@numba.njit(**_JIT)
def _cot_pi(x):
    """cot(pi x) for a finite x that is not an integer, to its relative accuracy also near its
    zeros: on r = x - round(x) (exact), cot(pi r) = 1 / tan(pi r) for |r| <= 1/4, and above
    tan(pi (1/2 - |r|)) with the sign of r (1/2 - |r| exact; pi r would lose the digits there)."""
    r = x - math.floor(x + 0.5)  # exact: |x| < 2^52 here (larger floats are integers)
    if abs(r) <= 0.25:
        return 1.0 / math.tan(math.pi * r)
    return math.copysign(math.tan(math.pi * (0.5 - abs(r))), r)


@numba.njit(**_JIT)
def digamma_scalar(x):
    """ψ(x) of a float64, with SciPy's values at its poles and infinities."""
    if x > 0.0:
        return _digamma_positive(x)
    if x == 0.0:
        return -1.0 / x  # 0.0 -> -inf, -0.0 -> +inf
    if not x > -math.inf or x == math.floor(x):  # nan, -inf, a negative integer
        return math.nan
    if x > -0.25:  # no cancellation: -1/x > 4 > |ψ(x + 1)|
        return _digamma_positive(x + 1.0) - 1.0 / x
    return _digamma_positive(1.0 - x) - math.pi * _cot_pi(x)


# ---------------------------------------------------------------- polygamma
# polygamma(n, x) = (-1)^(n+1) n! ζ(n+1, x), the Hurwitz zeta ζ(s, a) = sum_k (a + k)^-s.
# a > 0: shift a up to a + m >= max(10, 2s), adding the m terms (smallest first), then
# Euler–Maclaurin: ζ(s, a) = a^(1-s)/(s-1) + a^-s/2 + sum_j B_2j/(2j)! (s)_(2j-1) a^(1-s-2j),
# j = 1..10, whose remainder is below 2^-60 relative at that a for every s.
# x < 0 (not an integer): for -0.25 < x < 0 one term of the sum, (a^-s + ζ(s, a + 1)); below,
# the reflection: differentiating ψ(1 - x) - ψ(x) = pi cot(pi x) n times,
#   ψ^(n)(x) = (-1)^n ψ^(n)(1 - x) - pi^(n+1) P_n(cot(pi x)),
# P_n the polynomial with d^n/dt^n cot t = P_n(cot t): P_0 = c, P_(k+1) = -(1 + c^2) P_k'(c).
# P_n is c^((n+1) mod 2) times a polynomial in c^2 whose coefficients all have one sign, so
# it is evaluated without cancellation; its table goes to n = _COT_MAX (beyond that, for
# x <= -0.25 the terms of the shift are summed up to a > 0 directly, as SciPy does).
_EM_BERNOULLI = (  # B_2j / (2j)!, j = 1..10
    1.0 / 12.0,
    -1.0 / 720.0,
    1.0 / 30240.0,
    -1.0 / 1209600.0,
    1.0 / 47900160.0,
    -691.0 / 1307674368000.0,
    1.0 / 74724249600.0,
    -3617.0 / 10670622842880000.0,
    43867.0 / 5109094217170944000.0,
    -174611.0 / 802857662698291200000.0,
)
_EM = np.array(_EM_BERNOULLI)
_COT_MAX = 30


def _cot_derivative_table(n_max):
    """Row n: the coefficients of P_n as a polynomial in c^2, highest degree first, padded."""
    p = [0, 1]  # P_0 = c, coefficients by ascending power
    rows = []
    for _ in range(n_max + 1):
        start = 1 if p[0] == 0 else 0  # P_n has only odd or only even powers
        rows.append([float(v) for v in p[start::2][::-1]])
        dp = [k * p[k] for k in range(1, len(p))]  # P'
        q = [0] * (len(dp) + 2)
        for k, v in enumerate(dp):  # -(1 + c^2) P'
            q[k] -= v
            q[k + 2] -= v
        p = q
    width = max(len(r) for r in rows)
    table = np.zeros((n_max + 1, width))
    for n, r in enumerate(rows):
        table[n, width - len(r) :] = r
    return table


_COT_TABLE = _cot_derivative_table(_COT_MAX)


@numba.njit(**_JIT)
def _powi(t, s):
    """t ** s for an integer s >= 1, by squaring."""
    out = 1.0
    while s > 0:
        if s & 1:
            out *= t
        t *= t
        s >>= 1
    return out


@numba.njit(**_JIT)
def _hurwitz(s, a):
    """ζ(s, a) for an integer s >= 2 and a finite a that is not a non-positive integer."""
    acc = 0.0
    lo = max(10.0, 2.0 * s)
    if a < lo:
        m = int(math.ceil(lo - a))
        for k in range(m - 1, -1, -1):  # smallest terms first
            acc += _powi(1.0 / (a + k), s)
        a = a + m
    lead = math.pow(a, 1.0 - s)  # a^(1-s): a^-s may underflow where this does not
    inv = 1.0 / a
    inv2 = inv * inv
    c = _EM
    f = s * inv  # (s)_(2j-1) a^(1-2j), j = 1
    tail = 0.0
    for j in range(c.size):
        tail += c[j] * f
        f *= (s + 2 * j + 1) * (s + 2 * j + 2) * inv2
    return acc + (lead / (s - 1.0) + lead * inv * (0.5 + tail))


@numba.njit(**_JIT)
def polygamma_scalar(n, x):
    """ψ^(n)(x) of a float64 x and an integer order n >= 0 (SciPy's values at the poles)."""
    if not (n >= 0.0 and n == math.floor(n)) or x != x:
        return math.nan
    if n == 0:
        return digamma_scalar(x)
    k = int(n)
    sign = 1.0 if k % 2 == 1 else -1.0  # (-1)^(n+1)
    scale = math.gamma(k + 1.0)
    if x == math.inf:
        return sign * 0.0
    if x <= 0.0 and x == math.floor(x):  # 0, -0.0, the negative integers, -inf
        return sign * math.inf
    s = k + 1
    if x > 0.0:
        return sign * scale * _hurwitz(s, x)
    if x > -0.25:
        return sign * scale * (_powi(1.0 / x, s) + _hurwitz(s, x + 1.0))
    if k <= _COT_MAX:
        c = _cot_pi(x)
        c2 = c * c
        row = _COT_TABLE[k]
        p = 0.0
        for j in range(row.size):
            p = p * c2 + row[j]
        if k % 2 == 0:
            p *= c
        reflected = -scale * _hurwitz(s, 1.0 - x)  # (-1)^n ψ^(n)(1 - x) = -n! ζ(n+1, 1 - x)
        return reflected - math.pow(math.pi, k + 1.0) * p
    # a high order: the terms from x up to a > 0, then ζ there
    m = int(math.ceil(-x))
    acc = 0.0
    for j in range(m - 1, -1, -1):
        acc += _powi(1.0 / (x + j), s)
    return sign * scale * (acc + _hurwitz(s, x + m))


# ---------------------------------------------------------------- the functions generated code calls


def _scipy_special():
    """scipy.special, imported when plain Python first asks for a value: numba code never needs
    it, and its import (~0.5 s) would otherwise be paid by every process that loads a kernel."""
    return importlib.import_module("scipy.special")


def _unary(name, scalar, reference):
    """``name`` of a float scalar or array: SciPy's function named ``reference`` in plain Python;
    in numba code ``scalar`` per element, computed in float64, the result in the argument's dtype."""

    def function(x):
        return getattr(_scipy_special(), reference)(x)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = scalar.py_func.__doc__

    @overload(function, jit_options=dict(nogil=True, error_model="numpy"))
    def _typed(x):
        if isinstance(x, types.Float):
            if x == types.float32:
                return lambda x: np.float32(scalar(np.float64(x)))
            return lambda x: scalar(np.float64(x))
        if isinstance(x, types.Array) and isinstance(x.dtype, types.Float):

            def on_array(x):
                c = np.ascontiguousarray(x)
                out = np.empty(c.shape, dtype=c.dtype)
                flat_in = c.reshape(c.size)
                flat_out = out.reshape(out.size)
                for k in range(flat_in.size):
                    flat_out[k] = scalar(np.float64(flat_in[k]))
                return out

            return on_array
        return None

    return function


erfinv = _unary("erfinv", erfinv_scalar, "erfinv")
gammaln = _unary("gammaln", gammaln_scalar, "gammaln")
digamma = _unary("digamma", digamma_scalar, "digamma")


def _polygamma_reference(n, x):
    """SciPy's polygamma, its result in x's float dtype (SciPy's is float64 for float32 x)."""
    x = np.asarray(x) if not isinstance(x, np.floating | float) else x
    out = _scipy_special().polygamma(n, x)
    dtype = np.result_type(x) if np.result_type(x).kind == "f" else np.float64
    return np.asarray(out, dtype=dtype)[()] if np.ndim(out) == 0 else out.astype(dtype, copy=False)


def polygamma(n, x):
    """ψ^(n)(x), the n-th derivative of digamma, for an integer order n >= 0 (SciPy's)."""
    return _polygamma_reference(n, x)


@overload(polygamma, jit_options=dict(nogil=True, error_model="numpy"))
def _polygamma_typed(n, x):
    if not isinstance(n, types.Integer | types.Float):
        return None
    if isinstance(x, types.Float):
        if x == types.float32:
            return lambda n, x: np.float32(polygamma_scalar(np.float64(n), np.float64(x)))
        return lambda n, x: polygamma_scalar(np.float64(n), np.float64(x))
    if isinstance(x, types.Array) and isinstance(x.dtype, types.Float):

        def on_array(n, x):
            c = np.ascontiguousarray(x)
            out = np.empty(c.shape, dtype=c.dtype)
            flat_in = c.reshape(c.size)
            flat_out = out.reshape(out.size)
            order = np.float64(n)
            for k in range(flat_in.size):
                flat_out[k] = polygamma_scalar(order, np.float64(flat_in[k]))
            return out

        return on_array
    return None
