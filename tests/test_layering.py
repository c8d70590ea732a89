"""The package's layering, read from the source (the AST of every module, nothing imported).

symgrad has three layers; a module may import the layers below it, never those above:

- the language: ``graph``, ``errors``, ``ops``, ``passes``, ``autodiff``, ``frontends`` (and the
  helpers next to them: ``printing``, ``symbol_constructors``, ``sparsity``, ``decompose``, ``draw``);
- the compiler, ``symgrad.codegen`` (the repository's ``codegen/`` folder): from symgrad it
  imports only ``graph``, ``errors``, ``ops`` and ``_version``;
- the public API: ``api``, ``optimize``, ``dask_arrays``, ``settings``, ``cli``, which wire in SciPy and Dask
  through the runtime's hooks (``register_array_hook``), never the other way round.

The benchmark harness (``bench``, ``bench_dask``, ``bench_build``) is no part of the library: only ``symgrad
bench`` (``cli``) loads it, inside the function that runs it.

An import inside a function hides an edge from this picture, so none may name a symgrad module
(except the allow-list below); heavy optional third-party packages may be imported late for
start-up time, each listed with its reason.
"""

import ast
import subprocess
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LANGUAGE = ("graph", "errors", "ops", "passes", "autodiff", "frontends")
# the helpers next to the language, held to the same rule
LANGUAGE += (
    "printing",
    "symbol_constructors",
    "sparsity",
    "decompose",
    "draw",
    "pytree",
    "transforms",
    "custom",
    "batching",
    "loops",
)
ABOVE_LANGUAGE = (
    "codegen",
    "api",
    "extend",
    "optimize",
    "implicit",
    "dask_arrays",
    "settings",
    "cli",
    "bench",
    "bench_dask",
    "bench_build",
)
COMPILER_MAY_IMPORT = ("graph", "errors", "ops", "_version")
HARNESS = ("symgrad.bench", "symgrad.bench_dask", "symgrad.bench_build")

# (module, imported module): function-local imports of symgrad's own modules, each with its reason
LOCAL_SYMGRAD_ALLOWED = {
    # the benchmark harness is not library code: only the ``symgrad bench`` command loads it
    ("symgrad.cli", "symgrad.bench"): "the harness (with the demo's by-hand references and timer) "
    "is not library code; only `symgrad bench` and `symgrad demo` load it",
}

# heavy optional third-party packages a function may import when it needs them (start-up time)
LOCAL_THIRD_PARTY_ALLOWED = {
    "numba": "the numba compiler takes ~0.5 s to import; only numba-backend builds need it",
    "scipy": "scipy.sparse takes ~0.5 s to import; only sparsity patterns and sparse Hessians need it",
    "dask": "optional dependency (symgrad[dask]); only a call with Dask arrays needs it",
    "distributed": "optional dependency (symgrad[dask]); looked up only when Dask arrays are passed",
    "sympy": "the benchmark harness's SymPy peer (symgrad itself imports sympy at module level)",
}


def _modules():
    """{module name: path} for every module of symgrad and symgrad.codegen."""
    found = {}
    for folder, package in (("symgrad", "symgrad"), ("codegen", "symgrad.codegen")):
        base = os.path.join(ROOT, folder)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            rel = os.path.relpath(dirpath, base)
            parts = [package] + ([] if rel == "." else rel.split(os.sep))
            for f in filenames:
                if f.endswith(".py"):
                    name = ".".join(parts if f == "__init__.py" else parts + [f[:-3]])
                    found[name] = os.path.join(dirpath, f)
    return found


MODULES = _modules()


def _is_package(module):
    return MODULES[module].endswith("__init__.py")


def _resolve(module, node):
    """The absolute module names an Import/ImportFrom node names (``from . import x`` names the
    submodule x when there is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        parts = module.split(".")
        base = parts if _is_package(module) else parts[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    names = []
    for a in node.names:
        full = f"{prefix}.{a.name}"
        names.append(full if full in MODULES else prefix)
    return names


def _imports():
    """[(module, imported, lineno, local)] for every import statement of every module."""
    edges = []
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        local = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                local.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(module, node):
                    edges.append((module, target, node.lineno, id(node) in local))
    return edges


EDGES = _imports()


def _own(name):
    return name == "symgrad" or name.startswith("symgrad.")


def _in(name, tops):
    """Is ``name`` one of symgrad's ``tops`` (``ops`` covers ``symgrad.ops.registry``)?"""
    return any(name == f"symgrad.{t}" or name.startswith(f"symgrad.{t}.") for t in tops)


def test_every_module_is_found():
    assert "symgrad.graph" in MODULES and "symgrad.codegen.emit" in MODULES
    assert "symgrad.ops.registry" in MODULES and "symgrad.frontends.trace" in MODULES


def test_no_import_cycle_among_symgrad_modules():
    # importing ``symgrad.x`` runs ``symgrad/__init__`` first; that is Python's doing, not an
    # edge of ours, so the package's re-exports are not followed from the modules below it
    graph = {m: set() for m in MODULES}
    for src, dst, _, local in EDGES:
        if not local and dst in MODULES and dst != "symgrad":
            graph[src].add(dst)
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_language_imports_no_compiler_and_no_public_api():
    bad = [
        f"{src} imports {dst} (line {line})"
        for src, dst, line, _ in EDGES
        if _in(src, LANGUAGE) and _in(dst, ABOVE_LANGUAGE)
    ]
    assert not bad, "\n".join(bad)


def test_compiler_imports_only_graph_errors_and_op_table():
    bad = [
        f"{src} imports {dst} (line {line})"
        for src, dst, line, _ in EDGES
        if src.startswith("symgrad.codegen")
        and _own(dst)
        and not dst.startswith("symgrad.codegen")
        and not _in(dst, COMPILER_MAY_IMPORT)
    ]
    assert not bad, "\n".join(bad)


def test_no_function_local_import_of_a_symgrad_module():
    bad = [
        f"{src} imports {dst} inside a function (line {line})"
        for src, dst, line, local in EDGES
        if local and _own(dst) and (src, dst) not in LOCAL_SYMGRAD_ALLOWED
    ]
    assert not bad, "\n".join(bad)
    for (src, dst), reason in LOCAL_SYMGRAD_ALLOWED.items():
        assert "cycle" not in reason
        assert any(e[:2] == (src, dst) and e[3] for e in EDGES), f"stale allow-list entry {src} -> {dst}"


def test_function_local_third_party_imports_are_listed():
    bad = [
        f"{src} imports {dst} inside a function (line {line})"
        for src, dst, line, local in EDGES
        if local
        and not _own(dst)
        and dst.split(".")[0] not in LOCAL_THIRD_PARTY_ALLOWED
        and dst.split(".")[0] not in sys.stdlib_module_names  # the standard library is cheap
    ]
    assert not bad, "\n".join(bad)
    for package in LOCAL_THIRD_PARTY_ALLOWED:
        assert any(e[3] and e[1].split(".")[0] == package for e in EDGES), f"stale entry {package}"


def test_only_the_cli_loads_the_benchmark_harness():
    users = {(src, local) for src, dst, _, local in EDGES if dst in HARNESS and src not in HARNESS}
    assert users == {("symgrad.cli", True)}, users


# ---------------------------------------------------------------- the hooks, at run time

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad import api, errors, symbol_constructors  # noqa: E402
from symgrad.codegen import runtime  # noqa: E402
from symgrad.codegen.emit import Emitter  # noqa: E402
from symgrad.codegen.standalone import standalone_source  # noqa: E402


class _LazyArray:
    """An array kind numpy does not know, standing in for a Dask array."""

    def __init__(self, data):
        self.data = data


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_registered_array_hook_receives_the_call_of_an_entry(monkeypatch, backend):
    monkeypatch.setattr(runtime, "_array_hooks", list(runtime._array_hooks))
    calls = []

    def handler(entry, args):
        calls.append((runtime.owner_of(entry), args))
        return "handled above"

    asked = []

    def predicate(value):
        asked.append(type(value))
        return isinstance(value, _LazyArray)

    runtime.register_array_hook(predicate, handler)
    x, w = sg.tensor("x", ("n",)), sg.scalar("w")
    f = sg.compile(sg.sum(w * x), inputs=[w, x], backend=backend)
    lazy = _LazyArray([1.0, 2.0])
    assert f(3.0, lazy) == "handled above"
    assert calls == [(f, (3.0, lazy))]
    # plain arrays, and values numpy converts, never reach the hook
    assert f(3.0, np.array([1.0, 2.0])) == 9.0
    assert f(3.0, [1.0, 2.0]) == 9.0
    assert len(calls) == 1
    # nor is it asked about a numpy array that is converted (integers, a strided view, read-only)
    del asked[:]
    read_only = np.array([1.0, 2.0])
    read_only.flags.writeable = False
    for plain in (
        np.array([1, 2]),
        np.array([1.0, 0.0, 2.0])[::2],
        read_only,
        np.array([1.0, 2.0], dtype=">f8"),
    ):
        assert f(3.0, plain) == 9.0
    assert np.ndarray not in asked and f(3.0, [1.0, 2.0]) == 9.0 and asked == [list]


def test_the_hook_is_asked_only_on_the_slow_path_and_generated_code_names_no_dask():
    x, w = sg.tensor("x", ("n",)), sg.scalar("w")
    vg = sg.value_and_grad(sg.sum(w * x), wrt=w, inputs=[w, x])
    assert "dask" not in vg.source.lower()
    lines = vg.source.split("\n")
    (k,) = [i for i, line in enumerate(lines) if "_cv.hooked(" in line]
    guard = lines[k - 1]
    assert "type(x) is not _ndarray" in guard and "flags.num" in guard
    indent = len(lines[k]) - len(lines[k].lstrip())
    assert indent > len(guard) - len(guard.lstrip())  # inside the conversion branch
    # a saved module takes numpy arrays only: no hook branch
    assert "hooked" not in standalone_source(vg)


def test_a_compiled_function_that_is_not_a_value_and_grad_refuses_dask_arrays():
    da = pytest.importorskip("dask.array")
    x = sg.tensor("x", ("n",))
    f = sg.compile(sg.sum(x), inputs=[x])
    with pytest.raises(
        errors.InputError, match="Dask arrays can be passed to functions made by sg.value_and_grad"
    ):
        f(da.ones(4, chunks=2))


def test_compiled_scipy_comes_from_the_layer_above(monkeypatch):
    x = sg.tensor("x", (2,))
    vg = sg.value_and_grad(sg.sum(x * x), wrt=x)
    problem = vg.scipy()
    value, grad = problem.fun(np.array([1.0, 2.0]))
    assert value == 5.0 and np.array_equal(grad, [2.0, 4.0])
    monkeypatch.setattr(runtime, "_scipy_problem", None)
    with pytest.raises(errors.UnsupportedError, match=r"\.scipy\(\) needs symgrad.optimize"):
        vg.scipy()


def test_symbol_constructors_live_in_their_own_module_and_are_re_exported():
    for name in ("tensor", "scalar", "scalars", "symbols"):
        assert getattr(sg, name) is getattr(symbol_constructors, name) is getattr(api, name)
    assert sg.tensor("x", (2,)) is symbol_constructors.tensor("x", (2,))
    n = sg.tensor("s", ("n",)).shape[0]
    with pytest.raises(
        errors.ShapeError, match=r"tensor 'x': input dimensions must be ints or names, got n \+ 1"
    ):
        sg.tensor("x", (n + 1,))


def test_the_backend_base_class_asks_its_subclass_not_its_name():
    with open(os.path.join(ROOT, "codegen", "emit.py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    compares = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare)
        and isinstance(n.left, ast.Attribute)
        and n.left.attr == "backend"
        and isinstance(n.left.value, ast.Name)
        and n.left.value.id == "self"
    ]
    assert not compares
    assert Emitter.module_imports == ()


def test_the_cli_loads_the_benchmark_harness_only_for_symgrad_bench():
    script = (
        "import sys, contextlib, io\n"
        "from symgrad import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['cache', 'info'])\n"
        "assert 'symgrad.bench' not in sys.modules, 'symgrad cache loaded the harness'\n"
        "out = io.StringIO()\n"
        "try:\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        cli.main(['bench', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
        "assert out.getvalue().startswith('usage: symgrad bench'), out.getvalue()\n"
        "assert 'symgrad.bench' in sys.modules\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def test_importing_symgrad_fills_every_registration_point_of_the_layers_below():
    from symgrad import dask_arrays, graph, optimize, printing
    from symgrad.frontends import numpy_protocol, sympy_bridge, trace
    from symgrad.ops import registry
    from symgrad.passes import simplify

    assert registry._rewrite is simplify.rewrite
    assert graph.PRINTERS["text"] is printing.expr_str and graph.PRINTERS["latex"] is printing.expr_latex
    assert numpy_protocol._compound_size is sympy_bridge.size_expr
    assert runtime._scipy_problem is optimize.ScipyProblem
    assert (trace.is_dask, dask_arrays.call_entry) in runtime._array_hooks
    from symgrad import settings
    from symgrad.codegen import progress

    assert progress._settings is settings.current and trace._building is progress.building
    # and they work: x * 1 is x, an Expr prints as its formula, a size n - 1 is a node
    x = sg.tensor("x", ("n",))
    assert x * 1 is x and repr(sg.sin(x) + 1) == "sin(x) + 1.0"
    f = sg.compile(np.divide(np.sum(x[1:]), x.shape[0] - 1), inputs=[x], backend="numpy")
    assert f(np.array([5.0, 1.0, 2.0, 6.0])) == 3.0


def test_a_build_with_symbolic_dims_and_a_rolled_loop_imports_no_more_sympy(tmp_path):
    # SymPy's Add imports sympy.tensor at its first sum: that belongs to import, not to a build
    script = (
        "import sys\n"
        "import numpy as np\n"
        "import symgrad as sg\n"
        "before = {m for m in sys.modules if m.startswith('sympy')}\n"
        "def euler(a, x0, obs):\n"
        "    x, loss = x0, 0.0\n"
        "    for o in obs:\n"
        "        x = x + 0.01 * a * np.sin(x)\n"
        "        loss = loss + (x - o) ** 2\n"
        "    return loss\n"
        "value, grad = sg.value_and_grad(euler, (0, 1))(1.0, 0.4, np.linspace(0.4, 0.6, 40))\n"
        "x = sg.tensor('x', ('n',))\n"
        "f = sg.compile(sg.sum((x[1:] - x[:-1]) ** 2), backend='numpy')\n"
        "assert f(np.array([1.0, 3.0, 2.0])) == 5.0\n"
        "new = sorted({m for m in sys.modules if m.startswith('sympy')} - before)\n"
        "assert not new, new\n"
        "print(value)\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        SYMGRAD_CACHE_DIR=str(tmp_path / "cache"),
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    x, loss = 0.4, 0.0
    for o in np.linspace(0.4, 0.6, 40):
        x = x + 0.01 * 1.0 * np.sin(x)
        loss += (x - o) ** 2
    assert np.isclose(float(done.stdout.split()[-1]), loss, rtol=1e-12)
