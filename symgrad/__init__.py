"""symgrad: compile a loss to a fast function returning its value and exact gradient."""

__version__ = "0.1.0"

from .errors import SymgradError, ParseError, ShapeError, InputError, UnsupportedError
from .graph import Expr
from .ops import (
    cast,
    add,
    sub,
    mul,
    div,
    pow,
    maximum,
    minimum,
    arctan2,
    logaddexp,
    where,
    stop_gradient,
    less,
    less_equal,
    greater,
    greater_equal,
    equal,
    not_equal,
    logical_and,
    logical_or,
    logical_not,
    isfinite,
    neg,
    abs,
    sign,
    exp,
    expm1,
    log,
    log1p,
    sqrt,
    square,
    reciprocal,
    sin,
    cos,
    tan,
    arcsin,
    arccos,
    arctan,
    sinh,
    cosh,
    tanh,
    sigmoid,
    relu,
    softplus,
    erf,
    sum,
    mean,
    max,
    min,
    prod,
    logsumexp,
    softmax,
    log_softmax,
    matmul,
    dot,
    outer,
    reshape,
    expand_dims,
    squeeze,
    broadcast_to,
    transpose,
    concatenate,
    stack,
    constant,
    take,
    take_along_axis,
    arange,
)
from .api import (
    tensor,
    scalar,
    scalars,
    symbols,
    grad,
    vjp,
    compile,
    value_and_grad,
    check_grad,
    jvp,
    jacobian,
    jacobian_mode,
    hessian,
    hvp,
    hessian_sparsity,
    value_grad_and_hessian,
    sparse_hessian,
)
from .frontends import numpy_protocol as _numpy_protocol  # noqa: F401  (np.* on Expr)
from .frontends.sympy_bridge import from_sympy, to_sympy, latex
from .frontends.parse import parse
from .draw import to_dot, draw

negative = neg
power = pow
multiply = mul
divide = div
subtract = sub
true_divide = div
