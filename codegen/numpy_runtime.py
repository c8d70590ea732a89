"""Helpers the numpy backend's generated code calls: the ops' own numpy definitions."""

import string

import numpy as np

from symgrad.ops.callback import run as host_call  # noqa: F401 (the host_call op's lowering: sg.root's solver)
from symgrad.ops.registry import OPS

from .user_ops import on_install, vectorized  # the user's functions (sg.register_op): _install_user


def _scalar_out(fn):
    def wrapped(*args, **attrs):
        out = np.asarray(fn(*args, **attrs))
        return out if out.ndim else out[()]

    wrapped.__name__ = fn.__name__
    return wrapped


def _as_called(impl, template):
    """``impl(*operands, **attrs)`` taking its arguments in the order the lowering ``template``
    passes them ("_rt.polygamma({n}, {0})": the attribute n, then the operand)."""
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    if all(f.isdigit() for f in fields):
        return impl

    operands = [k for _, k in sorted((int(f), k) for k, f in enumerate(fields) if f.isdigit())]
    attrs = [(f, k) for k, f in enumerate(fields) if not f.isdigit()]

    def called(*args):
        return impl(*[args[k] for k in operands], **{f: args[k] for f, k in attrs})

    called.__name__ = impl.__name__
    return called


# _rt.<name> for every op the table lowers to a runtime helper (sigmoid, erf, logaddexp, ...):
# its numpy definition
for _name, _op in OPS.items():
    if isinstance(_op.lower, str) and _op.lower.startswith(f"_rt.{_name}("):
        _impl = _op.impl if isinstance(_op.impl, np.ufunc) else _scalar_out(_op.impl)
        globals()[_name] = _as_called(_impl, _op.lower)


def first_max_mask(x, axes):
    """1 at the first maximum of each slice along ``axes``, 0 elsewhere."""
    return OPS["argmax_mask"].impl(x, axes=axes)


def first_min_mask(x, axes):
    return OPS["argmin_mask"].impl(x, axes=axes)


def prod_others(x, axes):
    """For each element, the product of the other elements of its slice along ``axes``."""
    return OPS["prod_others"].impl(x, axes=axes)


def _check(idx, n):
    idx = np.asarray(idx)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError("an index is out of bounds")
    return idx


def take_rows(x, idx):
    return x[_check(idx, x.shape[0])]


def scatter_add_rows(g, idx, n):
    out = np.zeros((n, g.shape[1]), dtype=g.dtype)
    np.add.at(out, _check(idx, n), g)
    return out


def take_last(x, idx):
    return np.take_along_axis(x, _check(idx, x.shape[1]), axis=1)


def scatter_last(g, idx, n):
    out = np.zeros((g.shape[0], n), dtype=g.dtype)
    rows = np.repeat(np.arange(g.shape[0]), g.shape[1])
    np.add.at(out, (rows, _check(idx, n).reshape(-1)), g.reshape(-1))
    return out


def _install_user(attr, fn, arity):
    """A user's function registered with ``sg.register_op`` (``user_ops``): ``_rt.<attr>``, vectorised."""
    globals()[attr] = vectorized(fn, arity)


on_install(_install_user)
