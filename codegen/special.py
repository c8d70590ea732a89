"""Special functions for the numba backend: erfinv, gammaln, digamma, polygamma, ndtr, log_ndtr,
ndtri, erfcinv, logit, i0e, i1e, betaln and xlog1py.

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

- ndtr: within 3 ulp of mpmath through the left tail to the subnormals (SciPy rounds x / sqrt(2)
  and is ~1000 ulp off at -20, 5e12 in the subnormals); 0 below -40, 1 above 40.
- log_ndtr: within 2 ulp of mpmath over the whole line (x = -40, -1e5 and the right tail, where
  SciPy is up to ~1000 ulp off); -inf at -inf, -0.0 at +inf.
- ndtri: within 5 ulp of mpmath (3 in the tails), SciPy's values at 0, 1 and outside [0, 1].
- erfcinv: within 5 ulp of mpmath; for y < 2e-300 this stays finite where SciPy's y / 2 loses
  bits (SciPy: erfcinv(5e-324) = inf; this gives 27.2133).
- logit: within 2 ulp (near p = 1/2 too, through log1p).
- i0e, i1e: within 3 ulp of mpmath (SciPy's: ~9); i0e(0) = 1 exactly; i1e(-0.0) = -0.0 (odd; SciPy gives +0.0).
- betaln: within 6 ulp of mpmath where |betaln| >= 1 and 1.5e-15 absolute near its zeros, for
  any a, b > 0 (SciPy sums gammaln below max(a, b) = 1e6: millions of ulp off there); B(0, b) ->
  inf, B(a, inf) -> -inf, a + b overflowing stays finite (SciPy: nan), a tiny argument is finite
  (SciPy: inf once Γ overflows); negative arguments: the sum of gammaln (log|B|).
- xlog1py: x log1p(y), 0 where x == 0 (unless y is nan), as SciPy.

Derivatives: erfinv'(x) = sqrt(pi)/2 exp(erfinv(x)^2); gammaln' = digamma;
digamma' = polygamma(1, .); polygamma(n, .)' = polygamma(n + 1, .); ndtr' = φ; log_ndtr' = φ/Φ;
ndtri' = sqrt(2 pi) exp(ndtri^2 / 2); erfcinv' = -sqrt(pi)/2 exp(erfcinv^2); logit' = 1/(p(1-p));
i0e' = i1e - sign(x) i0e; i1e' = i0e - i1e (sign(x) + 1/x), 1/2 at 0; d betaln/da = ψ(a) - ψ(a+b).
(The rules live in the op table, symgrad/ops/elementwise.py.)
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


# ---------------------------------------------------------------- ndtr, log_ndtr
# ndtr(x) = erfc(-x / sqrt(2)) / 2. The argument is formed in double-double: z_hi + z_lo =
# -x / sqrt(2) to ~2^-106 (Dekker's exact product of x and the two-part 1 / sqrt(2)), and
# erfc(z_hi + z_lo) = erfc(z_hi) - z_lo (2 / sqrt(pi)) exp(-z_hi^2) to first order: in the far
# left tail erfc's condition number is ~2 z^2 (1500 at x = -38), so the rounding of x / sqrt(2)
# alone would cost that many ulp (SciPy's ndtr keeps that error). x >= 0: 1 - erfc(x / sqrt(2)) / 2,
# where erfc(...) / 2 <= 1/2 and the subtraction loses nothing.
_SQRT1_2_HI = 0.7071067811865476
_SQRT1_2_LO = -4.833646656726457e-17  # 1/sqrt(2) - _SQRT1_2_HI
_SPLIT = 134217729.0  # 2^27 + 1, Dekker's splitter
_LOG_SQRT_2PI = 0.9189385332046728  # log(2 pi) / 2


@numba.njit(**_JIT)
def _two_product(a, b):
    """(p, e) with p = fl(a b) and p + e = a b exactly (Dekker), for |a|, |b| < 2^995."""
    p = a * b
    t = _SPLIT * a
    a_hi = t - (t - a)
    a_lo = a - a_hi
    t = _SPLIT * b
    b_hi = t - (t - b)
    b_lo = b - b_hi
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, e


@numba.njit(**_JIT)
def _half_erfc_scaled(s):
    """erfc(s / sqrt(2)) / 2 for s >= 0 (finite, s < 40), the argument in double-double."""
    hi, e = _two_product(s, _SQRT1_2_HI)
    lo = e + s * _SQRT1_2_LO
    z = hi + lo
    lo = lo - (z - hi)  # z + lo = s / sqrt(2), z the rounded sum
    return 0.5 * (math.erfc(z) - lo * (_TWO_OVER_SQRT_PI * math.exp(-z * z)))


@numba.njit(**_JIT)
def ndtr_scalar(x):
    """The standard normal CDF Φ(x) of a float64."""
    if x != x:
        return x
    if x < 0.0:
        if x < -40.0:  # Φ(-40) = 3.7e-350: below the subnormals
            return 0.0
        return _half_erfc_scaled(-x)
    if x > 40.0:
        return 1.0
    return 1.0 - _half_erfc_scaled(x)


# log Φ(x): x >= 0: log1p(-Φ(-x)), Φ(-x) <= 1/2 to its relative accuracy. -20 <= x < 0:
# log(Φ(x)), Φ(x) <= 1/2 (the log keeps Φ's relative accuracy). x < -20 (Φ < 3e-89, and
# underflowing below -38.5): the asymptotic series
#   log Φ(x) = -x^2/2 - log(-x) - log(2 pi)/2 + log(1 + sum_k (-1)^k (2k-1)!! / x^2k),
# k = 1..10: at x = -20 the first omitted term is 21!! / 400^11 = 3e-19.
_LOG_NDTR_TERMS = 10


@numba.njit(**_JIT)
def log_ndtr_scalar(x):
    """log Φ(x) of a float64, accurate in both tails (x = -1e5 too)."""
    if x != x:
        return x
    if x >= 0.0:
        return math.log1p(-ndtr_scalar(-x))
    if x >= -20.0:
        return math.log(ndtr_scalar(x))
    if x == -math.inf:
        return x
    z = 1.0 / (x * x)
    term = 1.0
    series = 0.0
    for k in range(1, _LOG_NDTR_TERMS + 1):
        term *= -(2.0 * k - 1.0) * z
        series += term
    return ((-0.5 * x * x) - math.log(-x)) - _LOG_SQRT_2PI + math.log1p(series)


# ---------------------------------------------------------------- ndtri, erfcinv
# ndtri(p), the inverse of Φ: Wichura's algorithm AS 241 (PPND16, Applied Statistics 37 (1988)
# 477-484), relative error about 1e-16: |p - 1/2| <= 0.425: q A(r) / B(r), r = 0.180625 - q^2,
# q = p - 1/2 (exact); else r = sqrt(-log(min(p, 1 - p))) (1 - p exact for p > 1/2), and
# C(r - 1.6) / D(r - 1.6) for r <= 5, E(r - 5) / F(r - 5) above, with the sign of q. The
# tails are then refined by one Halley step on Φ(x) = min(p, 1 - p) (Φ of the lower tail is
# accurate to its relative precision, see ndtr): for f = Φ(x) - t, f' = φ(x), f'' = -x φ(x),
# x -= u / (1 + x u / 2), u = f / φ(x). Below t = 1e-300 φ(x) nears the subnormals and the step
# is skipped (AS 241 alone is within a few ulp there).
_AS241_A = (  # A(r), coefficients of r^0 .. r^7
    3.3871328727963666080,
    1.3314166789178437745e2,
    1.9715909503065514427e3,
    1.3731693765509461125e4,
    4.5921953931549871457e4,
    6.7265770927008700853e4,
    3.3430575583588128105e4,
    2.5090809287301226727e3,
)
_AS241_B = (
    1.0,
    4.2313330701600911252e1,
    6.8718700749205790830e2,
    5.3941960214247511077e3,
    2.1213794301586595867e4,
    3.9307895800092710610e4,
    2.8729085735721942674e4,
    5.2264952788528545610e3,
)
_AS241_C = (
    1.42343711074968357734,
    4.63033784615654529590,
    5.76949722146069140550,
    3.64784832476320460504,
    1.27045825245236838258,
    2.41780725177450611770e-1,
    2.27238449892691845833e-2,
    7.74545014278341407640e-4,
)
_AS241_D = (
    1.0,
    2.05319162663775882187,
    1.67638483018380384940,
    6.89767334985100004550e-1,
    1.48103976427480074590e-1,
    1.51986665636164571966e-2,
    5.47593808499534494600e-4,
    1.05075007164441684324e-9,
)
_AS241_E = (
    6.65790464350110377720,
    5.46378491116411436990,
    1.78482653991729133580,
    2.96560571828504891230e-1,
    2.65321895265761230930e-2,
    1.24266094738807843860e-3,
    2.71155556874348757815e-5,
    2.01033439929228813265e-7,
)
_AS241_F = (
    1.0,
    5.99832206555887937690e-1,
    1.36929880922735805310e-1,
    1.48753612908506148525e-2,
    7.86869131145613259100e-4,
    1.84631831751005468180e-5,
    1.42151175831644588870e-7,
    2.04426310338993978564e-15,
)
_AS241 = np.array([_AS241_A, _AS241_B, _AS241_C, _AS241_D, _AS241_E, _AS241_F])
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_LN2 = math.log(2.0)


@numba.njit(**_JIT)
def _rational(row, r):
    """_AS241[row](r) / _AS241[row + 1](r), each of degree 7 (Horner)."""
    c = _AS241
    num = c[row, 7]
    den = c[row + 1, 7]
    for k in range(6, -1, -1):
        num = num * r + c[row, k]
        den = den * r + c[row + 1, k]
    return num / den


@numba.njit(**_JIT)
def ndtri_scalar(p):
    """The inverse of the standard normal CDF of a float64 probability p."""
    if not (p > 0.0 and p < 1.0):  # 0, 1, outside [0, 1], nan
        if p == 0.0:
            return -math.inf
        if p == 1.0:
            return math.inf
        return math.nan
    q = p - 0.5
    if abs(q) <= 0.425:
        return q * _rational(0, 0.180625 - q * q)
    t = p if q < 0.0 else 1.0 - p  # the tail probability, exact
    r = math.sqrt(-math.log(t))
    if r <= 5.0:
        x = -_rational(2, r - 1.6)
    else:
        x = -_rational(4, r - 5.0)
    if t > 1e-300:  # x < 0: one Halley step on Φ(x) = t
        u = (ndtr_scalar(x) - t) / (math.exp(-0.5 * x * x) / _SQRT_2PI)
        x = x - u / (1.0 + 0.5 * x * u)
    return x if q < 0.0 else -x


@numba.njit(**_JIT)
def erfcinv_scalar(y):
    """The inverse of erfc of a float64 y in [0, 2]: -ndtri(y / 2) / sqrt(2) (y / 2 is exact)."""
    if not (y >= 0.0 and y <= 2.0):
        return math.nan
    if 0.0 < y < 2e-300:  # y / 2 may be a subnormal that lost bits: AS 241's tail on log(y) - log 2
        r = math.sqrt(_LN2 - math.log(y))
        return _rational(4, r - 5.0) * _SQRT1_2_HI
    return -ndtri_scalar(0.5 * y) * _SQRT1_2_HI


# ---------------------------------------------------------------- logit
# logit(p) = log(p / (1 - p)). For 1/4 <= p <= 3/4 the ratio is near 1 and its log cancels:
# log1p((2p - 1) / (1 - p)), 2p - 1 exact there (Sterbenz). Elsewhere log(p / (1 - p)), the ratio
# away from 1 (1 - p is exact for p >= 1/2, and rounds once below).


@numba.njit(**_JIT)
def logit_scalar(p):
    """log(p / (1 - p)) of a float64: -inf at 0, inf at 1, nan outside [0, 1]."""
    if not (p >= 0.0 and p <= 1.0):
        return math.nan
    if p == 1.0:
        return math.inf
    if 0.25 <= p <= 0.75:
        return math.log1p((2.0 * p - 1.0) / (1.0 - p))
    return math.log(p / (1.0 - p))


# ---------------------------------------------------------------- i0e, i1e
# The exponentially scaled modified Bessel functions i0e(x) = exp(-|x|) I0(x) and
# i1e(x) = exp(-|x|) I1(x), as Chebyshev series on three pieces of |x| (the form Cephes uses, on
# narrower pieces: the sum of |c_k| stays near the value, so Clenshaw's rounding stays near an ulp):
# |x| <= 2: i0e(|x|) and i1e(x) / x in t = |x| - 1; 2 < |x| <= 8: sqrt(|x|) i0e and sqrt(|x|) i1e(|x|)
# in t = (|x| - 5) / 3; above, the same in t = 16 / |x| - 1 (smooth in 1/|x|, to 1/sqrt(2 pi) as
# |x| -> inf). The coefficients are the Chebyshev interpolants at 64 nodes computed with mpmath at
# 40 digits, truncated where they fall below 1e-19; summed by Clenshaw's recurrence.
_I0E_NEAR = (  # i0e(x), 0 <= x <= 2, in t = x - 1: c_0 .. c_19
    0.5554620465849032,
    -0.32224785966994146,
    0.0941349608633822,
    -0.022714557101913377,
    0.004543195287670698,
    -0.0007688553318076656,
    0.00011230023567248778,
    -1.4396591689214997e-05,
    1.6424565230958783e-06,
    -1.6867411034015366e-07,
    1.574201294790916e-08,
    -1.34590250765456e-09,
    1.0613894740398771e-10,
    -7.765957566215815e-12,
    5.298940569004349e-13,
    -3.3868488995848243e-14,
    2.0357565009571833e-15,
    -1.154777986735921e-16,
    6.20114611236842e-18,
    -3.16131023960394e-19,
)
_I1E_NEAR = (  # i1e(x) / x, 0 <= x <= 2, in t = x - 1: c_0 .. c_18
    0.25419728307660605,
    -0.18614670648327067,
    0.047922338053106146,
    -0.009789076216141408,
    0.0016662238479520602,
    -0.0002433240014250099,
    3.1112561153598404e-05,
    -3.537110387592967e-06,
    3.6188997442071134e-07,
    -3.365006741839022e-08,
    2.8669319308345316e-09,
    -2.253506636201581e-10,
    1.6438659802941666e-11,
    -1.118540536749965e-12,
    7.130945299391151e-14,
    -4.276171214786366e-15,
    2.420398868895772e-16,
    -1.2971583981874101e-17,
    6.600653920913005e-19,
)
_I0E_MID = (  # sqrt(x) i0e(x), 2 < x <= 8, in t = (x - 5) / 3: c_0 .. c_35
    0.41503975154588446,
    -0.013144803075821733,
    0.00525120858012755,
    -0.001969994566964925,
    0.0006637007431368125,
    -0.0001896529149998172,
    4.060394184058903e-05,
    -3.090453902656693e-06,
    -2.7180493032064222e-06,
    1.9969131812722573e-06,
    -9.193054329140976e-07,
    3.48212938974821e-07,
    -1.1746577800226445e-07,
    3.6710717512145306e-08,
    -1.0909837053421697e-08,
    3.1454453737847334e-09,
    -8.940294901221515e-10,
    2.5361766428800474e-10,
    -7.241393540051394e-11,
    2.0907435851217616e-11,
    -6.113708703138013e-12,
    1.8098794149207732e-12,
    -5.416528999932007e-13,
    1.6360297511468115e-13,
    -4.9795296245537925e-14,
    1.5253097425904762e-14,
    -4.697486190343824e-15,
    1.4533656525505449e-15,
    -4.514662391065136e-16,
    1.4073769717335214e-16,
    -4.4011266630503865e-17,
    1.3802200343443444e-17,
    -4.3395896983869314e-18,
    1.3676243669170777e-18,
    -4.3193487577743986e-19,
    1.36687684728243e-19,
)
_I1E_MID = (  # sqrt(x) i1e(x), 2 < x <= 8, in t = (x - 5) / 3: c_0 .. c_33
    0.35586144888488547,
    0.03245700434846485,
    -0.012215815354309097,
    0.004485035130987122,
    -0.0015640952767874878,
    0.0005057144311404556,
    -0.0001483893478320516,
    3.8599272357822785e-05,
    -8.563546323314483e-06,
    1.4665038237727806e-06,
    -1.13083114055983e-07,
    -4.733767611397081e-08,
    3.104378815091716e-08,
    -1.2045414102802093e-08,
    3.86458651920879e-09,
    -1.1204774858194778e-09,
    3.0641212138181877e-10,
    -8.122866758984229e-11,
    2.1291719206112754e-11,
    -5.597394884568136e-12,
    1.4893417806377918e-12,
    -4.0290937817377765e-13,
    1.1093492491506298e-13,
    -3.105162005649803e-14,
    8.817691183824271e-15,
    -2.534671354126594e-15,
    7.361008821847315e-16,
    -2.1563255883485927e-16,
    6.363759476349324e-17,
    -1.8902328160098313e-17,
    5.646601772386319e-18,
    -1.6953611057163887e-18,
    5.113530849056337e-19,
    -1.5487425124130583e-19,
)
_I0E_LARGE = (  # sqrt(x) i0e(x), x > 8, in t = 16/x - 1: c_0 .. c_28
    0.4022452055070544,
    0.0033691164782556943,
    6.889758346916825e-05,
    2.8913705208347567e-06,
    2.0489185894690638e-07,
    2.266668990498178e-08,
    3.3962320257083865e-09,
    4.94060238822497e-10,
    1.1889147107846439e-11,
    -3.1499165279632416e-11,
    -1.3215811840447713e-11,
    -1.7941785315068062e-12,
    7.180124451383666e-13,
    3.8527783827421426e-13,
    1.54008621752141e-14,
    -4.150569347287222e-14,
    -9.554846698828307e-15,
    3.8116806693526224e-15,
    1.7725601330565263e-15,
    -3.425485619677219e-16,
    -2.8276239805165836e-16,
    3.461222867697461e-17,
    4.46562142029676e-17,
    -4.830504485944182e-18,
    -7.233180487874754e-18,
    9.921475412173699e-19,
    1.193650890845982e-18,
    -2.4887098371508075e-19,
    -1.938426454160906e-19,
)
_I1E_LARGE = (  # sqrt(x) i1e(x), x > 8, in t = 16/x - 1: c_0 .. c_28
    0.38928811750914005,
    -0.009761097491361469,
    -0.00011058893876262371,
    -3.882564808877691e-06,
    -2.512236237870209e-07,
    -2.6314688468895196e-08,
    -3.835380385964237e-09,
    -5.589743462196584e-10,
    -1.8974958123505413e-11,
    3.2526035830154884e-11,
    1.4125807436613782e-11,
    2.0356285441470896e-12,
    -7.198551776245908e-13,
    -4.0835511110921974e-13,
    -2.1015418427726643e-14,
    4.272440016711951e-14,
    1.0420276984128802e-14,
    -3.8144030724370075e-15,
    -1.8803547755107825e-15,
    3.3082023109209285e-16,
    2.96262899764595e-16,
    -3.209525921993424e-17,
    -4.6503053684893586e-17,
    4.414348323071708e-18,
    7.517296310842105e-18,
    -9.314178867326884e-19,
    -1.242193275194891e-18,
    2.4142767194548486e-19,
    2.0269443840532852e-19,
)
_I0E_NEAR_C = np.array(_I0E_NEAR)
_I1E_NEAR_C = np.array(_I1E_NEAR)
_I0E_MID_C = np.array(_I0E_MID)
_I1E_MID_C = np.array(_I1E_MID)
_I0E_LARGE_C = np.array(_I0E_LARGE)
_I1E_LARGE_C = np.array(_I1E_LARGE)


@numba.njit(**_JIT)
def _clenshaw(c, t):
    """sum_k c[k] T_k(t), |t| <= 1."""
    b0 = 0.0
    b1 = 0.0
    t2 = 2.0 * t
    for k in range(c.size - 1, 0, -1):
        b0, b1 = t2 * b0 - b1 + c[k], b0
    return t * b0 - b1 + c[0]


@numba.njit(**_JIT)
def i0e_scalar(x):
    """exp(-|x|) I0(x) of a float64."""
    a = abs(x)
    if a < 1e-6:  # 1 - a + 3a^2/4 - 5a^3/12 ...: exactly 1 at 0
        return (1.0 - a) + 0.75 * a * a
    if a <= 2.0:
        return _clenshaw(_I0E_NEAR_C, a - 1.0)
    if a <= 8.0:
        return _clenshaw(_I0E_MID_C, (a - 5.0) / 3.0) / math.sqrt(a)
    if a == math.inf:
        return 0.0
    return _clenshaw(_I0E_LARGE_C, 16.0 / a - 1.0) / math.sqrt(a)  # also nan


@numba.njit(**_JIT)
def i1e_scalar(x):
    """exp(-|x|) I1(x) of a float64 (odd: the sign of x, -0.0 too)."""
    a = abs(x)
    if a <= 2.0:
        return x * _clenshaw(_I1E_NEAR_C, a - 1.0)
    if a <= 8.0:
        return math.copysign(_clenshaw(_I1E_MID_C, (a - 5.0) / 3.0) / math.sqrt(a), x)
    if a == math.inf:
        return math.copysign(0.0, x)
    return math.copysign(_clenshaw(_I1E_LARGE_C, 16.0 / a - 1.0) / math.sqrt(a), x)  # also nan


# ---------------------------------------------------------------- betaln, xlog1py
# betaln(a, b) = log|B(a, b)| = gammaln(a) + gammaln(b) - gammaln(a + b). Summing the three
# loses everything the large terms cancel (betaln(1e10, 0.5): gammaln(1e10) = 2.2e11, the answer
# -10.9, 6 digits lost), so for a, b > 0, with p = min(a, b), q = max(a, b) (the method of
# R's lbeta): Stirling's series log Γ(x) = (x - 1/2) log x - x + log(2 pi)/2 + ω(x), and
#   p >= 10: -log(q)/2 + log(2 pi)/2 + ω(p) + ω(q) - ω(p+q) + (p - 1/2) log(p/(p+q))
#            + q log1p(-p/(p+q));
#   q >= 10 > p: gammaln(p) + ω(q) - ω(p+q) + p - p log(p+q) + (q - 1/2) log1p(-p/(p+q));
#   both < 10: log(Γ(p) (Γ(q) / Γ(p+q))) (gammaln's sum for p < 1e-300, where Γ(p) overflows).
# ω(x) = sum_k B_2k / (2k (2k-1) x^(2k-1)), k = 1..8, for x >= 10 (the next term < 2e-18).
# Negative arguments: the sum of gammaln (log|B|, SciPy's values at the poles).
_STIRLING = (  # B_2k / (2k (2k - 1)), k = 1..8
    1.0 / 12.0,
    -1.0 / 360.0,
    1.0 / 1260.0,
    -1.0 / 1680.0,
    1.0 / 1188.0,
    -691.0 / 360360.0,
    1.0 / 156.0,
    -3617.0 / 122400.0,
)
(_S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8) = _STIRLING


@numba.njit(**_JIT)
def _stirling_tail(x):
    """ω(x) = log Γ(x) - ((x - 1/2) log x - x + log(2 pi)/2), x >= 10."""
    z = 1.0 / (x * x)
    s = _S8 * z + _S7
    s = s * z + _S6
    s = s * z + _S5
    s = s * z + _S4
    s = s * z + _S3
    s = s * z + _S2
    s = s * z + _S1
    return s / x


@numba.njit(**_JIT)
def betaln_scalar(a, b):
    """log|B(a, b)| of two float64."""
    if a != a or b != b:
        return math.nan
    p = min(a, b)
    q = max(a, b)
    if not p > 0.0 or q == math.inf:  # a pole or negative argument, or an infinite one
        if p > 0.0:
            return -math.inf  # B(p, inf) = 0
        if p == 0.0 or p == -math.inf:  # SciPy's inf (B(0, 0) too)
            return math.inf
        return gammaln_scalar(a) + gammaln_scalar(b) - gammaln_scalar(a + b)
    if p >= 10.0:
        corr = _stirling_tail(p) + _stirling_tail(q) - _stirling_tail(p + q)
        r = p / (p + q) if p + q < math.inf else 1.0 / (1.0 + q / p)  # p + q may overflow
        return (-0.5 * math.log(q) + _LOG_SQRT_2PI + corr) + (p - 0.5) * math.log(r) + q * math.log1p(-r)
    if q >= 10.0:
        corr = _stirling_tail(q) - _stirling_tail(p + q)
        return (math.lgamma(p) + corr) + (p - p * math.log(p + q)) + (q - 0.5) * math.log1p(-p / (p + q))
    if p < 1e-300:
        return math.lgamma(p) + math.lgamma(q) - math.lgamma(p + q)
    return math.log(math.gamma(p) * (math.gamma(q) / math.gamma(p + q)))


@numba.njit(**_JIT)
def xlog1py_scalar(x, y):
    """x log1p(y), 0 where x == 0 (unless y is nan), as scipy.special.xlog1py."""
    if x == 0.0 and y == y:
        return 0.0
    return x * math.log1p(y)


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
ndtr = _unary("ndtr", ndtr_scalar, "ndtr")
log_ndtr = _unary("log_ndtr", log_ndtr_scalar, "log_ndtr")
ndtri = _unary("ndtri", ndtri_scalar, "ndtri")
erfcinv = _unary("erfcinv", erfcinv_scalar, "erfcinv")
logit = _unary("logit", logit_scalar, "logit")
i0e = _unary("i0e", i0e_scalar, "i0e")
i1e = _unary("i1e", i1e_scalar, "i1e")


def _binary(name, scalar, reference):
    """``name`` of two floats or float arrays (broadcast as numpy does; float32 when both are
    float32, else float64): SciPy's function named ``reference`` in plain Python; in numba code
    ``scalar`` per element, computed in float64."""

    def function(a, b):
        return getattr(_scipy_special(), reference)(a, b)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = scalar.py_func.__doc__

    @overload(function, jit_options=dict(nogil=True, error_model="numpy"))
    def _typed(a, b):
        kinds = [t.dtype if isinstance(t, types.Array) else t for t in (a, b)]
        if not all(isinstance(t, types.Float) for t in kinds):
            return None
        dtype = np.float32 if all(t == types.float32 for t in kinds) else np.float64
        if not any(isinstance(t, types.Array) for t in (a, b)):
            return lambda a, b: dtype(scalar(np.float64(a), np.float64(b)))

        def on_arrays(a, b):
            x, y = np.broadcast_arrays(np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64))
            out = np.empty(x.shape, dtype=dtype)
            for index in np.ndindex(x.shape):
                out[index] = scalar(x[index], y[index])
            return out

        return on_arrays

    return function


betaln = _binary("betaln", betaln_scalar, "betaln")
xlog1py = _binary("xlog1py", xlog1py_scalar, "xlog1py")


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
