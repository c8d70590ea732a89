"""The op ``host_call``: a value Python computes while a compiled function runs (JAX's
``pure_callback``). ``symgrad.implicit`` builds it for the solution of an implicit equation
(``sg.root``, ``sg.fixed_point``, ``sg.argmin``): the solver (SciPy's, or a Newton iteration)
runs in Python, called from the kernel, and the derivative is the implicit function theorem's,
given by a ``custom`` node around it (``symgrad/ops/custom.py``).

A node ``host_call(a_0, ..., a_k)`` holds ``attrs["fn"]``, a callable object of numpy arrays
returning the result (shape ``attrs["shape"]``, dtype ``attrs["dtype"]``), with a ``key``: the
name the generated code looks it up by in ``CALLBACKS`` (``run``), since generated source cannot
hold a Python object. The numpy backend calls ``_rt.host_call(key, (a_0, ...))``; the numba
backend ``_rt.host_call_<dtype>_<rank>(key, (a_0, ...))``, a jitted helper
(``codegen/callback_kernels.py``) whose ``numba.objmode`` block holds the GIL for the call, so
the kernel around it stays machine code. The op has no derivative of its own (its value is
computed, not built from ops); a module holding it cannot be saved standalone.
"""

import numpy as np

from ..errors import UnsupportedError
from .registry import make, register

# key -> the callable a host_call node names (installed when the node is built)
CALLBACKS = {}


def run(key, args):
    """Call the callable installed as ``key`` on ``args`` (what the generated code does)."""
    fn = CALLBACKS.get(key)
    if fn is None:
        raise UnsupportedError(
            f"this compiled function calls back into the Python function {key!r}, which is not defined "
            "in this process: rebuild the function (sg.root / sg.fixed_point / sg.argmin) in it"
        )
    return fn(*args)


def _infer(inputs, attrs):
    return attrs["shape"], attrs["dtype"]


def _impl(*arrays, fn, shape, dtype):
    out = np.asarray(fn(*arrays), dtype=dtype).reshape(shape)
    return out if out.ndim else out[()]


# the numba runtime's helpers the lowering calls (codegen/callback_kernels.py): a dtype and a rank each
NUMBA_HELPERS = frozenset(f"host_call_{d}_{r}" for d in ("float32", "float64") for r in range(3))


def _args(args):
    return f"({', '.join(args)},)"


register(
    "host_call",
    _infer,
    _impl,
    note="a value computed by Python at run time",
    doc="a value computed by a Python callable while the compiled function runs (sg.root's solver)",
    lower=lambda node, args: f"_rt.host_call({node.attrs['fn'].key!r}, {_args(args)})",
    lowerings={
        "numba": lambda node, args: (
            f"_rt.host_call_{node.dtype}_{node.ndim}({node.attrs['fn'].key!r}, {_args(args)})"
        )
    },
    show=lambda node, args: f"{node.attrs['fn'].key}({', '.join(args)})",
    batch="its Python callable solves for one example's shapes (sg.root inside sg.vmap is not supported yet)",
)


def host_call(fn, args, shape, dtype):
    """The node of ``fn(*args)`` computed at run time; ``fn`` has a ``key`` (a name for the
    generated code) and is installed under it."""
    if not args:
        raise UnsupportedError("host_call: the callable needs at least one argument")
    if len(shape) > 2 or dtype not in ("float32", "float64"):
        raise UnsupportedError(
            f"host_call: the result must be a float32 or float64 array of at most 2 axes, got {dtype} "
            f"of {len(shape)} axes"
        )
    CALLBACKS[fn.key] = fn
    return make("host_call", list(args), fn=fn, shape=tuple(shape), dtype=dtype)
