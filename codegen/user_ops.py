"""The user's own scalar functions (``sg.register_op``) as generated code calls them.

A registered function is reached as ``_rt.<attribute>`` from a generated module: the numba
runtime answers that attribute with the function made elementwise on scalars and arrays (a
numba overload, as its own helpers), the numpy runtime with the Python function vectorised.
The attribute is ``user_<the op's name as an identifier>_<fingerprint of the function's code>``:
a changed function is another attribute, so a generated module (and numba's machine code
cached beside it) is never reused for a function it was not compiled with.
"""

import hashlib
import marshal

import numpy as np

from .schedule import identifier

# attribute -> (the op's name, the Python function, the number of operands)
FUNCTIONS = {}

# what a runtime module does with each function installed, before any kernel calls it (the numba
# runtime registers its overload: numba types a call only with overloads registered before the
# compile starts)
_LISTENERS = []


def on_install(listener):
    """Call ``listener(attr, fn, arity)`` for every function installed, those already in first."""
    _LISTENERS.append(listener)
    for attr, (_, fn, arity) in list(FUNCTIONS.items()):
        listener(attr, fn, arity)


def python_function(fn):
    """The Python function of ``fn`` (a numba dispatcher's ``py_func``, else ``fn``)."""
    return getattr(fn, "py_func", fn)


def attribute(name, fn):
    """The runtime attribute generated code calls for the op ``name`` computed by ``fn``."""
    code = python_function(fn).__code__
    fingerprint = hashlib.sha256(marshal.dumps(code) + name.encode("utf-8")).hexdigest()[:12]
    return f"user_{identifier(name)}_{fingerprint}"


def install(attr, name, fn, arity):
    FUNCTIONS[attr] = (name, python_function(fn), arity)
    for listener in _LISTENERS:
        listener(attr, python_function(fn), arity)


def remove(attr):
    FUNCTIONS.pop(attr, None)


def vectorized(fn, arity):
    """``fn`` on numpy arrays (or scalars), element by element, in float64: the op's numpy definition."""
    element = np.vectorize(python_function(fn), otypes=[np.float64])

    def on_arrays(*args):
        dtype = np.result_type(*[np.asarray(a).dtype for a in args])
        dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
        out = np.asarray(element(*args), dtype=dtype)
        return out if out.ndim else out[()]

    return on_arrays
