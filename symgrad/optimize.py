"""Compiled Hessians for optimisers: the sparse Hessian and the SciPy adapter ``vg.scipy()``.

SciPy's ``minimize`` works on one flat float64 vector. ``ScipyProblem`` packs the
``wrt`` inputs of a compiled ``value_and_grad`` into that vector (each flattened in
C order, in ``wrt`` order) and unpacks it on every call, so a loss in several
tensors plugs straight in::

    vg = sg.value_and_grad(loss, wrt=[W, b], inputs=[W, b, X, t])
    p = vg.scipy(X=X0, t=t0)               # the other inputs are held fixed
    res = scipy.optimize.minimize(p.fun, p.pack(W0, b0), jac=True,
                                  hessp=p.hessp, method="Newton-CG")
    W, b = p.unpack(res.x)

``p.fun(x) -> (value, gradient)``; ``p.hess(x) -> (n, n) array``;
``p.hessp(x, v) -> H v`` (forward over reverse, the Hessian is never formed);
``p.jac(x)`` is the gradient alone. The Hessian and Hessian-vector functions are
compiled the first time they are used.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from . import api, autodiff, pytree, sparsity
from .codegen import runtime
from .errors import InputError, UnsupportedError
from .graph import Expr, concrete, size_of, shape_str
from .frontends import trace
from .ops import as_expr, concatenate, constant, reshape, stack

if TYPE_CHECKING:  # for the hints only
    import scipy.sparse as sp

    from .api import ExprLike, Wrt
    from .codegen.runtime import Compiled


def sparse_hessian(
    expr: ExprLike, wrt: Wrt, inputs: Expr | Sequence[Expr] | None = None, *, backend: str | None = None
) -> SparseHessian:
    """Compile the Hessian of a scalar loss as a sparse matrix: ``sh(*args)`` returns a
    ``scipy.sparse.csr_matrix`` (n, n) over the ``wrt`` elements flattened in order.

    The structural pattern (``sg.hessian_sparsity``) is coloured so that one
    Hessian-vector product per colour recovers every non-zero: a tridiagonal Hessian
    of any size costs three. ``sh.pattern`` and ``sh.colors`` show the plan."""
    expr = autodiff.scalar_loss(expr, "sparse_hessian")
    wrt_list, _ = api._wrt_list(wrt, "sparse_hessian")
    api._check_one_symbol_per_name(expr, wrt_list)
    autodiff._check_wrt(wrt_list, "sparse_hessian")
    return SparseHessian(expr, wrt_list, inputs, backend=backend or api.DEFAULT_BACKEND)


class SparseHessian:
    """A compiled sparse Hessian: ``sh(*args)`` returns a ``scipy.sparse.csr_matrix``.

    Its columns are coloured so that no two columns of one colour share a row of the
    structural pattern; one Hessian-vector product per colour (with the sum of the
    colour's unit vectors) then yields every non-zero, so a tridiagonal Hessian of any
    size costs three products. ``.pattern``, ``.colors`` and ``.compiled`` are exposed."""

    def __init__(
        self,
        expr: Expr,
        wrt: Sequence[Expr],
        inputs: Expr | Sequence[Expr] | None = None,
        backend: str | None = None,
    ) -> None:
        self.wrt = list(wrt)
        self.pattern = sparsity.hessian_sparsity(expr, self.wrt)
        self.colors = sparsity.color_columns(self.pattern)
        ncolors = int(self.colors.max()) + 1 if self.colors.size else 0
        offsets = np.cumsum([0] + [size_of(w.shape) for w in self.wrt])
        outputs = []
        for c in range(ncolors):
            chosen = (self.colors == c).astype(np.float64)
            directions = [
                constant(chosen[offsets[k] : offsets[k + 1]].reshape(w.shape), w.dtype)
                for k, w in enumerate(self.wrt)
            ]
            products = autodiff.hvp(expr, self.wrt, directions)
            flat = [reshape(p, (size_of(w.shape),)) for p, w in zip(products, self.wrt)]
            outputs.append(concatenate(flat) if len(flat) > 1 else flat[0])
        if not outputs:
            outputs = [constant(np.zeros(0))]
        self.compiled = api.compile(
            outputs,
            inputs=api._resolve_inputs([expr], inputs, "sparse_hessian", extra=self.wrt),
            backend=backend,
            name="sparse_hessian",
        )
        coo = self.pattern.tocoo()
        self._rows, self._cols = coo.row, coo.col
        self._n = int(offsets[-1])

    @property
    def inputs(self) -> tuple[Expr, ...]:
        return self.compiled.inputs

    def __call__(self, *args: Any, **kwargs: Any) -> sp.csr_matrix:
        import scipy.sparse as sp  # scipy loads only when a sparse Hessian is used

        products = np.array(self.compiled(*args, **kwargs), dtype=np.float64).reshape(-1, self._n)
        data = products[self.colors[self._cols], self._rows] if self._rows.size else np.zeros(0)
        return sp.csr_matrix((data, (self._rows, self._cols)), shape=(self._n, self._n))


# ---------------------------------------------------------------- sparse Jacobians


def _jacobian_plan(expr, wrt, where):
    """``expr`` (a float Expr) and ``wrt`` (a symbol or a list) checked as the sparse
    Jacobian functions take them, and ``wrt`` as a list."""
    expr = autodiff.float_expr(expr, where)
    wrt_list, _ = api._wrt_list(wrt, where)
    api._check_one_symbol_per_name(expr, wrt_list)
    autodiff._check_wrt(wrt_list, where)
    for w in [expr] + wrt_list:
        if not concrete(w.shape):
            what = "the output" if w is expr else f"input {w.name}"
            raise UnsupportedError(
                f"{where}: {what} has symbolic shape {shape_str(w.shape)}; a sparsity pattern "
                "needs concrete sizes (give the dimensions as numbers)"
            )
    return expr, wrt_list


def _trace_at(fn, args, argnums, where):
    """``fn`` run on symbols of the concrete shapes of ``args``: (its output, the symbols of
    the array and number arguments in order, the differentiated one, the numeric positions).
    Other arguments (strings, None, ...) are passed through as they are."""
    if not isinstance(argnums, int) or isinstance(argnums, bool):
        raise UnsupportedError(
            f"{where}: argnums must be one int (the argument of the vector x), got {argnums!r}"
        )
    if not -len(args) <= argnums < len(args):
        raise UnsupportedError(
            f"{where}: argnums {argnums} is out of range for a call with {len(args)} argument(s)"
        )
    argnums %= len(args)
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    stand_ins, symbols, numeric = [], [], []
    for k, value in enumerate(args):
        if isinstance(value, (np.ndarray, np.generic, float, int)) and not isinstance(value, bool):
            array = np.asarray(value)
            dtype = "float64" if k == argnums and array.dtype.kind != "f" else array.dtype
            name = names[k] if k < len(names) and names[k].isidentifier() else f"arg{k}"
            symbol = api.tensor(name, array.shape, dtype)
            stand_ins.append(symbol)
            symbols.append(symbol)
            numeric.append(k)
        elif k == argnums:
            raise UnsupportedError(
                f"{where}: argument {k} of {getattr(fn, '__name__', fn)!r} is differentiated but is a "
                f"{type(value).__name__}, not a float array"
            )
        else:
            stand_ins.append(value)
    with trace._trace_patches():
        out = fn(*stand_ins)
    if isinstance(out, (list, tuple, dict)):
        raise UnsupportedError(
            f"{where}: {getattr(fn, '__name__', fn)!r} returned a {type(out).__name__}; the sparse "
            "Jacobian needs one array (the residual vector)"
        )
    return as_expr(out), symbols, stand_ins[argnums], numeric


def jacobian_sparsity(fun: Any, wrt: Any = None, *args: Any, argnums: int = 0) -> sp.csr_matrix:
    """The structural non-zero pattern of a Jacobian: a boolean ``scipy.sparse.csr_matrix``
    with one row per output element and one column per ``wrt`` element (flattened in C
    order and concatenated). An entry outside the pattern is zero at every point.

    ``jacobian_sparsity(expr, wrt)`` for an expression (``wrt`` a symbol or a list of
    them); ``jacobian_sparsity(fn, *example_args, argnums=0)`` for a Python function,
    traced at the shapes of the example arguments (the pattern holds for those sizes)."""
    if api._is_function(fun):
        out, _, x, _ = _trace_at(fun, (wrt, *args), argnums, "jacobian_sparsity")
        expr, wrt_list = _jacobian_plan(out, x, "jacobian_sparsity")
    else:
        if args:
            raise UnsupportedError(
                f"jacobian_sparsity(expr, wrt): {len(args)} extra argument(s); example arguments "
                "are for a Python function"
            )
        if wrt is None:
            raise UnsupportedError("jacobian_sparsity(expr): say which symbols, jacobian_sparsity(expr, wrt)")
        expr, wrt_list = _jacobian_plan(fun, wrt, "jacobian_sparsity")
    return sparsity.jacobian_sparsity([expr], wrt_list)


def sparse_jacobian(
    fun: Any,
    wrt: Any = None,
    inputs: Expr | Sequence[Expr] | None = None,
    *,
    argnums: int = 0,
    backend: str | None = None,
) -> SparseJacobian | SparseJacobianOfFunction:
    """Compile the Jacobian of a vector function as a sparse matrix: a call returns a
    ``scipy.sparse.csr_matrix`` (output elements x ``wrt`` elements).

    The structural pattern (``sg.jacobian_sparsity``) is coloured by columns (one forward
    JVP pass per colour) or by rows (one reverse VJP pass per colour), whichever needs
    fewer colours, or split between both sides when that needs fewer still (an arrow
    pattern: 3 passes); every pass and the value are one compiled kernel, whose compressed
    Jacobian is scattered into the CSR data through precomputed indices. A banded
    Jacobian of any size costs its bandwidth in passes.

    ``sparse_jacobian(expr, wrt, inputs=None)`` for an expression; ``sparse_jacobian(fn,
    argnums=0)`` for a Python function: traced (and compiled) at the shapes of each new
    call's arguments, as ``sg.jacobian(fn)``. See ``SparseJacobian`` for ``.fun``/``.jac``
    (``scipy.optimize.least_squares``) and ``.value_and_jacobian``."""
    if api._is_function(fun):
        if inputs is not None:
            raise UnsupportedError(
                "sparse_jacobian: a function's parameters are its inputs; inputs= is for expressions"
            )
        if wrt is not None:
            argnums = wrt  # the second positional argument of a function is argnums, as in sg.jacobian
        return SparseJacobianOfFunction(fun, argnums, backend or api.DEFAULT_BACKEND)
    if wrt is None:
        raise UnsupportedError("sparse_jacobian(expr): say which symbols, sparse_jacobian(expr, wrt)")
    expr, wrt_list = _jacobian_plan(fun, wrt, "sparse_jacobian")
    return SparseJacobian(expr, wrt_list, inputs, backend=backend or api.DEFAULT_BACKEND)


class _LastPoint(abc.ABC):
    """``fun``/``jac`` for ``scipy.optimize`` from ``value_and_jacobian``: SciPy asks for the
    value and then the Jacobian at one point, which one kernel call gives (the last point and
    its arguments are remembered; a new point or other argument objects compute again)."""

    _last: tuple[np.ndarray, tuple[Any, ...], Any, Any] | None = None

    @abc.abstractmethod
    def value_and_jacobian(self, *args: Any) -> tuple[Any, sp.csr_matrix]:
        """(value, Jacobian) at ``args``: each subclass computes it (one kernel call)."""

    def _at(self, x, args):
        last = self._last
        if (
            last is not None
            and np.array_equal(last[0], x)
            and len(args) == len(last[1])
            and all(a is b for a, b in zip(args, last[1]))
        ):
            return last[2], last[3]
        value, jac = self.value_and_jacobian(x, *args)
        self._last = (np.array(x, dtype=np.float64), args, value, jac)
        return value, jac

    def fun(self, x: ArrayLike, *args: Any) -> Any:
        """The value at ``x`` (the first input; ``args`` are the others, in input order)."""
        return self._at(x, args)[0]

    def jac(self, x: ArrayLike, *args: Any) -> sp.csr_matrix:
        """The Jacobian at ``x`` (from the last ``fun`` call when it was at the same point)."""
        return self._at(x, args)[1]


class SparseJacobian(_LastPoint):
    """A compiled sparse Jacobian: ``sj(*args)`` returns a ``scipy.sparse.csr_matrix``.

    ``.mode`` is ``"forward"`` (columns coloured: no two columns of one colour share a row,
    and one JVP along the sum of a colour's unit vectors gives each of their non-zeros) or
    ``"reverse"`` (rows coloured, one VJP per colour), or, when one side needs more than
    three colours and splitting helps, ``"bidirectional"`` (the densest rows by reverse
    passes and the rest by forward passes, or the mirror: ``sparsity.bidirectional_coloring``;
    ``.colors`` is then (column colours, row colours), -1 where a side has no pass);
    ``.colors``, ``.pattern``, ``.passes`` and ``.compiled`` (the value and the compressed
    Jacobian, one kernel) show the plan.

    For ``scipy.optimize``: ``sj.fun(x, *args)`` is the value, ``sj.jac(x, *args)`` the
    Jacobian at the same point from the same kernel call (the last point is remembered),
    so ``least_squares(sj.fun, x0, jac=sj.jac, jac_sparsity=sj.pattern)`` computes each
    point once; ``sj.value_and_jacobian(*args)`` returns both."""

    def __init__(
        self,
        expr: Expr,
        wrt: Sequence[Expr],
        inputs: Expr | Sequence[Expr] | None = None,
        backend: str | None = None,
    ) -> None:
        self.wrt = list(wrt)
        self.output_shape = tuple(expr.shape)
        self.pattern = sparsity.jacobian_sparsity([expr], self.wrt)
        self.pattern.sort_indices()
        self.mode, self.colors = sparsity.jacobian_coloring(self.pattern)
        self.passes = int(self.colors.max()) + 1 if self.colors.size else 0
        m, n = self.pattern.shape
        column_colors = self.colors if self.mode == "forward" else np.full(n, -1)
        row_colors = self.colors if self.mode == "reverse" else np.full(m, -1)
        side = self.mode
        if self.passes > 3:  # a dense row or column: try both sides at once
            split = sparsity.bidirectional_coloring(self.pattern)
            if split is not None:
                count = sum(int(c.max()) + 1 for c in split[:2] if (c >= 0).any())
                if count < self.passes:
                    column_colors, row_colors, side = split
                    self.mode, self.passes, self.colors = "bidirectional", count, split[:2]
        offsets = np.cumsum([0] + [size_of(w.shape) for w in self.wrt])
        forward, reverse = [], []
        for c in range(int(column_colors.max()) + 1 if (column_colors >= 0).any() else 0):
            chosen = (column_colors == c).astype(np.float64)
            directions = [
                constant(chosen[offsets[k] : offsets[k + 1]].reshape(w.shape), w.dtype)
                for k, w in enumerate(self.wrt)
            ]
            forward.append(reshape(autodiff.jvp([expr], self.wrt, directions)[0], (m,)))
        for c in range(int(row_colors.max()) + 1 if (row_colors >= 0).any() else 0):
            chosen = (row_colors == c).astype(np.float64)
            adjoints = autodiff.vjp(expr, self.wrt, constant(chosen.reshape(expr.shape), expr.dtype))
            flat = [reshape(a, (size_of(w.shape),)) for a, w in zip(adjoints, self.wrt)]
            reverse.append(concatenate(flat) if len(flat) > 1 else flat[0])
        # the compressed Jacobian: forward passes (colours x m), then reverse passes (colours x n)
        compressed = [stack(passes) for passes in (forward, reverse) if passes]
        if not compressed:
            compressed = [constant(np.zeros((0, m)))]
        self.compiled = api.compile(
            [expr, *compressed],
            inputs=api._resolve_inputs([expr], inputs, "sparse_jacobian", extra=self.wrt),
            backend=backend,
            name="sparse_jacobian",
        )
        # data[k] of the CSR entry (i, j) is forward[colour of column j, i] or, flattened after
        # the forward passes, reverse[colour of row i, j]
        rows = np.repeat(np.arange(m), np.diff(self.pattern.indptr))
        cols = self.pattern.indices
        if side == "rows":
            by_reverse = row_colors[rows] >= 0
        elif side == "columns":
            by_reverse = column_colors[cols] < 0
        else:
            by_reverse = np.full(rows.size, side == "reverse")
        self._take = np.where(
            by_reverse,
            len(forward) * m + row_colors[rows] * n + cols,
            column_colors[cols] * m + rows,
        ).astype(np.intp)
        self.shape = (m, n)
        # every matrix a call returns shares these (read-only: the pattern is canonical, so SciPy
        # never sorts or merges them in place)
        self._indices, self._indptr = self.pattern.indices.copy(), self.pattern.indptr.copy()
        self._indices.flags.writeable = self._indptr.flags.writeable = False

    @property
    def inputs(self) -> tuple[Expr, ...]:
        return self.compiled.inputs

    @property
    def source(self) -> str:
        return self.compiled.source

    def _csr(self, compressed):
        import scipy.sparse as sp  # scipy loads only when a sparse Jacobian is used

        if len(compressed) == 1:
            data = compressed[0].reshape(-1).take(self._take)
        else:  # both sides (bidirectional): forward passes, then reverse passes
            data = np.concatenate([c.reshape(-1) for c in compressed]).take(self._take)
        return sp.csr_matrix((data, self._indices, self._indptr), shape=self.shape, copy=False)

    def value_and_jacobian(self, *args: Any, **kwargs: Any) -> tuple[Any, sp.csr_matrix]:
        """(the value, the Jacobian as CSR) from one kernel call."""
        value, *compressed = self.compiled(*args, **kwargs)
        return value, self._csr(compressed)

    def __call__(self, *args: Any, **kwargs: Any) -> sp.csr_matrix:
        return self.value_and_jacobian(*args, **kwargs)[1]


class SparseJacobianOfFunction(_LastPoint):
    """``sg.sparse_jacobian(fn, argnums)``: called like ``fn``, returns the Jacobian of its
    (array) output with respect to argument ``argnums`` as CSR. Each new combination of
    argument shapes and dtypes (and non-array arguments) is traced and compiled once into a
    ``SparseJacobian``; ``.for_args(*args)`` returns that object (its pattern, colours,
    source). ``.fun``/``.jac``/``.value_and_jacobian`` are as on ``SparseJacobian``."""

    def __init__(self, fn: Any, argnums: int, backend: str) -> None:
        if not callable(fn):
            raise UnsupportedError(f"sparse_jacobian: {fn!r:.60} is not a function")
        self._fn = fn
        self._argnums = argnums
        self._backend = backend
        self._cache: dict[Any, tuple[SparseJacobian, list[int]]] = {}

    @staticmethod
    def _key(args):
        key = []
        for a in args:
            if isinstance(a, (np.ndarray, np.generic, float, int)) and not isinstance(a, bool):
                a = np.asarray(a)
                key.append(("array", a.shape, a.dtype.str))
            else:
                try:
                    hash(a)
                except TypeError:
                    raise UnsupportedError(
                        f"sparse_jacobian: an argument of type {type(a).__name__} is neither an array, "
                        "a number nor a hashable value the trace can depend on"
                    ) from None
                key.append(("static", type(a), a))
        return tuple(key)

    def _entry(self, args):
        key = self._key(args)
        found = self._cache.get(key)
        if found is None:
            out, symbols, x, numeric = _trace_at(self._fn, args, self._argnums, "sparse_jacobian")
            expr, wrt_list = _jacobian_plan(out, x, "sparse_jacobian")
            found = self._cache[key] = (SparseJacobian(expr, wrt_list, symbols, self._backend), numeric)
        return found

    def for_args(self, *args: Any) -> SparseJacobian:
        """The ``SparseJacobian`` serving a call with these arguments."""
        return self._entry(args)[0]

    def value_and_jacobian(self, *args: Any) -> tuple[Any, sp.csr_matrix]:
        sj, numeric = self._entry(args)
        return sj.value_and_jacobian(*[args[k] for k in numeric])

    def __call__(self, *args: Any) -> sp.csr_matrix:
        return self.value_and_jacobian(*args)[1]


class ScipyProblem:
    """``fun``/``jac``/``hess``/``hessp`` on flat float64 vectors for ``scipy.optimize``.

    Made by ``vg.scipy(*fixed, **fixed_by_name)`` from a compiled ``value_and_grad``;
    the inputs that are not differentiated are given once here (positionally in input
    order, or by name) and held fixed."""

    def __init__(self, vg: Compiled, *args: Any, **kwargs: Any) -> None:
        if not hasattr(vg, "output_names") or vg.output_names[0] != "value":
            raise UnsupportedError("scipy(): needs a function made by sg.value_and_grad")
        self.vg = vg
        names = list(vg.input_names)
        self.wrt_names = [n[2:] for n in vg.output_names[1:]]
        self.wrt = [vg.inputs[names.index(n)] for n in self.wrt_names]
        others = [n for n in names if n not in self.wrt_names]
        if len(args) > len(others):
            raise InputError(
                f"scipy(): {len(args)} fixed arguments given, but only "
                f"{len(others)} inputs are not differentiated ({', '.join(others)})"
            )
        fixed = dict(zip(others, args))
        for key, value in kwargs.items():
            if key in self.wrt_names:
                raise InputError(
                    f"scipy(): {key!r} is differentiated; its value comes from the "
                    "optimiser's vector, not a fixed argument"
                )
            if key not in others:
                raise InputError(
                    f"scipy(): unexpected argument {key!r}; the fixed inputs are "
                    f"{', '.join(others) or 'none'}"
                )
            if key in fixed:
                raise InputError(f"scipy(): argument {key!r} given twice")
            fixed[key] = value
        # inputs not fixed here come with every call, as minimize's args=(...), in input order
        self.late = [n for n in others if n not in fixed]
        self.fixed = fixed
        self.shapes: list[tuple[Any, ...] | None] = [
            tuple(w.shape) if concrete(w.shape) else None for w in self.wrt
        ]
        self._hess: Compiled | None = None
        self._hessp: Compiled | None = None
        self._last: tuple[np.ndarray, tuple[Any, ...], tuple[float, np.ndarray]] | None = None

    # -------------------------------------------------------- packing

    def pack(self, *values: ArrayLike) -> np.ndarray:
        """The ``wrt`` values as one flat float64 vector (and their shapes remembered)."""
        if len(values) != len(self.wrt):
            raise InputError(
                f"pack() takes {len(self.wrt)} values ({', '.join(self.wrt_names)}), got {len(values)}"
            )
        arrays = [np.asarray(v, dtype=np.float64) for v in values]
        for k, (a, w) in enumerate(zip(arrays, self.wrt)):
            if a.ndim != w.ndim:
                raise InputError(f"pack(): {w.name} must have shape {shape_str(w.shape)}, got {a.shape}")
            self.shapes[k] = a.shape
        return np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)

    def unpack(self, x: ArrayLike, fixed: dict[str, Any] | None = None) -> list[Any]:
        """The flat vector split back into one array per ``wrt`` input, each of its dtype."""
        x = np.asarray(x, dtype=np.float64)
        if any(s is None for s in self.shapes):
            self._infer_shapes(x, self.fixed if fixed is None else fixed)
        n = sum(int(np.prod(s)) for s in self.shapes)
        if x.shape != (n,):
            raise InputError(
                f"expected a flat vector of {n} values ({', '.join(self.wrt_names)}), got shape {x.shape}"
            )
        out, start = [], 0
        for s, w in zip(self.shapes, self.wrt):
            size = int(np.prod(s))
            part = x[start : start + size].reshape(s).astype(w.dtype)
            out.append(part[()] if part.ndim == 0 else part)
            start += size
        return out

    def _infer_shapes(self, x, fixed):
        """Symbolic ``wrt`` shapes from the sizes of the fixed inputs (``w: (d,)`` and
        ``X: (n, d)`` give d), and a single remaining 1-d input takes what is left of ``x``."""
        sizes = {}
        for s in self.vg.inputs:
            value = fixed.get(s.name)
            shape = getattr(value, "shape", None)
            if shape is None or len(shape) != s.ndim:
                continue
            for d, size in zip(s.shape, shape):
                if not isinstance(d, int) and d.is_Symbol and not np.isnan(size):
                    sizes.setdefault(d, int(size))
        unknown = []
        for k, w in enumerate(self.wrt):
            if self.shapes[k] is not None:
                continue
            shape = tuple(
                d
                if isinstance(d, int)
                else sizes.get(d)
                if d.is_Symbol
                else (int(d.subs(sizes)) if d.free_symbols <= set(sizes) else None)
                for d in w.shape
            )
            if None in shape:
                unknown.append(k)
            else:
                self.shapes[k] = shape
        if len(unknown) == 1 and self.wrt[unknown[0]].ndim == 1:
            known = sum(int(np.prod(s)) for s in self.shapes if s is not None)
            self.shapes[unknown[0]] = (x.size - known,)
        elif unknown:
            names = ", ".join(self.wrt_names[k] for k in unknown)
            raise InputError(
                f"unpack(): the sizes of {names} are symbolic and no fixed input "
                "fixes them; call pack(...) once with example values first"
            )

    def _kwargs(self, x, args=()):
        kwargs = dict(self.fixed)
        if len(args) > len(self.late):
            rest = (
                f"the inputs not fixed are {', '.join(self.late)}"
                if self.late
                else "every input not differentiated was fixed in scipy(...)"
            )
            raise InputError(f"got {len(args)} extra argument{'s' if len(args) != 1 else ''}, but {rest}")
        if len(args) < len(self.late):
            missing = self.late[len(args) :]
            raise InputError(
                f"missing fixed argument{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)}: give it to scipy(...) or with every "
                f"call, as minimize(..., args=({', '.join(self.late)},))"
            )
        kwargs.update(zip(self.late, args))
        kwargs.update(zip(self.wrt_names, self.unpack(x, kwargs)))
        return kwargs

    @staticmethod
    def _flat(parts):
        return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])

    # -------------------------------------------------------- the callables

    def fun(self, x: ArrayLike, *args: Any) -> tuple[float, np.ndarray]:
        """(value, gradient) at ``x``: for ``minimize(..., jac=True)``. ``args`` are the inputs
        not fixed in ``scipy(...)``, in input order (minimize's ``args=``)."""
        value, grads = self.vg(**self._kwargs(x, args))
        grads = pytree.flatten(grads)[0]  # one gradient, a tuple of them or a pytree
        result = float(value), self._flat(grads)
        self._last = (np.array(x, dtype=np.float64), args, result)
        return result

    __call__ = fun

    def value(self, x: ArrayLike, *args: Any) -> float:
        """The value alone."""
        return self._cached(x, args)[0]

    def jac(self, x: ArrayLike, *args: Any) -> np.ndarray:
        """The gradient alone (reuses the last ``fun`` call at the same point)."""
        return self._cached(x, args)[1]

    def _cached(self, x, args):
        if (
            self._last is not None
            and np.array_equal(self._last[0], x)
            and len(args) == len(self._last[1])
            and all(a is b for a, b in zip(args, self._last[1]))
        ):
            return self._last[2]
        return self.fun(x, *args)

    def hess(self, x: ArrayLike, *args: Any) -> np.ndarray:
        """The dense Hessian at ``x``, an (n, n) float64 array.

        With concrete ``wrt`` sizes it is one compiled function; with symbolic sizes (which
        the data fixes only at the call) it is one Hessian-vector product per column, each
        compiled once for every size, mirrored to be exactly symmetric."""
        if not all(concrete(w.shape) for w in self.wrt):
            x = np.asarray(x, dtype=np.float64)
            n = x.size
            columns = np.empty((n, n))
            unit = np.zeros(n)
            for j in range(n):
                unit[j] = 1.0
                columns[:, j] = self.hessp(x, unit, *args)
                unit[j] = 0.0
            return (columns + columns.T) / 2
        if self._hess is None:
            loss = self.vg.outputs[0]
            blocks = api.hessian(loss, self.wrt)
            flat = [b for row in blocks for b in row]
            self._hess = api.compile(
                flat, inputs=list(self.vg.inputs), backend=self.vg.backend, name="hessian"
            )
        parts = self._hess(**self._kwargs(x, args))
        sizes = [int(np.prod(s)) for s in self.shapes]
        k = len(self.wrt)
        rows = [
            [np.asarray(parts[i * k + j], dtype=np.float64).reshape(sizes[i], sizes[j]) for j in range(k)]
            for i in range(k)
        ]
        return np.block(rows)

    def hessp(self, x: ArrayLike, v: ArrayLike, *args: Any) -> np.ndarray:
        """The Hessian-vector product H(x) v, without forming H."""
        if self._hessp is None:
            taken = set(self.vg.input_names)
            directions = []
            for w in self.wrt:
                name = f"{w.name}_direction"
                while name in taken:
                    name += "_"
                taken.add(name)
                directions.append(api.tensor(name, w.shape, w.dtype))
            products = api.hvp(self.vg.outputs[0], self.wrt, directions)
            self._directions = directions
            self._hessp = api.compile(
                products, inputs=list(self.vg.inputs) + directions, backend=self.vg.backend, name="hvp"
            )
        kwargs = self._kwargs(x, args)
        for d, part in zip(self._directions, self.unpack(v, kwargs)):
            kwargs[d.name] = part
        return self._flat(self._hessp(**kwargs))

    # -------------------------------------------------------- constraints

    def constraint(
        self, g: ExprLike, type: str = "ineq", *, args: tuple[Any, ...] = (), sparse: bool = False
    ) -> dict[str, Any]:
        """A constraint for ``minimize(..., constraints=[...])``: ``g`` (an expression of the
        inputs, any shape) ``>= 0`` elementwise (``type="ineq"``) or ``== 0`` (``"eq"``), as
        SciPy's dict ``{"type", "fun", "jac", "args"}``. The Jacobian with respect to the flat
        vector is a compiled sparse Jacobian (``sg.sparse_jacobian``), given as a dense array
        (SLSQP takes no other) or with ``sparse=True`` as CSR; the value and the Jacobian at
        one point come from one kernel call. ``args`` are the inputs not fixed in
        ``scipy(...)``, in input order (SciPy passes ``minimize``'s ``args=`` to the objective
        only)."""
        if type not in ("eq", "ineq"):
            raise UnsupportedError(f"constraint: type must be 'eq' or 'ineq', got {type!r}")
        jac = self._constraint_jacobian(g, "constraint")
        dense = jac.jac if sparse else lambda x, *more: jac.jac(x, *more).toarray()
        return {"type": type, "fun": jac.fun, "jac": dense, "args": tuple(args)}

    def nonlinear_constraint(self, g: ExprLike, lb: ArrayLike, ub: ArrayLike) -> Any:
        """``scipy.optimize.NonlinearConstraint(fun, lb, ub, jac=...)`` for ``lb <= g <= ub``
        with the sparse (CSR) Jacobian, for ``method="trust-constr"``. Every input that is not
        differentiated must have been fixed in ``scipy(...)`` (SciPy passes no ``args`` here)."""
        import scipy.optimize  # scipy loads only when a constraint is made

        if self.late:
            raise InputError(
                f"nonlinear_constraint: the inputs {', '.join(self.late)} are not fixed; "
                "give them to scipy(...) (trust-constr passes no args to constraints)"
            )
        jac = self._constraint_jacobian(g, "nonlinear_constraint")
        return scipy.optimize.NonlinearConstraint(jac.fun, lb, ub, jac=jac.jac)

    def _constraint_jacobian(self, g, where):
        missing = [w.name for w in self.wrt if not concrete(w.shape)]
        if missing:
            raise UnsupportedError(
                f"{where}: {', '.join(missing)} has a symbolic shape; a sparse constraint Jacobian "
                "needs concrete sizes"
            )
        expr, wrt_list = _jacobian_plan(g, self.wrt, where)
        sj = SparseJacobian(expr, wrt_list, list(self.vg.inputs), backend=self.vg.backend)
        return _FlatConstraint(self, sj)


class _FlatConstraint(_LastPoint):
    """A constraint's value (flattened) and sparse Jacobian on the optimiser's flat vector."""

    def __init__(self, problem: ScipyProblem, sj: SparseJacobian) -> None:
        self.problem, self.sparse_jacobian = problem, sj

    def value_and_jacobian(self, x: ArrayLike, *args: Any) -> tuple[Any, sp.csr_matrix]:
        value, jac = self.sparse_jacobian.value_and_jacobian(**self.problem._kwargs(x, args))
        return np.asarray(value, dtype=np.float64).reshape(-1), jac


runtime.install_scipy_problem(ScipyProblem)  # Compiled.scipy() builds one
