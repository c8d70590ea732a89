"""The op set. Each family module registers its ops in ``registry.OPS`` and defines the builders."""

from ..errors import UnsupportedError
from ..graph import Expr
from .registry import OPS, OpDef, make, constant, as_expr
from .elementwise import *  # noqa: F403  (every elementwise op's builder: elementwise.__all__, from the table)
from .elementwise import (  # the ones the operators below use
    cast,
    add,
    sub,
    mul,
    div,
    pow,
    mod,
    neg,
    abs,
    floor,
    ceil,
    trunc,
    round,
    less,
    less_equal,
    greater,
    greater_equal,
    equal,
    not_equal,
    logical_and,
    logical_or,
    logical_not,
)
from .reduce import sum, mean, max, min, prod, logsumexp, softmax, log_softmax, count
from .linalg import outer
from .custom import custom_call  # the generic op of user-defined derivative rules
from .callback import host_call  # a value Python computes at run time (sg.root's solver)
from .contract import (
    einsum,
    tensordot,
    inner,
    dot,
    matmul,
    kron,
    cross,
    trace,
    diag,
    diagonal,
    tril,
    triu,
)
from .structure import (
    reshape,
    expand_dims,
    squeeze,
    broadcast_to,
    transpose,
    getitem,
    concatenate,
    stack,
    sum_to,
    take,
    take_along_axis,
    arange,
)

from .arrays import *  # noqa: F403  (numpy's array functions: arrays.__all__)


def _rev(fn):
    return lambda self, other: fn(other, self)


# Python operators on expressions, with numpy's meaning
Expr.__add__, Expr.__radd__ = add, _rev(add)
Expr.__sub__, Expr.__rsub__ = sub, _rev(sub)
Expr.__mul__, Expr.__rmul__ = mul, _rev(mul)
Expr.__truediv__, Expr.__rtruediv__ = div, _rev(div)
Expr.__pow__, Expr.__rpow__ = pow, _rev(pow)
Expr.__matmul__, Expr.__rmatmul__ = matmul, _rev(matmul)
Expr.__mod__, Expr.__rmod__ = mod, _rev(mod)
Expr.__neg__ = neg
Expr.__pos__ = lambda self: self
Expr.__abs__ = abs
Expr.__floor__, Expr.__ceil__, Expr.__trunc__ = floor, ceil, trunc


def _round_method(self, ndigits=None):
    # Python's round(x) rounds half to even, as np.round does
    if ndigits is not None:
        raise UnsupportedError(
            f"round(x, {ndigits!r}) on a symbolic value: only round(x) is supported; "
            "use np.round(x, decimals) for decimals"
        )
    return round(self)


Expr.__round__ = _round_method
Expr.__lt__, Expr.__le__ = less, less_equal
Expr.__gt__, Expr.__ge__ = greater, greater_equal
Expr.__eq__, Expr.__ne__ = equal, not_equal
Expr.__and__, Expr.__or__, Expr.__invert__ = logical_and, logical_or, logical_not
Expr.__rand__, Expr.__ror__ = _rev(logical_and), _rev(logical_or)
Expr.__getitem__ = getitem
Expr.T = property(lambda self: transpose(self))
Expr.sum = lambda self, axis=None, keepdims=False: sum(self, axis, keepdims)
Expr.mean = lambda self, axis=None, keepdims=False: mean(self, axis, keepdims)
Expr.max = lambda self, axis=None, keepdims=False: max(self, axis, keepdims)
Expr.min = lambda self, axis=None, keepdims=False: min(self, axis, keepdims)
Expr.prod = lambda self, axis=None, keepdims=False: prod(self, axis, keepdims)
Expr.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 else shape)
Expr.transpose = lambda self, *axes: transpose(self, (axes[0] if len(axes) == 1 else axes) or None)
Expr.astype = cast
Expr.dot = dot
Expr.trace = lambda self, offset=0, axis1=0, axis2=1: trace(self, offset, axis1, axis2)
Expr.diagonal = lambda self, offset=0, axis1=0, axis2=1: diagonal(self, offset, axis1, axis2)
Expr.__hash__ = lambda self: object.__hash__(self)
