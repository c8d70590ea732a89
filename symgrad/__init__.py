"""symgrad: compile a loss to a fast function returning its value and exact gradient."""

import os as _os

from ._version import __version__

# The compiler lives in the repository's top-level codegen/ folder and is installed as
# symgrad.codegen (pyproject.toml's package-dir). In a source checkout, where symgrad/codegen
# does not exist, the checkout's root is searched for symgrad's subpackages too, so
# ``symgrad.codegen`` is that folder either way. An installed symgrad never searches its parent.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "codegen")) and _os.path.isfile(
    _os.path.join(_root, "codegen", "__init__.py")
):
    __path__.append(_root)

from .errors import SymgradError, ParseError, ShapeError, InputError, UnsupportedError, SolverError
from .graph import Expr
from .ops.registry import OPS as _OPS
from .ops.elementwise import *  # noqa: F403  (every elementwise op's builder: elementwise.__all__)
from .ops.elementwise import neg, sub, mul, div, pow  # the numpy names below
from .ops import (
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
    einsum,
    tensordot,
    inner,
    kron,
    cross,
    trace,
    diag,
    diagonal,
    tril,
    triu,
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
from .ops.arrays import *  # noqa: F403  (numpy's array functions: arrays.__all__)
from .ops import linalg  # sg.linalg: solve, inv, det, slogdet, cholesky, eigh, svd, qr, norm, ...
from .passes import simplify as _simplify  # installs the rewrites every node is built through
from .custom import custom_vjp, custom_jvp  # user-defined derivative rules
from .loops import scan, fold, fori_loop, while_loop  # loops that stay loops (the scan op)
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
    jacfwd,
    jacrev,
    jacobian_mode,
    hessian,
    hvp,
    hessian_sparsity,
    value_grad_and_hessian,
    vmap,
)
from .frontends import numpy_protocol as _numpy_protocol  # noqa: F401  (np.* on Expr)
from .frontends.sympy_bridge import from_sympy, to_sympy, latex
from .frontends.parse import parse
from .printing import expr_str as _expr_str  # installs how an Expr prints (repr, LaTeX)
from .draw import to_dot, draw
from .optimize import sparse_hessian, sparse_jacobian, jacobian_sparsity  # and Compiled.scipy()
from .implicit import (
    root,
    fixed_point,
    argmin,
    custom_root,
)  # solutions of equations, differentiated implicitly
from .extend import register_op, unregister_op  # a user's own elementwise op
from . import dask_arrays as _dask_arrays  # Dask arrays as arguments: a runtime hook
from .settings import config  # what builds print (and the report's settings, for the compiler)

negative = neg
power = pow
multiply = mul
divide = div
subtract = sub
true_divide = div


def __getattr__(name):
    """``sg.<name>`` of an op a user registered (``sg.register_op``)."""
    op = _OPS.get(name)
    if op is not None and op.user:
        return op.builder
    raise AttributeError(f"module 'symgrad' has no attribute {name!r}")
