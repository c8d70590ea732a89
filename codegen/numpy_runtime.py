"""Helpers the numpy backend's generated code calls: the ops' own numpy definitions."""

import numpy as np

from symgrad.ops.registry import OPS


def _scalar_out(fn):
    def wrapped(*args):
        out = np.asarray(fn(*args))
        return out if out.ndim else out[()]
    wrapped.__name__ = fn.__name__
    return wrapped


sigmoid = _scalar_out(OPS["sigmoid"].impl)
softplus = _scalar_out(OPS["softplus"].impl)
relu = _scalar_out(OPS["relu"].impl)
erf = _scalar_out(OPS["erf"].impl)


def first_max_mask(x, axes):
    """1 at the first maximum of each slice along ``axes``, 0 elsewhere."""
    return OPS["argmax_mask"].impl(x, axes=axes)


def first_min_mask(x, axes):
    return OPS["argmin_mask"].impl(x, axes=axes)


def prod_others(x, axes):
    """For each element, the product of the other elements of its slice along ``axes``."""
    return OPS["prod_others"].impl(x, axes=axes)
