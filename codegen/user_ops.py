"""The user's own scalar functions (``sg.register_op``) as generated code calls them.

A registered function is reached as ``_rt.<attribute>`` from a generated module: the numba
runtime answers that attribute with the function made elementwise on scalars and arrays (a
numba overload, as its own helpers), the numpy runtime with the Python function vectorised.
The attribute is ``user_<the op's name as an identifier>_<fingerprint of the function's code>``:
a changed function is another attribute, so a generated module (and numba's machine code
cached beside it) is never reused for a function it was not compiled with.
"""

import dis
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
    """The runtime attribute generated code calls for the op ``name`` computed by ``fn``: its name
    as an identifier and a fingerprint of what numba compiles into the kernel's machine code (the
    function's code, the numbers and strings it reads from globals and closure cells, the code of
    the jitted functions it calls), so that a kernel cached on disk is reused only for the same."""
    py = python_function(fn)
    parts = [name.encode("utf-8"), marshal.dumps(py.__code__)]
    cells = [c.cell_contents for c in (py.__closure__ or ()) if _filled(c)]
    values = cells + [py.__globals__[n] for n in global_names(py.__code__) if n in py.__globals__]
    for value in values:
        if isinstance(value, (int, float, complex, str, bytes, bool)):
            parts.append(repr(value).encode("utf-8"))
        elif hasattr(value, "py_func"):
            parts.append(marshal.dumps(value.py_func.__code__))
    fingerprint = hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]
    return f"user_{identifier(name)}_{fingerprint}"


def _filled(cell):
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def global_names(code):
    """The globals ``code`` (and the code nested in it) reads, in order."""
    names, codes = [], [code]
    while codes:
        c = codes.pop()
        codes += [k for k in c.co_consts if isinstance(k, type(code))]
        for instr in dis.get_instructions(c):
            if instr.opname == "LOAD_GLOBAL" and instr.argval not in names:
                names.append(instr.argval)
    return names


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
