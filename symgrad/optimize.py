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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from . import api, autodiff, pytree, sparsity
from .codegen import runtime
from .errors import InputError, UnsupportedError
from .graph import Expr, concrete, size_of, shape_str
from .ops import concatenate, constant, reshape

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


runtime.install_scipy_problem(ScipyProblem)  # Compiled.scipy() builds one
