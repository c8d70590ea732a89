"""The public API carries type hints, shipped with a py.typed marker (PEP 561)."""

import inspect
import os
from collections.abc import Callable
from typing import Any

import pytest

import symgrad as sg
from symgrad import api, errors, graph, optimize, settings, symbol_constructors
from symgrad.codegen import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PUBLIC = [
    symbol_constructors.tensor,
    symbol_constructors.scalar,
    symbol_constructors.scalars,
    symbol_constructors.symbols,
    api.grad,
    api.vjp,
    api.jvp,
    api.jacobian,
    api.jacfwd,
    api.jacrev,
    api.jacobian_mode,
    api.hessian,
    api.hvp,
    api.hessian_sparsity,
    api.compile,
    api.value_and_grad,
    api.value_grad_and_hessian,
    api.vmap,
    optimize.sparse_hessian,
    api.check_grad,
    settings.config,
    graph.user_name,
    graph.as_shape,
    errors.ParseError.__init__,
    runtime.Compiled.__init__,
    runtime.Compiled.__call__,
    runtime.Compiled.scipy,
    runtime.Compiled.save,
    runtime.Compiled.compiles.fget,
    runtime.Compiled.input_names.fget,
    optimize.SparseHessian.__init__,
    optimize.SparseHessian.__call__,
    optimize.ScipyProblem.__init__,
    optimize.ScipyProblem.pack,
    optimize.ScipyProblem.unpack,
    optimize.ScipyProblem.fun,
    optimize.ScipyProblem.hess,
    optimize.ScipyProblem.hessp,
] + [getattr(sg.Expr, p).fget for p in ("ndim", "name", "value", "is_symbol", "is_constant")]


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__qualname__)
def test_public_functions_annotate_every_parameter_and_the_return(fn):
    signature = inspect.signature(fn)
    unannotated = [
        name
        for name, p in signature.parameters.items()
        if name != "self" and p.annotation is inspect.Parameter.empty
    ]
    assert not unannotated, f"{fn.__qualname__}: no hint for {unannotated}"
    assert signature.return_annotation is not inspect.Signature.empty, f"{fn.__qualname__}: no return hint"


def test_the_hints_resolve_to_the_types_they_name():
    hints = inspect.get_annotations(api.grad, eval_str=True)
    traced = sg.api.TracedFunction
    assert hints["return"] == sg.Expr | list[sg.Expr] | traced | Callable[[Callable[..., Any]], traced]
    assert inspect.get_annotations(graph.Expr.ndim.fget, eval_str=True)["return"] is int


def test_the_package_ships_py_typed():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert os.path.isfile(os.path.join(ROOT, "symgrad", "py.typed"))
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        config = tomllib.load(fh)
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["symgrad"]
