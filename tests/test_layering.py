"""The package's layering, read from the source (the AST of every module, nothing imported).

symgrad has three layers; a module may import the layers below it, never those above:

- the language: ``graph``, ``errors``, ``ops``, ``passes``, ``autodiff``, ``frontends`` (and the
  helpers next to them: ``printing``, ``symbols``, ``sparsity``, ``decompose``, ``draw``);
- the compiler, ``symgrad.codegen`` (the repository's ``codegen/`` folder): from symgrad it
  imports only ``graph``, ``errors``, ``ops`` and ``_version``;
- the public API: ``api``, ``optimize``, ``dask_arrays``, ``cli``, which wire in SciPy and Dask
  through the runtime's hooks (``register_array_hook``), never the other way round.

The benchmark harness (``bench``, ``bench_dask``) is no part of the library: only ``symgrad
bench`` (``cli``) loads it, inside the function that runs it.

An import inside a function hides an edge from this picture, so none may name a symgrad module
(except the allow-list below); heavy optional third-party packages may be imported late for
start-up time, each listed with its reason.
"""

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LANGUAGE = ("graph", "errors", "ops", "passes", "autodiff", "frontends")
ABOVE_LANGUAGE = ("codegen", "api", "optimize", "dask_arrays", "cli", "bench", "bench_dask")
COMPILER_MAY_IMPORT = ("graph", "errors", "ops", "_version")
HARNESS = ("symgrad.bench", "symgrad.bench_dask")

# (module, imported module): function-local imports of symgrad's own modules, each with its reason
LOCAL_SYMGRAD_ALLOWED = {
    # the benchmark harness is not library code: only the ``symgrad bench`` command loads it
    ("symgrad.cli", "symgrad.bench"): "the harness (with the demo's by-hand references and timer) "
    "is not library code; only `symgrad bench` and `symgrad demo` load it",
}

# heavy optional third-party packages a function may import when it needs them (start-up time)
LOCAL_THIRD_PARTY_ALLOWED = {
    "numba": "the numba compiler takes ~0.5 s to import; only numba-backend builds need it",
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
