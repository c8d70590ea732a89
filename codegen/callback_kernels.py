"""The numba backend's lowering of ``host_call`` (``symgrad/ops/callback.py``): a value Python
computes while the kernel runs (``sg.root``'s solver).

``host_call_<dtype>_<rank>(key, args)`` is a jitted function whose ``numba.objmode`` block takes
the GIL, boxes ``args`` (a tuple of the operands) and calls the Python callable installed as
``key``; the result comes back as a C-contiguous array of that dtype and rank (a float for rank
0). The helpers are compiled without ``nogil`` (numba warns about an object-mode block in a
``nogil`` function); the kernel calling them keeps it.
"""

import numba
import numpy as np

from symgrad.ops.callback import run


def _result(key, args, dtype, ndim):
    out = np.ascontiguousarray(run(key, args), dtype=dtype)
    if out.ndim != ndim:
        out = out.reshape(out.shape if out.size != 1 or ndim else ())
    return out if ndim else out.item()


def _helper(dtype, ndim):
    scalar = getattr(numba, dtype)
    kind = scalar if ndim == 0 else scalar[(slice(None),) * (ndim - 1) + (slice(None, None, 1),)]

    @numba.njit(cache=True, error_model="numpy")
    def host_call(key, args):
        with numba.objmode(out=kind):
            out = _result(key, args, dtype, ndim)
        return out

    return host_call


host_call_float64_0 = _helper("float64", 0)
host_call_float64_1 = _helper("float64", 1)
host_call_float64_2 = _helper("float64", 2)
host_call_float32_0 = _helper("float32", 0)
host_call_float32_1 = _helper("float32", 1)
host_call_float32_2 = _helper("float32", 2)
