"""Machine-code helpers the numba backend's generated code calls.

Elementwise composites work on scalars and on arrays of any layout; they are
numba overloads, compiled into the kernel that uses them (and cached with it),
so importing this module compiles nothing. Reductions numba's numpy does not
offer along an axis work on a C-contiguous (rows, reduced) matrix that the
generated code lays out.
"""

import math

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic, overload

from .special import (  # noqa: F401 (the special functions' lowerings)
    betaln,
    digamma,
    erfcinv,
    erfinv,
    gammaln,
    i0e,
    i1e,
    log_ndtr,
    logit,
    ndtr,
    ndtri,
    polygamma,
    xlog1py,
)
from .array_kernels import argsort_last, cumprod_last, cumsum_last  # noqa: F401 (ops/arrays.py's lowerings)
from .memory_kernels import empty, zeros  # noqa: F401 (the fused loops' arrays: huge pages when large)
from .callback_kernels import (  # noqa: F401 (the host_call op's lowerings: sg.root's solver)
    host_call_float32_0,
    host_call_float32_1,
    host_call_float32_2,
    host_call_float64_0,
    host_call_float64_1,
    host_call_float64_2,
)
from .linalg_kernels import cho_inverse, cho_logdet, cho_solve, solve_triangular  # noqa: F401 (ops/linalg.py's lowerings)
from .user_ops import on_install, vectorized  # the user's functions (sg.register_op): _install_user

_JIT = dict(cache=True, nogil=True, error_model="numpy")


def _elementwise(name, scalar, numpy_impl, inline=False):
    """A function of one float scalar or float array (computed element by element by ``scalar``,
    the result in the argument's dtype), for numba code; in plain Python, ``numpy_impl``.
    ``inline``: ``scalar`` takes float64 (float32 goes through it) and is inlined into its
    caller, so that a loop calling it can be vectorised."""
    if inline:
        # the leaves (exp, log, log1p) LLVM inlines itself; what calls them is inlined here,
        # since after LLVM's inlining of the leaves it would be too large for LLVM to inline
        element = (
            numba.njit(**_INLINE)(scalar)
            if not isinstance(scalar, numba.core.dispatcher.Dispatcher)
            else scalar
        )
    else:
        element = numba.njit(nogil=True, error_model="numpy")(scalar)

    def function(x):
        return numpy_impl(x)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = (scalar.py_func if hasattr(scalar, "py_func") else scalar).__doc__

    @overload(
        function, jit_options=dict(nogil=True, error_model="numpy"), inline="always" if inline else "never"
    )
    def _typed(x):
        if isinstance(x, types.Float):
            if inline:
                if x == types.float32:
                    return lambda x: np.float32(element(np.float64(x)))
                return lambda x: element(np.float64(x))
            if x == types.float32:
                return lambda x: np.float32(element(x))
            return lambda x: np.float64(element(x))
        if isinstance(x, types.Array) and isinstance(x.dtype, types.Float):
            arg = _as_float64 if inline else _as_is

            def on_array(x):
                c = np.ascontiguousarray(x)
                out = np.empty(c.shape, dtype=c.dtype)
                flat_in = c.reshape(c.size)
                flat_out = out.reshape(out.size)
                for k in range(flat_in.size):
                    flat_out[k] = element(arg(flat_in[k]))
                return out

            return on_array
        return None

    return function


@numba.njit(nogil=True, inline="always")
def _as_float64(v):
    return np.float64(v)


@numba.njit(nogil=True, inline="always")
def _as_is(v):
    return v


# ---------------------------------------------------------------- exp, log and log1p in arithmetic
# libm's exp, log and log1p are calls LLVM cannot vectorise (numba has no vector math
# library), so a fused loop calling them runs one element at a time. These spell the
# same functions in arithmetic and bit operations only, as the loop's scalar code, so
# a loop of them runs on SIMD lanes; they agree with libm to within 1 ulp, and keep its
# special values (inf, nan, -0.0, subnormal results).
# One element at a time they are slower than libm: only the vector passes of fusion's
# tiles call them (as vexp, vlog, vlog1p, and in vsigmoid, vsoftplus, vlogaddexp).
# They are compiled with one fast-math freedom, 'contract': a*b + c may become one FMA
# (one rounding instead of two), which makes the polynomials a third faster on CPUs that
# have FMA; nan, inf and signed zeros keep their meaning.
#
# exp: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, so n ln2 is exact), exp(r) as
# its Taylor polynomial of degree 13 (the remainder is below 2^-58 relative), times 2^n
# applied in two halves so that results near overflow and subnormal ones round once.
# log: u = 2^k m with m in [sqrt(2)/2, sqrt(2)), log(m) = 2 atanh(f / (2 + f)), f = m - 1,
# the odd series in s = f / (2 + f) as the minimax polynomial fdlibm publishes
# (coefficients below). log1p adds the rounding error of u = 1 + x back as (x - (u - 1)) / u.


def _bitcast(context, builder, sig, args):
    return builder.bitcast(args[0], context.get_value_type(sig.return_type))


@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64, as an int64."""
    if x != types.float64:
        return None
    return types.int64(types.float64), _bitcast


@intrinsic
def _from_bits(typingctx, i):
    """The float64 whose IEEE bits are the int64 ``i``."""
    if i != types.int64:
        return None
    return types.float64(types.int64), _bitcast


def _assume_nonnegative(context, builder, sig, args):
    (i,) = args
    builder.call(builder.module.declare_intrinsic("llvm.assume"), [builder.icmp_signed(">=", i, i.type(0))])
    return i


@intrinsic
def nonnegative(typingctx, i):
    """``i`` (an int64 >= 0), telling LLVM so: a row loop over ``range(lo, hi)`` (a thread's row
    block, a tile's rows) then indexes its arrays without the wraparound of negative indices, as
    ``range(n)`` does (measured, rosen/1e6 in blocks on one thread: 1.45 ms without, 1.22 with,
    the plain loop 1.19)."""
    if i != types.int64:
        return None
    return types.int64(types.int64), _assume_nonnegative


_INLINE = dict(nogil=True, error_model="numpy", inline="always")  # inlined by numba
_LEAF = dict(nogil=True, error_model="numpy", fastmath={"contract"})  # inlined by LLVM; a*b+c as one FMA
_LOG2E = 1.4426950408889634
_ROUND = 6755399441055744.0  # 1.5 * 2^52: x + _ROUND rounds x to an integer in the low bits
_ROUND_BITS = 0x4338000000000000
_LN2_HI = 6.93147180369123816490e-01  # ln 2 with its low 21 bits zero: n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = (
    1.0 / math.factorial(k) for k in range(2, 14)
)
_LG1 = 6.666666666666735130e-01  # fdlibm's log: 2 atanh(s) = 2s + s (s^2 Lg1 + s^4 Lg2 + ...)
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # sqrt(2)/2
_ONE_BITS = 0x3FF0000000000000
_MANTISSA = 0x000FFFFFFFFFFFFF
_TWO52_BITS = 0x4330000000000000  # 2^52
_TWO52_PLUS_BIAS = 4503599627371519.0  # 2^52 + 1023
_TINY = 2.2250738585072014e-308  # the smallest normal float64
_TWO54 = 18014398509481984.0


@numba.njit(**_LEAF)
def _exp_reduced(t, r):
    """exp(n ln2 + r), n held in the bits of t = n + _ROUND, |r| <= ln2/2: the polynomial, then
    the scaling by 2^n in two halves (so a result near the subnormals is rounded once)."""
    p = _E13 * r + _E12
    p = p * r + _E11
    p = p * r + _E10
    p = p * r + _E9
    p = p * r + _E8
    p = p * r + _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + 1.0
    p = p * r + 1.0
    biased = _bits(t) - _ROUND_BITS + 2048  # n + 2048, in [0, 4096)
    half = (biased >> 1) - 1024
    rest = biased - 2048 - half
    return p * _from_bits((half + 1023) << 52) * _from_bits((rest + 1023) << 52)


@numba.njit(**_LEAF)
def _exp64(x):
    v = min(max(x, -746.0), 710.0)  # exp is 0 below -745.14 and overflows past 709.79; nan passes
    t = v * _LOG2E + _ROUND
    n = t - _ROUND
    return _exp_reduced(t, (v - n * _LN2_HI) - n * _LN2_LO)


@numba.njit(**_LEAF)
def _log_reduced(u, k0, c):
    """log(u * 2^k0) + c for a positive normal ``u`` (c a small correction)."""
    bits = _bits(u) + (_ONE_BITS - _SQRT_HALF_BITS)
    k = _from_bits(((bits >> 52) & 0x7FF) | _TWO52_BITS) - _TWO52_PLUS_BIAS + k0
    f = _from_bits((bits & _MANTISSA) + _SQRT_HALF_BITS) - 1.0
    half_f2 = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
    return s * (half_f2 + r) + (k * _LN2_LO + c) - half_f2 + f + k * _LN2_HI


@numba.njit(**_LEAF)
def _log_edges(u, out):
    """``out``, the reduced log of ``u``, with libm's values where ``u`` is 0, negative, inf or nan."""
    if u == 0.0:
        out = -math.inf
    if u < 0.0:
        out = math.nan
    if u == math.inf or u != u:
        out = u
    return out


@numba.njit(**_LEAF)
def _log64(x):
    subnormal = x < _TINY
    u = x * _TWO54 if subnormal else x
    return _log_edges(x, _log_reduced(u, -54.0 if subnormal else 0.0, 0.0))


@numba.njit(**_LEAF)
def _log1p64(x):
    u = 1.0 + x
    # the rounding error of 1 + x, relative to u (exact enough whichever operand is larger)
    c = ((1.0 - (u - x)) if u >= 4.0 else (x - (u - 1.0))) / u
    out = _log_edges(u, _log_reduced(u, 0.0, c))
    if x == 0.0:
        out = x  # keeps -0.0
    return out


# ---------------------------------------------------------------- sin, cos, tan, tanh, arctan, erf, pow in arithmetic
# The same idea as exp and log above, for the rest of the elementwise functions a fused loop
# calls: argument reduction plus a polynomial, in arithmetic and selects only, so a vector
# pass of a tile (``tiling``) runs them on SIMD lanes. Each is within 2 ulp of numpy (libm)
# on its whole domain and keeps libm's special values (signed zeros, subnormals, inf, nan);
# float32 goes through the float64 kernel and rounds once. tests/codegen/test_vector_math.py
# measures them.
#
# sin, cos (and tan): x = n pi/2 + r, n = round(x 2/pi), with pi/2 in a Cody-Waite split of
# three 33-bit parts and a 53-bit tail (each n * part is exact for |n| < 2^20, and the sums
# are carried as two doubles, r = hi + lo, so a cancellation near a multiple of pi/2 keeps 53
# good bits); sin and cos of |r| <= pi/4 as their Taylor polynomials (to r^17 and r^16: the
# remainders are below 2^-62 relative), picked and signed by n mod 4. They hold for |x| up to
# 2^19 pi/2 only (no Payne-Hanek reduction here; a call to libm inside would keep LLVM from
# vectorising the loop): v<op>_far(x) says x is beyond it (or inf), and the tiled loop runs such a
# tile's pass again on libm (tiling: the ops' record says ``lanes_range``). sin, cos, tan are
# inlined by numba (too large for LLVM to inline once their leaves are).
# tanh: for |x| < 0.9 x + x^3 P(x^2), P fitted below; above, 1 - 2 / (exp(2|x|) + 1) on the
# arithmetic exp. arctan: |x| reduced to |t| <= 7/16 around 0, 1/2, 1, 3/2 and infinity (as
# fdlibm does, t = (|x| - c) / (1 + c |x|), or -1/|x|), atan(c) in two parts plus
# t + t^3 Q(t^2). P and Q are least-squares fits of relative error at 400 Chebyshev nodes in
# 50-digit arithmetic (mpmath), rounded to float64: max relative error 1.3e-17 and 8.7e-18
# (2^-53 is 1.1e-16). The split of pi/2 and atan(c)'s two parts are the same arithmetic:
# tests/codegen/test_vector_math.py re-derives every constant here.
_TWO_OVER_PI = 0.6366197723675814
_PIO2_1 = 1.5707963267341256  # pi/2 rounded to 33 bits
_PIO2_2 = 6.077100506303966e-11  # the rest, to 33 bits
_PIO2_3 = 2.0222662487111665e-21  # the rest, to 33 bits
_PIO2_4 = 8.4784276603689e-32  # the rest, to 53 bits (what is left is below 1e-48)
_TRIG_LIMIT = 2.0**19 * math.pi / 2  # |n| <= 2^19 + 1, well inside the exact range
_S = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 9))  # sin: -1/3!, 1/5!, ..., 1/17!
_C = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(2, 9))  # cos: 1/4!, -1/6!, ..., 1/16!
_TANH_P = (
    -0.33333333333332965,
    0.1333333333329268,
    -0.05396825395237456,
    0.021869488220560084,
    -0.008863231789029726,
    0.0035920991592119657,
    -0.001455681217526506,
    0.0005894500928657519,
    -0.00023755068890290098,
    9.375188056316518e-05,
    -3.46161336862638e-05,
    1.087883674448358e-05,
    -2.467477884735063e-06,
    2.890296528802959e-07,
)
_ATAN_Q = (
    -0.33333333333332893,
    0.19999999999867113,
    -0.14285714271731004,
    0.1111111037325344,
    -0.09090886352439195,
    0.07691864404663165,
    -0.06660958601302765,
    0.058328556472632534,
    -0.04974109053328455,
    0.036470903026744904,
    -0.01622839251961969,
)
_ATAN_HI = (0.4636476090008061, 0.7853981633974483, 0.982793723247329, 1.5707963267948966)
_ATAN_LO = (2.2698777452961687e-17, 3.061616997868383e-17, 1.3903311031230998e-17, 6.123233995736766e-17)


@numba.njit(**_LEAF)
def _two_sum(a, b):
    """s + e = a + b exactly, s = fl(a + b) (Knuth's TwoSum: no ordering of |a|, |b| needed)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@numba.njit(**_LEAF)
def _reduce_pi2(x):
    """(hi, lo, q): x = n pi/2 + hi + lo with |hi + lo| <= pi/4 (a little more from rounding n),
    q = n mod 4; exact enough for |x| <= _TRIG_LIMIT."""
    t = x * _TWO_OVER_PI + _ROUND
    n = t - _ROUND
    q = _bits(t) & 3
    a = x - n * _PIO2_1  # exact: n * _PIO2_1 has at most 53 bits, and is within a factor 2 of x
    r, e1 = _two_sum(a, -(n * _PIO2_2))
    r, e2 = _two_sum(r, -(n * _PIO2_3))
    hi, e3 = _two_sum(r, (e1 + e2) - n * _PIO2_4)
    return hi, e3, q


@numba.njit(**_LEAF)
def _sin_poly(hi, lo, z):
    p = _S[7] * z + _S[6]
    p = p * z + _S[5]
    p = p * z + _S[4]
    p = p * z + _S[3]
    p = p * z + _S[2]
    p = p * z + _S[1]
    p = p * z + _S[0]
    # sin(hi + lo) = sin(hi) + lo cos(hi), cos(hi) = 1 - z/2 to the accuracy lo needs
    return hi + (hi * z * p + (lo - 0.5 * z * lo))


@numba.njit(**_LEAF)
def _cos_poly(hi, lo, z):
    p = _C[6] * z + _C[5]
    p = p * z + _C[4]
    p = p * z + _C[3]
    p = p * z + _C[2]
    p = p * z + _C[1]
    p = p * z + _C[0]
    half_z = 0.5 * z
    w = 1.0 - half_z
    # cos(hi + lo) = cos(hi) - lo sin(hi); (1 - w) - half_z is the rounding error of w
    return w + (((1.0 - w) - half_z) + (z * z * p - hi * lo))


def _sincos64(x):
    """(sin x, cos x), sharing the reduction."""
    hi, lo, q = _reduce_pi2(x)
    z = hi * hi
    s = _sin_poly(hi, lo, z)
    c = _cos_poly(hi, lo, z)
    sin_x = c if q & 1 else s
    cos_x = s if q & 1 else c
    sin_x = -sin_x if q & 2 else sin_x
    cos_x = -cos_x if (q + 1) & 2 else cos_x
    if x == 0.0:
        sin_x = x  # keeps -0.0
    return sin_x, cos_x


# sin and cos in scalar code (a rolled recurrence, a loop that stays scalar): the same
# polynomials, with branches a scalar loop may take: for |x| <= pi/4 no reduction and the
# polynomial in Estrin's scheme (a shorter chain of dependent operations than Horner's: a
# recurrence x = f(sin x) waits on it every step); up to 2^19 pi/2 the reduction above; beyond
# it (and inf, nan) libm's. sincos computes both from one reduction.
_PIO4 = math.pi / 4


@numba.njit(**_LEAF)
def _sin_near0(x):
    """sin x for |x| <= pi/4 (and x != 0: -0.0 would come out +0.0)."""
    z = x * x
    z2 = z * z
    p = (_S[0] + _S[1] * z + (_S[2] + _S[3] * z) * z2) + (_S[4] + _S[5] * z + (_S[6] + _S[7] * z) * z2) * (
        z2 * z2
    )
    return x + x * z * p


@numba.njit(**_LEAF)
def _cos_near0(x):
    """cos x for |x| <= pi/4."""
    z = x * x
    z2 = z * z
    p = (_C[0] + _C[1] * z + (_C[2] + _C[3] * z) * z2) + (_C[4] + _C[5] * z + _C[6] * z2) * (z2 * z2)
    half_z = 0.5 * z
    w = 1.0 - half_z
    return w + (((1.0 - w) - half_z) + z2 * p)


def _sin64(x):
    hi, lo, q = _reduce_pi2(x)
    z = hi * hi
    out = _cos_poly(hi, lo, z) if q & 1 else _sin_poly(hi, lo, z)
    out = -out if q & 2 else out
    if x == 0.0:
        out = x  # keeps -0.0
    return out


def _cos64(x):
    hi, lo, q = _reduce_pi2(x)
    z = hi * hi
    out = _sin_poly(hi, lo, z) if q & 1 else _cos_poly(hi, lo, z)
    out = -out if (q + 1) & 2 else out
    return out


@numba.njit(**_LEAF)
def _two_prod(a, b):
    """p + e = a b exactly, p = fl(a b) (Dekker's product on Veltkamp's halves: no FMA needed)."""
    p = a * b
    c = 134217729.0 * a  # 2^27 + 1
    ah = c - (c - a)
    al = a - ah
    c = 134217729.0 * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _tan64(x):
    hi, lo, q = _reduce_pi2(x)
    z = hi * hi
    # sin r = hi + ts and cos r = w + tc as two doubles each (the polynomials' own sums)
    p = _S[7] * z + _S[6]
    p = p * z + _S[5]
    p = p * z + _S[4]
    p = p * z + _S[3]
    p = p * z + _S[2]
    p = p * z + _S[1]
    p = p * z + _S[0]
    ts = hi * z * p + (lo - 0.5 * z * lo)
    p = _C[6] * z + _C[5]
    p = p * z + _C[4]
    p = p * z + _C[3]
    p = p * z + _C[2]
    p = p * z + _C[1]
    p = p * z + _C[0]
    half_z = 0.5 * z
    w = 1.0 - half_z
    tc = ((1.0 - w) - half_z) + (z * z * p - hi * lo)
    odd = q & 1
    num_h, num_l, den_h, den_l = (w, tc, hi, ts) if odd else (hi, ts, w, tc)
    den = den_h + den_l
    t0 = (num_h + num_l) / den
    # one correction step: t0 + (num - t0 den) / den, the product t0 den_h exact
    ph, pl = _two_prod(t0, den_h)
    out = t0 + (((num_h - ph) - pl) + (num_l - t0 * den_l)) / den
    out = -out if odd else out
    if x == 0.0:
        out = x  # keeps -0.0
    return out


@numba.njit(**_LEAF)
def _tanh64(x):
    a = abs(x)
    z = a * a
    p = _TANH_P[13] * z + _TANH_P[12]
    p = p * z + _TANH_P[11]
    p = p * z + _TANH_P[10]
    p = p * z + _TANH_P[9]
    p = p * z + _TANH_P[8]
    p = p * z + _TANH_P[7]
    p = p * z + _TANH_P[6]
    p = p * z + _TANH_P[5]
    p = p * z + _TANH_P[4]
    p = p * z + _TANH_P[3]
    p = p * z + _TANH_P[2]
    p = p * z + _TANH_P[1]
    p = p * z + _TANH_P[0]
    small = a + a * z * p
    large = 1.0 - 2.0 / (_exp64(a + a) + 1.0)  # exp overflows to inf past 355: 1 - 0
    return math.copysign(small if a < 0.9 else large, x)


@numba.njit(**_LEAF)
def _atan64(x):
    a = abs(x)
    # t = (a - c) / (1 + c a) around c = 0, 1/2, 1, 3/2; -1/a beyond 39/16 (and for nan)
    if a < 0.4375:
        num, den, base_hi, base_lo = a, 1.0, 0.0, 0.0
    elif a < 0.6875:
        num, den, base_hi, base_lo = 2.0 * a - 1.0, 2.0 + a, _ATAN_HI[0], _ATAN_LO[0]
    elif a < 1.1875:
        num, den, base_hi, base_lo = a - 1.0, a + 1.0, _ATAN_HI[1], _ATAN_LO[1]
    elif a < 2.4375:
        num, den, base_hi, base_lo = a - 1.5, 1.0 + 1.5 * a, _ATAN_HI[2], _ATAN_LO[2]
    else:
        num, den, base_hi, base_lo = -1.0, a, _ATAN_HI[3], _ATAN_LO[3]
    t = num / den
    z = t * t
    p = _ATAN_Q[10] * z + _ATAN_Q[9]
    p = p * z + _ATAN_Q[8]
    p = p * z + _ATAN_Q[7]
    p = p * z + _ATAN_Q[6]
    p = p * z + _ATAN_Q[5]
    p = p * z + _ATAN_Q[4]
    p = p * z + _ATAN_Q[3]
    p = p * z + _ATAN_Q[2]
    p = p * z + _ATAN_Q[1]
    p = p * z + _ATAN_Q[0]
    out = base_hi + ((t * z * p + base_lo) + t)
    return math.copysign(out, x)


# pow's exponents that are sqrt forms (the constants pow's record lets onto lanes: elementwise.py
# POW_ON_LANES and small integers), with np.power's values at -0.0 and -inf; any other exponent is libm's pow
@numba.njit(**_LEAF)
def _pow64(a, b):
    """a ** b, in sqrt for b = 0.5, -0.5, 1.5 (within 1 ulp), in products for the integers -3 to 4
    (elementwise.py POW_BY_PRODUCTS)."""
    u = a + 0.0  # -0.0 becomes +0.0, as pow has it
    if b == 0.5:
        out = math.inf if a == -math.inf else math.sqrt(u)
    elif b == -0.5:
        out = 0.0 if a == -math.inf else 1.0 / math.sqrt(u)
    elif b == 1.5:
        out = math.inf if a == -math.inf else u * math.sqrt(u)
    elif b == math.floor(b) and -3.0 <= b <= 4.0:  # elementwise.py's POW_BY_PRODUCTS
        # a small integer exponent: products by squaring (numba's a ** k; within 1 ulp away from
        # overflow and underflow), folded to a few multiplications for a constant b
        k, p, x = int(abs(b)), 1.0, a
        while k:
            if k & 1:
                p *= x
            x *= x
            k >>= 1
        out = p if b >= 0 else 1.0 / p
    else:
        out = math.pow(a, b)
    return out


# pow for any exponent (vpow_general; kernels call it through vpow_tile, compiled once: numba's
# inlining of it into a kernel costs seconds of build): |a|^b = exp(b log|a|), log|a| and the
# product in double-double
# (the exponent's error is the result's relative error, and b log|a| reaches 745): log|a| =
# k ln2 + 2 atanh(s), s = f / (2 + f), f = m - 1 as in _log_reduced, with s, 2 s^3 / 3 and the
# sums in two doubles and 2 s^5 (1/5 + s^2/7 + ...) to s^27 (relative 2^-64) in one; exp of the
# two-double exponent as _exp64 does, its low part added to the reduced argument. Then pow's
# special values: signs of negative bases by integer exponents, nan for negative bases by others,
# zeros, infinities, 1 ** anything, anything ** 0.
_TWO52 = 4503599627370496.0  # 2^52
_TWO_THIRDS_HI = 2.0 / 3.0
_TWO_THIRDS_LO = 3.700743415417188e-17  # 2/3 - _TWO_THIRDS_HI
_ATANH_TAIL = tuple(2.0 / (2 * j + 1) for j in range(2, 14))  # 2/5, 2/7, ..., 2/27


@numba.njit(**_INLINE)  # too large for LLVM to inline along with its leaves
def _log_dd(u):
    """log(u) as two doubles (hi, lo), |lo| <= ulp(hi)/2, about 2^-64 relative, for a finite u > 0."""
    subnormal = u < _TINY
    v = u * _TWO54 if subnormal else u
    bits = _bits(v) + (_ONE_BITS - _SQRT_HALF_BITS)
    k = _from_bits(((bits >> 52) & 0x7FF) | _TWO52_BITS) - _TWO52_PLUS_BIAS - (54.0 if subnormal else 0.0)
    f = _from_bits((bits & _MANTISSA) + _SQRT_HALF_BITS) - 1.0  # exact
    den = 2.0 + f
    den_lo = f - (den - 2.0)  # exact: 2 + f = den + den_lo
    s = f / den
    ph, pl = _two_prod(s, den)
    s_lo = (((f - ph) - pl) - s * den_lo) / den
    z = s * s
    tail = _ATANH_TAIL[11] * z + _ATANH_TAIL[10]
    tail = tail * z + _ATANH_TAIL[9]
    tail = tail * z + _ATANH_TAIL[8]
    tail = tail * z + _ATANH_TAIL[7]
    tail = tail * z + _ATANH_TAIL[6]
    tail = tail * z + _ATANH_TAIL[5]
    tail = tail * z + _ATANH_TAIL[4]
    tail = tail * z + _ATANH_TAIL[3]
    tail = tail * z + _ATANH_TAIL[2]
    tail = tail * z + _ATANH_TAIL[1]
    tail = tail * z + _ATANH_TAIL[0]
    tail = tail * (z * z * s)
    # s^3 and 2 s^3 / 3 in two doubles
    sq, sq_lo = _two_prod(s, s)
    sq_lo += 2.0 * s * s_lo
    cu, cu_lo = _two_prod(sq, s)
    cu_lo += sq_lo * s + sq * s_lo
    t, t_lo = _two_prod(cu, _TWO_THIRDS_HI)
    t_lo += cu_lo * _TWO_THIRDS_HI + cu * _TWO_THIRDS_LO
    h, e1 = _two_sum(2.0 * s, t)
    lo = e1 + (2.0 * s_lo + t_lo + tail)
    g, e2 = _two_sum(k * _LN2_HI, h)
    lo = e2 + (lo + k * _LN2_LO)
    hi = g + lo
    return hi, lo - (hi - g)


@numba.njit(**_LEAF)
def _exp_dd(y, y_lo):
    """exp(y + y_lo), |y_lo| <= ulp(y)/2, as _exp64 (y_lo ignored where y is clamped)."""
    v = min(max(y, -746.0), 710.0)
    low = y_lo if v == y else 0.0
    t = v * _LOG2E + _ROUND
    n = t - _ROUND
    return _exp_reduced(t, ((v - n * _LN2_HI) - n * _LN2_LO) + low)


def _pow_general(a, b):
    """a ** b for any float a, b, with pow's special values (C99, numpy's np.power on arrays)."""
    u = abs(a)
    finite = u < math.inf and u > 0.0
    l_hi, l_lo = _log_dd(u if finite else 1.0)
    y, e = _two_prod(b, l_hi)
    y_lo = e + b * l_lo if abs(y) < 1e300 else 0.0  # (b = +-inf: y is +-inf or nan, no low part)
    h = y + y_lo
    r = _exp_dd(h, y_lo - (h - y))
    # whether b is an integer, and an odd one, in arithmetic (adding 2^52 rounds to an integer)
    t = abs(b)
    whole = t >= _TWO52 or t == (t + _TWO52) - _TWO52  # also b = +-inf
    h = 0.5 * t
    odd = whole and t < 2.0 * _TWO52 and ((_bits(t) & 1) == 1 if t >= _TWO52 else h != (h + _TWO52) - _TWO52)
    negative = _bits(a) < 0  # -0.0 too
    # a = +-0 or +-inf: 0 or inf by the sign of b (and of ln|a|), the sign of a for odd b
    edge = (math.inf if b < 0.0 else 0.0) if u == 0.0 else (0.0 if b < 0.0 else math.inf)
    out = r if finite else edge
    out = -out if negative and odd else out
    out = math.nan if a < 0.0 and a > -math.inf and not whole else out
    out = 1.0 if u == 1.0 and (b == math.inf or b == -math.inf) else out  # (-1) ** inf
    out = a + b if a != a or b != b else out
    return 1.0 if b == 0.0 or a == 1.0 else out


# erf: fdlibm's rational approximations (s_erf.c, within 1 ulp), on four ranges of |x| whose
# coefficients a loop on lanes selects (all four padded to one degree: a zero leading coefficient
# leaves a Horner sum as it was): x + x P(x^2)/Q(x^2) below 0.84375; erx + P(s)/Q(s), s = |x| - 1,
# below 1.25; 1 - exp(-z^2 - 0.5625) exp((z - |x|)(z + |x|) + P(s)/Q(s)) / |x|, s = 1/x^2 and z
# = |x| with its low 32 bits cleared (z^2 exact), below 1/0.35 and below 6 (two sets); +-1 beyond.
_ERX = 8.45062911510467529297e-01
_ERF_P = (
    (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
     -5.77027029648944159157e-03, -2.37630166566501626084e-05, 0.0, 0.0, 0.0),
    (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
     3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
     -2.16637559486879084300e-03, 0.0),
    (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e01,
     -6.23753324503260060396e01, -1.62396669462573470355e02, -1.84605092906711035994e02,
     -8.12874355063065934246e01, -9.81432934416914548592e00),
    (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e01,
     -1.60636384855821916062e02, -6.37566443368389627722e02, -1.02509513161107724954e03,
     -4.83519191608651397019e02, 0.0),
)  # fmt: skip
_ERF_Q = (
    (3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
     1.32494738004321644526e-04, -3.96022827877536812320e-06, 0.0, 0.0, 0.0),
    (1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
     1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02, 0.0, 0.0),
    (1.96512716674392571292e01, 1.37657754143519042600e02, 4.34565877475229228821e02,
     6.45387271733267880336e02, 4.29008140027567833386e02, 1.08635005541779435134e02,
     6.57024977031928170135e00, -6.04244152148580987438e-02),
    (3.03380607434824582924e01, 3.25792512996573918826e02, 1.53672958608443695994e03,
     3.19985821950859553908e03, 2.55305040643316442583e03, 4.74528541206955367215e02,
     -2.24409524465858183362e01, 0.0),
)  # fmt: skip


@numba.njit(**_LEAF)
def _sel(b1, b2, b3, table, j):
    """table[k][j] for the range k = b1 + b2 + b3 (b1 >= b2 >= b3): selects, which a loop puts on lanes."""
    return table[3][j] if b3 else table[2][j] if b2 else table[1][j] if b1 else table[0][j]


@numba.njit(**_LEAF)
def _ratio(t, b1, b2, b3):
    """P(t) / Q(t), the rational function of erf's range b1 + b2 + b3."""
    n = _sel(b1, b2, b3, _ERF_P, 7) * t + _sel(b1, b2, b3, _ERF_P, 6)
    n = n * t + _sel(b1, b2, b3, _ERF_P, 5)
    n = n * t + _sel(b1, b2, b3, _ERF_P, 4)
    n = n * t + _sel(b1, b2, b3, _ERF_P, 3)
    n = n * t + _sel(b1, b2, b3, _ERF_P, 2)
    n = n * t + _sel(b1, b2, b3, _ERF_P, 1)
    n = n * t + _sel(b1, b2, b3, _ERF_P, 0)
    d = _sel(b1, b2, b3, _ERF_Q, 7) * t + _sel(b1, b2, b3, _ERF_Q, 6)
    d = d * t + _sel(b1, b2, b3, _ERF_Q, 5)
    d = d * t + _sel(b1, b2, b3, _ERF_Q, 4)
    d = d * t + _sel(b1, b2, b3, _ERF_Q, 3)
    d = d * t + _sel(b1, b2, b3, _ERF_Q, 2)
    d = d * t + _sel(b1, b2, b3, _ERF_Q, 1)
    d = d * t + _sel(b1, b2, b3, _ERF_Q, 0)
    return n / (d * t + 1.0)


def _erf64(x):
    a = abs(x)
    b1, b2, b3 = a >= 0.84375, a >= 1.25, a >= 1 / 0.35
    t = (1.0 / (a * a) if b2 else a - 1.0) if b1 else x * x
    r = _ratio(t, b1, b2, b3)
    z = _from_bits(_bits(a) & -4294967296)  # the low 32 bits cleared: z * z is exact
    tail = _exp64(-z * z - 0.5625) * _exp64((z - a) * (z + a) + r) / a
    big = 1.0 if a >= 6.0 else 1.0 - tail
    far = big if b2 else _ERX + r
    out = (far if x > 0.0 else -far) if b1 else x + x * r  # (copysign would keep the loop off lanes)
    return x if x != x else out


def _sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for large |x|.

    Spelled with ``exp(-|x|)``, as softplus and logaddexp are, so a kernel that needs
    the value and the derivative of one of them computes the exponential once."""
    e = math.exp(-abs(x))
    if x >= 0:
        return 1 / (1 + e)
    return e / (1 + e)


def _softplus(x):
    """log(1 + exp(x)), without overflow."""
    return max(x, 0) + math.log1p(math.exp(-abs(x)))


def _relu(x):
    """max(x, 0); NaN stays NaN."""
    return x if x > 0 else x * 0


def _erf(x):
    """The error function."""
    return math.erf(x)


def _logaddexp_scalar(a, b):
    """log(exp(a) + exp(b)) = max(a, b) + log1p(exp(-|b - a|)); a tie is a + log(2).

    The exponential comes first, outside the branches, so that a sigmoid of the same
    gap later in the kernel (the derivative) reuses it."""
    d = b - a
    e = math.exp(-abs(d))
    if a == b:
        return a + _LOG2  # also inf + inf
    if d != d:
        return d  # nan in, nan out
    return (a if d < 0 else b) + math.log1p(e)


# the same three on the arithmetic exp and log1p, without branches: for loops on SIMD lanes


def _vsigmoid(x):
    """sigmoid(x), on SIMD lanes in a loop."""
    e = _exp64(-abs(x))
    return (1.0 if x >= 0 else e) / (1.0 + e)


def _vsoftplus(x):
    """softplus(x), on SIMD lanes in a loop."""
    return max(x, 0.0) + _log1p64(_exp64(-abs(x)))


def _vlogaddexp_scalar(a, b):
    """logaddexp(a, b), on SIMD lanes in a loop: the special cases are selected last."""
    d = b - a
    out = (a if d < 0 else b) + _log1p64(_exp64(-abs(d)))
    if d != d:
        out = d  # nan in, nan out
    if a == b:
        out = a + _LOG2  # also inf + inf (whose difference is nan)
    return out


def _np(fn):
    return lambda x: np.vectorize(fn, otypes=[np.asarray(x).dtype])(x)


sigmoid = _elementwise("sigmoid", _sigmoid, _np(_sigmoid))
softplus = _elementwise("softplus", _softplus, _np(_softplus))
relu = _elementwise("relu", _relu, _np(_relu))
erf = _elementwise("erf", _erf, _np(_erf))
verf = _elementwise("verf", _erf64, _np(_erf), inline=True)
vexp = _elementwise("vexp", _exp64, np.exp, inline=True)
vlog = _elementwise("vlog", _log64, np.log, inline=True)
vlog1p = _elementwise("vlog1p", _log1p64, np.log1p, inline=True)
vsigmoid = _elementwise("vsigmoid", _vsigmoid, _np(_sigmoid), inline=True)
vsoftplus = _elementwise("vsoftplus", _vsoftplus, _np(_softplus), inline=True)
_sin_inline = numba.njit(**_INLINE)(_sin64)
_cos_inline = numba.njit(**_INLINE)(_cos64)
_sincos_inline = numba.njit(**_INLINE)(_sincos64)
vsin = _elementwise("vsin", _sin_inline, np.sin, inline=True)
vcos = _elementwise("vcos", _cos_inline, np.cos, inline=True)
vtan = _elementwise("vtan", _tan64, np.tan, inline=True)
vtanh = _elementwise("vtanh", _tanh64, np.tanh, inline=True)


# Small enough for LLVM to inline them into the kernel (numba's inlining of their branches leaves
# variables its SSA pass warns about); beyond pi/4 they call a function.


@numba.njit(**_JIT)  # called, not inlined: compiled once into numba's disk cache
def _sincos_away(x):
    """(sin x, cos x) for |x| > pi/4: reduced, or libm's beyond 2^19 pi/2 (and inf, nan)."""
    if abs(x) <= _TRIG_LIMIT:
        return _sincos_inline(x)
    return math.sin(x), math.cos(x)


@numba.njit(**_JIT)  # called, not inlined: compiled once into numba's disk cache
def _sin_away(x):
    return _sin_inline(x) if abs(x) <= _TRIG_LIMIT else math.sin(x)


@numba.njit(**_JIT)  # called, not inlined: compiled once into numba's disk cache
def _cos_away(x):
    return _cos_inline(x) if abs(x) <= _TRIG_LIMIT else math.cos(x)


@numba.njit(**_LEAF)
def _ssin64(x):
    """sin x in scalar code."""
    if abs(x) <= _PIO4:
        return x if x == 0.0 else _sin_near0(x)
    return _sin_away(x)


@numba.njit(**_LEAF)
def _scos64(x):
    """cos x in scalar code."""
    return _cos_near0(x) if abs(x) <= _PIO4 else _cos_away(x)


@numba.njit(**_LEAF)
def _ssincos64(x):
    """(sin x, cos x) in scalar code, one reduction for both."""
    if abs(x) <= _PIO4:
        return (x if x == 0.0 else _sin_near0(x)), _cos_near0(x)
    return _sincos_away(x)


# sin and cos for |x| <= 0.15 in a rolled loop: x + x^3 P(x^2) and 1 - x^2/2 + x^4 Q(x^2), P and Q
# of degree 3 (minimax fits of the relative error on [0, 0.15^2] in 50-digit arithmetic (mpmath,
# Remez), rounded to float64: max relative error 5.2e-19 and 6.8e-22; 2^-53 is 1.1e-16). Four
# dependent steps from x to sin x (x^2; x^4, x^3 and P's two halves; P; the last fma) against
# five for the polynomial up to pi/4: a recurrence x = f(sin x) whose x stays small waits on this
# chain every step. (Up to 0.2 the fit's error is 0.08 ulp: 2.7% of sin's results misrounded
# there, against 0.15% on the longer polynomial and on this one up to 0.15.)
_SIN_SMALL = 0.15
_SIN_SMALL_P = (-0.16666666666666627, 0.00833333333313722, -0.00019841267147073987, 2.754323080554531e-06)
_COS_SMALL_P = (0.04166666666666664, -0.001388888888872545, 2.480158505630914e-05, -2.7545578443285005e-07)


@numba.njit(**_LEAF)
def _sin_small(x):
    """sin x for |x| <= _SIN_SMALL (and x != 0: -0.0 would come out +0.0)."""
    z = x * x
    p = (_SIN_SMALL_P[0] + _SIN_SMALL_P[1] * z) + (z * z) * (_SIN_SMALL_P[2] + _SIN_SMALL_P[3] * z)
    return x + (x * z) * p


@numba.njit(**_LEAF)
def _cos_small(x):
    """cos x for |x| <= _SIN_SMALL."""
    z = x * x
    z2 = z * z
    p = (_COS_SMALL_P[0] + _COS_SMALL_P[1] * z) + z2 * (_COS_SMALL_P[2] + _COS_SMALL_P[3] * z)
    half_z = 0.5 * z
    w = 1.0 - half_z
    return w + (((1.0 - w) - half_z) + z2 * p)


@numba.njit(**_JIT)  # called, not inlined: compiled once into numba's disk cache
def ssin(x):
    """sin of a float64 in a rolled loop's body (the op record's ``serial``): for |x| <= pi/4 the
    arithmetic kernel (a recurrence's chain of dependent statements waits for no libm call; a
    shorter polynomial for |x| <= _SIN_SMALL), beyond it libm's (so that what the kernel links is
    small)."""
    a = abs(x)
    if a <= _SIN_SMALL:
        return x if x == 0.0 else _sin_small(x)
    if a <= _PIO4:
        return _sin_near0(x)
    return math.sin(x)


@numba.njit(**_JIT)  # called, not inlined: compiled once into numba's disk cache
def scos(x):
    """cos of a float64 in a rolled loop's body (see ssin)."""
    a = abs(x)
    if a <= _SIN_SMALL:
        return _cos_small(x)
    return _cos_near0(x) if a <= _PIO4 else math.cos(x)


sin = _elementwise("sin", _ssin64, np.sin, inline=True)
cos = _elementwise("cos", _scos64, np.cos, inline=True)


def sincos(x):
    """(sin x, cos x) of a float, one argument reduction for both (scalar code); numpy's in plain Python."""
    return np.sin(x), np.cos(x)


def vsincos(x):
    """(sin x, cos x) of a float for loops on SIMD lanes (see vsin_far); numpy's in plain Python."""
    return np.sin(x), np.cos(x)


def _sincos_overload(element):
    def typed(x):
        if not isinstance(x, types.Float):
            return None
        if x == types.float32:

            def on_float32(x):
                s, c = element(np.float64(x))
                return np.float32(s), np.float32(c)

            return on_float32
        return lambda x: element(np.float64(x))

    return typed


overload(sincos, jit_options=dict(nogil=True, error_model="numpy"), inline="always")(
    _sincos_overload(_ssincos64)
)
overload(vsincos, jit_options=dict(nogil=True, error_model="numpy"), inline="always")(
    _sincos_overload(_sincos_inline)
)


@numba.njit(**_INLINE)
def vsin_far(x):
    """Whether x is beyond the range of vsin, vcos and vtan (|x| > 2^19 pi/2, or inf): libm's then."""
    return abs(x) > _TRIG_LIMIT


vcos_far = vtan_far = vsin_far
varctan = _elementwise("varctan", _atan64, np.arctan, inline=True)

_LOG2 = math.log(2.0)
_logaddexp_element = numba.njit(nogil=True, error_model="numpy")(_logaddexp_scalar)
_vlogaddexp_element = numba.njit(**_INLINE)(_vlogaddexp_scalar)


def logaddexp(a, b):
    """log(exp(a) + exp(b)), elementwise; numpy's in plain Python."""
    return np.logaddexp(a, b)


def vlogaddexp(a, b):
    """logaddexp for loops on SIMD lanes; numpy's in plain Python."""
    return np.logaddexp(a, b)


def _float_pair_overload(element, other):
    """The typing of a function of two floats computed by ``element`` in float64 (float32 when
    both are float32); other operands get ``other`` (an implementation, or None: no match)."""

    def typed(a, b):
        if isinstance(a, types.Float) and isinstance(b, types.Float):
            if a == types.float32 and b == types.float32:
                return lambda a, b: np.float32(element(np.float64(a), np.float64(b)))
            return lambda a, b: np.float64(element(np.float64(a), np.float64(b)))
        return other

    return typed


overload(logaddexp, jit_options=dict(nogil=True, error_model="numpy"))(
    _float_pair_overload(_logaddexp_element, lambda a, b: np.logaddexp(a, b))
)
overload(vlogaddexp, jit_options=dict(nogil=True, error_model="numpy"), inline="always")(
    _float_pair_overload(_vlogaddexp_element, lambda a, b: np.logaddexp(a, b))
)


_pow_general_inline = numba.njit(**_INLINE)(_pow_general)


def vpow(a, b):
    """a ** b for loops on SIMD lanes (sqrt forms, see _pow64); numpy's in plain Python."""
    return np.power(a, b)


overload(vpow, jit_options=dict(nogil=True, error_model="numpy"), inline="always")(
    _float_pair_overload(_pow64, lambda a, b: np.power(a, b))
)


def vpow_general(a, b):
    """a ** b for any exponent, on SIMD lanes in a loop (_pow_general, within 1 ulp of libm's pow and
    1.2x its speed on AVX-512); numpy's in plain Python. Kernels call it through vpow_tile: inlined
    into a kernel it adds seconds to numba's build (its size under numba's inline="always"); a loop
    of it needs the whole function inlined, which LLVM's inliner declines at this size."""
    return np.power(a, b)


overload(vpow_general, jit_options=dict(nogil=True, error_model="numpy"), inline="always")(
    _float_pair_overload(_pow_general_inline, None)
)


# erf and pow by any exponent on SIMD lanes without their build cost: a tile's pass (tiling's
# "tile" kind) stores the operands in the tile's buffers and calls one of these, which computes in
# place over the first buffer. Each is compiled once per dtype into numba's disk cache and called,
# not inlined, by every kernel: a kernel pays a call a tile (and LLVM's link of the compiled loop),
# not numba's type inference of the polynomial (0.1-20 s a kernel, inlined). float32 buffers are
# computed in float64 and rounded once.


@numba.njit(**_JIT)
def verf_tile(x, n):
    """x[:n] = erf(x[:n]) (verf), on SIMD lanes."""
    for k in range(n):
        x[k] = verf(x[k])


@numba.njit(**_JIT)
def vpow_tile(a, b, n):
    """a[:n] = a[:n] ** b[:n] (vpow_general: any exponent, pow's special values), on SIMD lanes."""
    for k in range(n):
        a[k] = vpow_general(a[k], b[k])


def _elementwise2(name, scalar, numpy_impl):
    """A function of two floats or float arrays (broadcast as numpy does; float32 when both
    are float32, else float64) computed element by element by ``scalar``, for numba code;
    in plain Python, ``numpy_impl``."""
    element = numba.njit(nogil=True, error_model="numpy")(scalar)

    def function(a, b):
        return numpy_impl(a, b)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = scalar.__doc__

    @overload(function, jit_options=dict(nogil=True, error_model="numpy"))
    def _typed(a, b):
        kinds = [t.dtype if isinstance(t, types.Array) else t for t in (a, b)]
        if not all(isinstance(t, types.Float) for t in kinds):
            return None
        dtype = np.float32 if all(t == types.float32 for t in kinds) else np.float64
        if not any(isinstance(t, types.Array) for t in (a, b)):
            return lambda a, b: dtype(element(np.float64(a), np.float64(b)))

        def on_arrays(a, b):
            x, y = np.broadcast_arrays(np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64))
            out = np.empty(x.shape, dtype=dtype)
            for index in np.ndindex(x.shape):
                out[index] = element(np.float64(x[index]), np.float64(y[index]))
            return out

        return on_arrays

    return function


def _xlogy(x, y):
    """x log(y), 0 where x == 0 (unless y is nan), as scipy.special.xlogy."""
    if x == 0 and y == y:
        return 0.0
    return x * np.log(y)


xlogy = _elementwise2("xlogy", _xlogy, np.vectorize(_xlogy, otypes=[np.float64]))


# ---------------------------------------------------------------- expm1, sinh, cosh, arcsin, arccos, arctan2, logit, xlogy
# (and xlog1py)
# The rest of the elementwise functions a fused loop calls libm for, in arithmetic and selects on
# the kernels above (every branch computed, the right one selected per lane), each within 2 ulp
# of numpy on its whole domain with its special values (tests/codegen/test_vector_math_more.py).
#
# expm1: x = n ln2 + r as exp's, expm1(r) = r + r^2 (1/2! + r/3! + ... + r^12/14!) (the remainder
# below 2^-60 relative), then 2^n expm1(r) + (2^n - 1), both terms exact but the sum for |n| <= 58;
# beyond 40 it is exp(x), below -40 it is -1 (e^-40 is below half an ulp of 1).
# sinh and cosh: for |x| < 1 their Taylor polynomials (odd to x^19, even to x^20: remainders below
# 2^-60 relative); below 22 sinh as (t + t/(t + 1)) / 2 with t = expm1|x| (no cancellation of e^x
# and e^-x) and cosh as (e + 1/e) / 2 with e = exp|x|; above, exp(|x|) / 2 as 2^(n-1) exp(r) (finite up to
# 710.47, where exp itself has overflowed).
# arcsin and arccos: fdlibm's (e_asin.c, e_acos.c, within 1 ulp): x + x R(x^2) for |x| < 1/2 and
# pi/2 - 2 arcsin(sqrt((1 - |x|)/2)) above, with sqrt's value split in two parts; R is fdlibm's
# rational function (its coefficients below). One R serves both ranges of a lane.
# arctan2: arctan of min(|x|, |y|) / max(|x|, |y|) on the arithmetic arctan, then pi/2 minus or plus
# it (|y| > |x|) or pi minus it (x < 0), the constants in two parts, and y's sign; C99's values at
# zeros and infinities (0/0 and inf/inf selected as 0 and pi/4).
# logit: log(q) of q = p / (1 - p), with the rounding errors of 1 - p and of the quotient carried as
# a relative correction added inside log (so near p = 1/2, where the log is near 0, the result keeps
# its accuracy); -inf at 0, inf at 1, nan outside [0, 1].
# xlogy and xlog1py: x log(y) and x log1p(y) on the arithmetic log and log1p, 0 where x == 0 unless y
# is nan (log in two doubles, as pow's _log_dd, and the product's rounding error added back was 1 ulp
# from the exact value everywhere, but 12x slower: 8.7 ms for 1e6, libm's 3.3, this one 0.7).
_E14 = 1.0 / math.factorial(14)
_EXPM1_LIMIT = 40.0
_SINH_T = tuple(1.0 / math.factorial(2 * k + 1) for k in range(1, 10))  # 1/3!, 1/5!, ..., 1/19!
_COSH_T = tuple(1.0 / math.factorial(2 * k) for k in range(1, 11))  # 1/2!, 1/4!, ..., 1/20!
_PI_HI = 3.14159265358979311600e00  # fdlibm's pi, pi/2, pi/4 (the double nearest) and pi/2's rest
_PIO2_HI = 1.57079632679489655800e00
_PIO2_LO = 6.12323399573676603587e-17
_PIO4_HI = 7.85398163397448278999e-01
_PI_LO = 1.2246467991473532e-16  # pi - _PI_HI
_ASIN_P = (
    1.66666666666666657415e-01,
    -3.25565818622400915405e-01,
    2.01212532134862925881e-01,
    -4.00555345006794114027e-02,
    7.91534994289814532176e-04,
    3.47933107596021167570e-05,
)
_ASIN_Q = (
    -2.40339491173441421878e00,
    2.02094576023350569471e00,
    -6.88283971605453293030e-01,
    7.70381505559019352791e-02,
)


def _expm1_64(x):
    v = min(max(x, -_EXPM1_LIMIT), _EXPM1_LIMIT)  # (nan passes)
    t = v * _LOG2E + _ROUND
    n = t - _ROUND
    r_hi = v - n * _LN2_HI  # exact
    r_lo = -(n * _LN2_LO)
    r = r_hi + r_lo
    p = _E14 * r + _E13
    p = p * r + _E12
    p = p * r + _E11
    p = p * r + _E10
    p = p * r + _E9
    p = p * r + _E8
    p = p * r + _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    scale = _from_bits((_bits(t) - _ROUND_BITS + 1023) << 52)  # 2^n, |n| <= 58
    # 2^n expm1(r) + 2^n - 1 = (2^n - 1 + 2^n r_hi) + 2^n (r_lo + r^2 p), the first sum in two doubles
    h, e = _two_sum(scale - 1.0, scale * r_hi)
    out = h + (e + scale * (r_lo + r * r * p))
    out = _exp64(x) if x > _EXPM1_LIMIT else out
    out = -1.0 if x < -_EXPM1_LIMIT else out
    return x if x == 0.0 else out  # keeps -0.0


_expm1_inline = numba.njit(**_INLINE)(_expm1_64)  # too large for LLVM to inline along with its leaves


@numba.njit(**_LEAF)
def _half_exp(a):
    """exp(a) / 2 for a >= 0 (finite up to 710.47), as 2^(n-1) exp(r): one rounding."""
    v = min(a, 712.0)
    t = v * _LOG2E + _ROUND
    n = t - _ROUND
    return _exp_reduced(t - 1.0, (v - n * _LN2_HI) - n * _LN2_LO)


def _sinh64(x):
    a = abs(x)
    z = x * x
    p = _SINH_T[8] * z + _SINH_T[7]
    p = p * z + _SINH_T[6]
    p = p * z + _SINH_T[5]
    p = p * z + _SINH_T[4]
    p = p * z + _SINH_T[3]
    p = p * z + _SINH_T[2]
    p = p * z + _SINH_T[1]
    p = p * z + _SINH_T[0]
    small = x + x * z * p  # keeps -0.0
    t = _expm1_inline(min(a, 22.0))
    large = 0.5 * (t + t / (t + 1.0)) if a < 22.0 else _half_exp(a)
    return small if a < 1.0 else math.copysign(large, x)


def _cosh64(x):
    a = abs(x)
    z = x * x
    p = _COSH_T[9] * z + _COSH_T[8]
    p = p * z + _COSH_T[7]
    p = p * z + _COSH_T[6]
    p = p * z + _COSH_T[5]
    p = p * z + _COSH_T[4]
    p = p * z + _COSH_T[3]
    p = p * z + _COSH_T[2]
    p = p * z + _COSH_T[1]
    p = p * z + _COSH_T[0]
    small = 1.0 + z * p
    e = _exp64(min(a, 22.0))
    large = 0.5 * e + 0.5 / e if a < 22.0 else _half_exp(a)
    return small if a < 1.0 else large


@numba.njit(**_LEAF)
def _asin_ratio(t):
    """fdlibm's R(t) = P(t) / Q(t), asin(x) = x + x R(x^2) for |x| <= 1/2."""
    p = _ASIN_P[5] * t + _ASIN_P[4]
    p = p * t + _ASIN_P[3]
    p = p * t + _ASIN_P[2]
    p = p * t + _ASIN_P[1]
    p = p * t + _ASIN_P[0]
    q = _ASIN_Q[3] * t + _ASIN_Q[2]
    q = q * t + _ASIN_Q[1]
    q = q * t + _ASIN_Q[0]
    return (p * t) / (q * t + 1.0)


@numba.njit(**_LEAF)
def _asin_split(t):
    """sqrt(t) as s, its high 21 bits as f and the rest c = sqrt(t) - f (for t > 0)."""
    s = math.sqrt(t)
    f = _from_bits(_bits(s) & -4294967296)  # the low 32 bits cleared: f * f is exact
    return s, f, (t - f * f) / (s + f)


def _asin64(x):
    a = abs(x)
    small = a < 0.5
    t = x * x if small else (1.0 - a) * 0.5  # |x| > 1 (and inf): t < 0, sqrt's nan
    r = _asin_ratio(t)
    s, f, c = _asin_split(t)
    near_one = _PIO2_HI - (2.0 * (s + s * r) - _PIO2_LO)  # |x| > 0.975
    rest = _PIO4_HI - ((2.0 * s * r - (_PIO2_LO - 2.0 * c)) - (_PIO4_HI - 2.0 * f))
    large = near_one if a > 0.975 else rest
    return x + x * r if small else math.copysign(large, x)


def _acos64(x):
    a = abs(x)
    small = a < 0.5
    t = x * x if small else (1.0 - a) * 0.5
    r = _asin_ratio(t)
    s, f, c = _asin_split(t)
    near0 = _PIO2_HI - (x - (_PIO2_LO - x * r))
    negative = _PI_HI - 2.0 * (s + (r * s - _PIO2_LO))
    positive = 2.0 * (f + (r * s + c))
    out = near0 if small else (negative if x < 0.0 else positive)
    return 0.0 if x == 1.0 else out  # (c is 0/0 there)


def _atan2_64(y, x):
    b, a = abs(y), abs(x)
    steep = b > a
    z = _atan64((a / b) if steep else (b / a))  # of a ratio <= 1 (or nan: 0/0, inf/inf)
    z = 0.0 if b == 0.0 and a == 0.0 else z
    z = _PIO4_HI if b == math.inf and a == math.inf else z
    left = _bits(x) < 0  # x < 0, or -0.0
    # pi - z, pi/2 + z, pi/2 - z with pi and pi/2 in two parts
    flat = (_PI_HI - (z - _PI_LO)) if left else z
    out = (_PIO2_HI + (z + _PIO2_LO) if left else _PIO2_HI - (z - _PIO2_LO)) if steep else flat
    return math.copysign(out, y) if y == y else y


def _logit64(p):
    d, e = _two_sum(1.0, -p)  # 1 - p = d + e exactly
    q = p / d
    ph, pl = _two_prod(q, d)
    q_lo = (((p - ph) - pl) - q * e) / d  # p / (1 - p) = q + q_lo
    subnormal = q < _TINY
    u = q * _TWO54 if subnormal else q
    return _log_edges(q, _log_reduced(u, -54.0 if subnormal else 0.0, q_lo / q))


def _xlogy64(x, y):
    out = x * _log64(y)
    return 0.0 if x == 0.0 and y == y else out


def _xlog1py64(x, y):
    out = x * _log1p64(y)
    return 0.0 if x == 0.0 and y == y else out


vexpm1 = _elementwise("vexpm1", _expm1_inline, np.expm1, inline=True)
vsinh = _elementwise("vsinh", _sinh64, np.sinh, inline=True)
vcosh = _elementwise("vcosh", _cosh64, np.cosh, inline=True)
varcsin = _elementwise("varcsin", _asin64, np.arcsin, inline=True)
varccos = _elementwise("varccos", _acos64, np.arccos, inline=True)
vlogit = _elementwise("vlogit", _logit64, lambda p: logit(p), inline=True)


def varctan2(y, x):
    """arctan2(y, x) for loops on SIMD lanes; numpy's in plain Python."""
    return np.arctan2(y, x)


def vxlogy(x, y):
    """xlogy(x, y) for loops on SIMD lanes; SciPy's in plain Python."""
    return xlogy(x, y)


def vxlog1py(x, y):
    """xlog1py(x, y) for loops on SIMD lanes; SciPy's in plain Python."""
    return xlog1py(x, y)


overload(varctan2, jit_options=dict(nogil=True, error_model="numpy"), inline="always")(
    _float_pair_overload(numba.njit(**_INLINE)(_atan2_64), lambda y, x: np.arctan2(y, x))
)
overload(vxlogy, jit_options=dict(nogil=True, error_model="numpy"), inline="always")(
    _float_pair_overload(numba.njit(**_INLINE)(_xlogy64), None)
)
overload(vxlog1py, jit_options=dict(nogil=True, error_model="numpy"), inline="always")(
    _float_pair_overload(numba.njit(**_INLINE)(_xlog1py64), None)
)


# Kernels call all but xlogy and xlog1py (x times the inlined log, log1p) through tile kernels
# (tiling's "tile" kind, as erf's): inlined, each added 2 to 7 s of numba's type inference to every
# kernel using it (n = 1e6 bench, one kernel an op); called, a kernel pays a call a tile.


@numba.njit(**_JIT)
def vexpm1_tile(x, n):
    """x[:n] = expm1(x[:n]) (vexpm1), on SIMD lanes."""
    for k in range(n):
        x[k] = vexpm1(x[k])


@numba.njit(**_JIT)
def vsinh_tile(x, n):
    """x[:n] = sinh(x[:n]) (vsinh), on SIMD lanes."""
    for k in range(n):
        x[k] = vsinh(x[k])


@numba.njit(**_JIT)
def vcosh_tile(x, n):
    """x[:n] = cosh(x[:n]) (vcosh), on SIMD lanes."""
    for k in range(n):
        x[k] = vcosh(x[k])


@numba.njit(**_JIT)
def varcsin_tile(x, n):
    """x[:n] = arcsin(x[:n]) (varcsin), on SIMD lanes."""
    for k in range(n):
        x[k] = varcsin(x[k])


@numba.njit(**_JIT)
def varccos_tile(x, n):
    """x[:n] = arccos(x[:n]) (varccos), on SIMD lanes."""
    for k in range(n):
        x[k] = varccos(x[k])


@numba.njit(**_JIT)
def vlogit_tile(x, n):
    """x[:n] = logit(x[:n]) (vlogit), on SIMD lanes."""
    for k in range(n):
        x[k] = vlogit(x[k])


@numba.njit(**_JIT)
def varctan2_tile(y, x, n):
    """y[:n] = arctan2(y[:n], x[:n]) (varctan2), on SIMD lanes."""
    for k in range(n):
        y[k] = varctan2(y[k], x[k])


# ---------------------------------------------------------------- ndtr, log_ndtr
# Twins on SIMD lanes of two special functions (special.py holds their scalar kernels, which call
# libm's erfc, exp, log and log1p): the same methods spelled in arithmetic and selects on the
# kernels above, every range computed and the right one selected per lane.
# tests/codegen/test_vector_math_special.py measures them against SciPy and mpmath.
#
# ndtr(x) = erfc(|x| / sqrt(2)) / 2 for x < 0 and 1 minus it above, erfc as fdlibm's (the ranges and
# coefficients of erf above: below 0.84375 1 - (z + z P/Q), then (1 - erx) - P/Q, then
# exp(-zc^2 - 0.5625) exp((zc - z)(zc + z) + P/Q) / z), with z = |x| / sqrt(2) in two doubles,
# z + lo, as the scalar kernel has it: in the far left tail erfc's condition number is 2 z^2 (1600 at
# x = -40). The tail takes lo into its second exponential (-(z + lo)^2 = -z^2 - 2 z lo to below an
# ulp), the rest adds -lo 2/sqrt(pi) exp(-z^2), exp(-z^2) being the product of the same two
# exponentials. The tail's halving is a division by 2z (exact), so a subnormal result rounds once.
# log_ndtr: log1p(-ndtr(-x)) for x >= 0, log(ndtr(x)) down to -20, and below the asymptotic series
# -x^2/2 - log(2 pi)/2 - log(-x / (1 + sum_k (-1)^k (2k-1)!! / x^2k)), k = 1..10 (the first term
# left out is below 3e-19 relative at -20): one log of the argument selected per lane.
_SQRT1_2_HI = 0.7071067811865476
_SQRT1_2_LO = -4.833646656726457e-17  # 1/sqrt(2) - _SQRT1_2_HI
_ONE_MINUS_ERX = 1.0 - _ERX  # exact
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_LOG_SQRT_2PI = 0.9189385332046728  # log(2 pi) / 2
_MILLS = tuple((-1.0) ** k * math.prod(range(1, 2 * k, 2)) for k in range(1, 11))  # -1, 3, -15, ...


@numba.njit(**_INLINE)  # (too large for LLVM to inline: a call would keep the loop off lanes)
def _half_erfc_lanes(s):
    """erfc(s / sqrt(2)) / 2 for 0 <= s <= 40 (or nan), the argument s / sqrt(2) in two doubles."""
    hi, e = _two_prod(s, _SQRT1_2_HI)
    lo = e + s * _SQRT1_2_LO
    a = hi + lo
    lo = lo - (a - hi)  # a + lo = s / sqrt(2), a the rounded sum
    b1, b2, b3 = a >= 0.84375, a >= 1.25, a >= 1 / 0.35
    t = (1.0 / (a * a) if b2 else a - 1.0) if b1 else a * a
    r = _ratio(t, b1, b2, b3)
    z = _from_bits(_bits(a) & -4294967296)  # the low 32 bits cleared: z * z is exact
    # -(a + lo)^2 (+ P/Q - 0.5625 in the tail) in two doubles: -z^2 - 0.5625 is exact (z has 21 bits,
    # z^2 < 2^10), the rest small (P/Q is near 0.5625), so rounded to a few 1e-19
    head = -z * z - (0.5625 if b2 else 0.0)
    rest = (z - a) * (z + a) - 2.0 * a * lo + (r if b2 else 0.0)
    big, small = _two_sum(head, rest)
    big = max(big, -746.0)  # (exp is 0 below -745.14)
    t = big * _LOG2E + _ROUND
    n = t - _ROUND
    e = _exp_reduced(t, ((big - n * _LN2_HI) - n * _LN2_LO) + small)  # exp(big + small), small in r
    tail = e / (a + a)  # b2: erfc(a + lo) / 2
    near = 0.5 * ((1.0 - (a + a * r)) if a < 0.25 else 0.5 - (a * r + (a - 0.5)))  # erfc(a) / 2 below 0.84375
    mid = 0.5 * (_ONE_MINUS_ERX - r)
    # erfc(a + lo) = erfc(a) - lo 2/sqrt(pi) exp(-a^2), with exp(-a^2) as e (to a few ulp: enough)
    return tail if b2 else (mid if b1 else near) - (0.5 * _TWO_OVER_SQRT_PI) * lo * e


def _ndtr64(x):
    h = _half_erfc_lanes(min(abs(x), 40.0))  # Φ(-40) = 3.7e-350: 0 there and beyond
    out = h if x < 0.0 else 1.0 - h
    return x if x != x else out


def _log_ndtr64(x):
    h = _half_erfc_lanes(min(abs(x), 40.0))  # Φ(-|x|)
    w = min(x, -20.0)
    z = 1.0 / (w * w)
    s = _MILLS[9] * z + _MILLS[8]
    s = s * z + _MILLS[7]
    s = s * z + _MILLS[6]
    s = s * z + _MILLS[5]
    s = s * z + _MILLS[4]
    s = s * z + _MILLS[3]
    s = s * z + _MILLS[2]
    s = s * z + _MILLS[1]
    s = s * z + _MILLS[0]
    tail = x < -20.0
    right = x >= 0.0
    u = 1.0 - h  # log1p(-h), h <= 1/2: u exact but for its rounding, carried as c
    c = (-h - (u - 1.0)) / u
    v = max(w, -1e300)
    arg = u if right else (-v / (1.0 + s * z) if tail else h)
    log = _log_reduced(arg, 0.0, c if right else 0.0)
    far = (-0.5 * v * v - log) - _LOG_SQRT_2PI
    out = far if tail else log
    out = -h if h < 1e-300 and right else out  # log1p(-h) = -h there (-0.0 for h = 0)
    out = x if x == -math.inf else out
    return x if x != x else out


vndtr = _elementwise("vndtr", _ndtr64, lambda x: ndtr(x), inline=True)
vlog_ndtr = _elementwise("vlog_ndtr", _log_ndtr64, lambda x: log_ndtr(x), inline=True)


@numba.njit(**_JIT)
def vndtr_tile(x, n):
    """x[:n] = ndtr(x[:n]) (vndtr), on SIMD lanes."""
    for k in range(n):
        x[k] = vndtr(x[k])


@numba.njit(**_JIT)
def vlog_ndtr_tile(x, n):
    """x[:n] = log_ndtr(x[:n]) (vlog_ndtr), on SIMD lanes."""
    for k in range(n):
        x[k] = vlog_ndtr(x[k])


@numba.njit(**_JIT)
def put(view, values):
    """``view[...] = values``, ``values`` broadcast to the view's shape, element by element.
    numba's own assignment of an array into a slice compiles its shape-mismatch message (string
    formatting of the shapes) into every kernel that has one: seconds per kernel. This helper is
    compiled once per type into numba's disk cache and loaded by every later kernel."""
    src = np.broadcast_to(values, view.shape)
    for idx in np.ndindex(view.shape):
        view[idx] = src[idx]


@numba.njit(**_JIT)
def item(x):
    for v in x.flat:
        return v
    return x.flat[0]


@numba.njit(**_JIT)
def max_rows(a):
    out = np.empty(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        if a.shape[1] == 0:
            raise ValueError("max of an empty slice")
        best = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v > best or v != v:
                best = v
                if v != v:
                    break
        out[i] = best
    return out


@numba.njit(**_JIT)
def min_rows(a):
    out = np.empty(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        if a.shape[1] == 0:
            raise ValueError("min of an empty slice")
        best = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v < best or v != v:
                best = v
                if v != v:
                    break
        out[i] = best
    return out


# float32 sums and products accumulate in float64, and are rounded to float32 once at the end:
# numba's np.sum adds in float32 one element at a time (10**7 terms of 0.1 came out 9 % off);
# a float64 running sum of float32 terms is exact to far below float32's precision, better than
# numpy's pairwise float32 sum. Eight running sums, so the adds overlap (3x numba's np.sum).


@numba.njit(nogil=True, error_model="numpy", inline="always")
def _sum_wide(flat, start, stop):
    """flat[start:stop] (1-D) added in float64, in eight running sums."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    end = stop - (stop - start) % 8
    for k in range(start, end, 8):
        a0 += flat[k]
        a1 += flat[k + 1]
        a2 += flat[k + 2]
        a3 += flat[k + 3]
        a4 += flat[k + 4]
        a5 += flat[k + 5]
        a6 += flat[k + 6]
        a7 += flat[k + 7]
    for k in range(end, stop):
        a0 += flat[k]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@numba.njit(**_JIT)
def sum_wide(x):
    """The sum of a float32 array (any shape and layout), accumulated in float64, as float32."""
    c = np.ascontiguousarray(x)
    return np.float32(_sum_wide(c.reshape(c.size), 0, c.size))


@numba.njit(**_JIT)
def sum_middle(a):
    """The sums over the middle axis of a C-contiguous (before, n, after) array, as (before, after).
    numba's ``np.sum(x, axis=k)`` checks the axis with a formatted message, whose string code numba
    compiles into every kernel that has one (seconds); this is compiled once into its disk cache."""
    before, n, after = a.shape
    out = np.zeros((before, after), dtype=a.dtype)
    for i in range(before):
        for j in range(n):
            for k in range(after):
                out[i, k] += a[i, j, k]
    return out


@numba.njit(**_JIT)
def sum_rows_wide(a):
    """The row sums of a C-contiguous float32 matrix, accumulated in float64, as float32."""
    rows, n = a.shape
    flat = a.reshape(a.size)
    out = np.empty(rows, dtype=np.float32)
    for i in range(rows):
        out[i] = np.float32(_sum_wide(flat, i * n, i * n + n))
    return out


@numba.njit(**_JIT)
def prod_wide(x):
    """The product of a float32 array (any shape and layout), accumulated in float64, as float32."""
    p = 1.0
    for v in np.ascontiguousarray(x).flat:
        p *= v
    return np.float32(p)


@numba.njit(**_JIT)
def prod_rows_wide(a):
    """The row products of a C-contiguous float32 matrix, accumulated in float64, as float32."""
    out = np.empty(a.shape[0], dtype=np.float32)
    for i in range(a.shape[0]):
        p = 1.0
        for j in range(a.shape[1]):
            p *= a[i, j]
        out[i] = np.float32(p)
    return out


@numba.njit(**_JIT)
def prod_rows(a):
    out = np.ones(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        p = out[i]
        for j in range(a.shape[1]):
            p *= a[i, j]
        out[i] = p
    return out


@numba.njit(**_JIT)
def first_max_rows(a):
    out = np.zeros(a.shape, dtype=a.dtype)
    for i in range(a.shape[0]):
        if a.shape[1]:
            out[i, np.argmax(a[i])] = 1
    return out


@numba.njit(**_JIT)
def first_min_rows(a):
    out = np.zeros(a.shape, dtype=a.dtype)
    for i in range(a.shape[0]):
        if a.shape[1]:
            out[i, np.argmin(a[i])] = 1
    return out


@numba.njit(**_JIT)
def prod_others_rows(a):
    out = np.empty(a.shape, dtype=a.dtype)
    for i in range(a.shape[0]):
        p = 1.0
        for j in range(a.shape[1]):
            out[i, j] = p
            p *= a[i, j]
        p = 1.0
        for j in range(a.shape[1] - 1, -1, -1):
            out[i, j] *= p
            p *= a[i, j]
    return out


@numba.njit(**_JIT)
def _transposed(x):
    """Is 2-D ``x`` laid out as a transpose (Fortran order and not C order)?"""
    return x.flags.f_contiguous and not x.flags.c_contiguous


@numba.njit(**_JIT)
def _matmul_into(x, y, out):
    """out = x @ y by one BLAS call: an operand in Fortran order (a slice of a transposed batch,
    q.T or p.T of a reverse pass) is passed as it is, BLAS transposing it as it reads it; only an
    operand in neither order is copied. Same products as on C-order copies."""
    if _transposed(x):
        if _transposed(y):
            np.dot(np.asfortranarray(x), np.asfortranarray(y), out)
        else:
            np.dot(np.asfortranarray(x), np.ascontiguousarray(y), out)
    elif _transposed(y):
        np.dot(np.ascontiguousarray(x), np.asfortranarray(y), out)
    else:
        np.dot(np.ascontiguousarray(x), np.ascontiguousarray(y), out)


@numba.njit(**_JIT)
def bmm(a, b):
    """Batched matmul of 3-D operands (the batch of one broadcasts), each product written into
    its slice of the result (no temporary per batch)."""
    batch = max(a.shape[0], b.shape[0])
    out = np.empty((batch, a.shape[1], b.shape[2]), dtype=a.dtype)
    for k in range(batch):
        _matmul_into(a[k if a.shape[0] > 1 else 0], b[k if b.shape[0] > 1 else 0], out[k])
    return out


# Small products of concrete shape: plain loops, no BLAS call (whose fixed cost, about a
# microsecond, is most of the work when the operands have a few elements).


def small_matmul(a, b):
    """a @ b for 2-D and 1-D operands of one float dtype, as loops; numpy's in plain Python."""
    return a @ b


@numba.njit(**_JIT)
def _matvec_loops(a, v):
    out = np.zeros(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        acc = 0.0  # float64, also for float32 operands (rounded once, when stored)
        for k in range(a.shape[1]):
            acc += a[i, k] * v[k]
        out[i] = acc
    return out


@overload(small_matmul, jit_options=dict(nogil=True, error_model="numpy"))
def _small_matmul_typed(a, b):
    if a.ndim == 2 and b.ndim == 2:

        def mm(a, b):
            out = np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)
            for i in range(a.shape[0]):
                for j in range(b.shape[1]):
                    acc = 0.0  # float64, also for float32 operands (rounded once, when stored)
                    for k in range(a.shape[1]):
                        acc += a[i, k] * b[k, j]
                    out[i, j] = acc
            return out

        return mm
    if a.ndim == 2 and b.ndim == 1:
        return lambda a, b: _matvec_loops(a, b)
    if a.ndim == 1 and b.ndim == 2:
        return lambda a, b: _matvec_loops(b.T, a)  # a @ b = b.T @ a, summed in the same order
    return None


def small_matmul_into(out, a, b):
    """``small_matmul(a, b)`` written into ``out`` (of the product's shape, sharing no memory
    with ``a`` or ``b``), which it returns: an output array the entry passes to the kernel."""
    out[...] = a @ b
    return out


@numba.njit(**_JIT)
def _matvec_into(out, a, v):
    for i in range(a.shape[0]):
        acc = 0.0  # float64, also for float32 operands (rounded once, when stored)
        for k in range(a.shape[1]):
            acc += a[i, k] * v[k]
        out[i] = acc
    return out


@overload(small_matmul_into, jit_options=dict(nogil=True, error_model="numpy"))
def _small_matmul_into_typed(out, a, b):
    if a.ndim == 2 and b.ndim == 2:

        def mm(out, a, b):
            for i in range(a.shape[0]):
                for j in range(b.shape[1]):
                    acc = 0.0  # float64, also for float32 operands (rounded once, when stored)
                    for k in range(a.shape[1]):
                        acc += a[i, k] * b[k, j]
                    out[i, j] = acc
            return out

        return mm
    if a.ndim == 2 and b.ndim == 1:
        return lambda out, a, b: _matvec_into(out, a, b)
    if a.ndim == 1 and b.ndim == 2:
        return lambda out, a, b: _matvec_into(out, b.T, a)  # a @ b = b.T @ a, summed in the same order
    return None


# ---------------------------------------------------------------- gathers and their adjoints
# Index values are data, so they are checked here: numba does not bounds-check.


@numba.njit(**_JIT)
def _checked(i, n):
    """``i`` as an index into a length-``n`` axis (negatives count from the end), or IndexError."""
    if i < 0:
        i += n
    if i < 0 or i >= n:
        raise IndexError("an index is out of bounds")
    return i


@numba.njit(**_JIT)
def take_rows(x, idx):
    n = x.shape[0]
    out = np.empty((idx.shape[0], x.shape[1]), dtype=x.dtype)
    for k in range(idx.shape[0]):
        i = _checked(idx[k], n)
        out[k] = x[i]
    return out


@numba.njit(**_JIT)
def scatter_add_rows(g, idx, n):
    out = np.zeros((n, g.shape[1]), dtype=g.dtype)
    for k in range(idx.shape[0]):
        i = _checked(idx[k], n)
        out[i] += g[k]
    return out


@numba.njit(**_JIT)
def take_last(x, idx):
    n = x.shape[1]
    out = np.empty(idx.shape, dtype=x.dtype)
    for r in range(idx.shape[0]):
        for k in range(idx.shape[1]):
            i = _checked(idx[r, k], n)
            out[r, k] = x[r, i]
    return out


@numba.njit(**_JIT)
def scatter_last(g, idx, n):
    out = np.zeros((g.shape[0], n), dtype=g.dtype)
    for r in range(idx.shape[0]):
        for k in range(idx.shape[1]):
            i = _checked(idx[r, k], n)
            out[r, i] += g[r, k]
    return out


def _install_user(attr, fn, arity):
    """A user's function registered with ``sg.register_op`` (``user_ops``), made elementwise for
    numba code as ``_rt.<attr>`` (its overload registered now, before a kernel calling it compiles)."""
    if attr not in globals():
        make = _elementwise if arity == 1 else _elementwise2
        globals()[attr] = make(attr, fn, vectorized(fn, arity))


on_install(_install_user)
