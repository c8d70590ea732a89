"""The on-disk module cache: named by source and library versions, robust to corrupt files and
to several processes at once; every compile recorded with its cause."""

import os
from pathlib import Path
import subprocess
import sys
import tempfile
import textwrap
import time

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import runtime

ROOT = str(Path(__file__).resolve().parents[2])

SCRIPT = textwrap.dedent("""
    import numpy as np
    import symgrad as sg
    x = sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(sg.exp(sg.sin(x)) * x ** 2), wrt=x)
    value, grad = vg(np.linspace(-1.0, 1.0, 7))
    print(repr(float(value)), vg.cache_state, vg._module.__file__)
""")


def _run(cache, count=1):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        value, *state, path = out.split()
        results.append((float(value), " ".join(state), path))
    return results


def _expected():
    x = np.linspace(-1.0, 1.0, 7)
    return float(np.sum(np.exp(np.sin(x)) * x**2))


def test_module_name_hashes_the_library_versions(monkeypatch):
    source = "# a module\nvalue = 1\n"
    first, _ = runtime.load_module(source, "numba")
    numpy_name = runtime.module_name(source, "numpy")
    monkeypatch.setattr(runtime, "_versions_text", runtime.library_versions() + " (another numba)")
    second, _ = runtime.load_module(source, "numba")
    assert first.__name__ != second.__name__ and second.value == 1
    for lib in ("symgrad", "numba", "numpy", "python"):
        assert lib in runtime.library_versions()
    # a numpy module holds no machine code: numba's version is not in its name
    assert runtime.module_name(source, "numpy") == numpy_name
    monkeypatch.setattr(runtime, "__version__", "0.0.0+another")
    assert runtime.module_name(source, "numpy") != numpy_name


def test_svml_and_plain_machine_code_never_share_a_module(monkeypatch):
    # code vectorised with SVML calls __svml_* symbols; a process without SVML must not load it
    import numba

    names = []
    for using in (False, True):
        monkeypatch.setattr(numba.config, "USING_SVML", using, raising=False)
        monkeypatch.setattr(runtime, "_versions_text", None)
        assert ("svml on" if using else "svml off") in runtime.library_versions()
        names.append(runtime.load_module("# a module\nvalue = 2\n", "numba")[0].__name__)
    assert names[0] != names[1]


def test_concurrent_processes_and_corrupt_cache_files_recompile_never_crash(tmp_path):
    # three cold processes at once share one cache directory
    results = _run(tmp_path, count=3)
    assert all(v == pytest.approx(_expected(), rel=1e-12) for v, _, _ in results)
    path = results[0][2]
    source = open(path, encoding="utf-8").read()
    # truncate the module, and corrupt every numba and bytecode file next to it
    with open(path, "wb") as fh:
        fh.write(source.encode()[:40] + b"\xff\xfe")
    cached = os.path.join(tmp_path, "__pycache__")
    for name in os.listdir(cached):
        with open(os.path.join(cached, name), "r+b") as fh:
            fh.truncate(7)
    ((value, state, again),) = _run(tmp_path)
    assert value == pytest.approx(_expected(), rel=1e-12) and again == path
    assert open(path, encoding="utf-8").read() == source
    # and the next process finds everything in order
    ((value, state, _),) = _run(tmp_path)
    assert state == "machine code loaded from cache"


def test_a_new_batch_size_compiles_nothing_and_new_types_from_numba_are_named():
    X = sg.tensor("X", ("n", "d"))
    w = sg.tensor("w", ("d",))
    vg = sg.value_and_grad(sg.sum(sg.tanh(X @ w) ** 2), wrt=w, inputs=[w, X])
    rng = np.random.default_rng(0)
    for n in (1, 16, 1000):
        vg(rng.normal(size=3), rng.normal(size=(n, 3)))
    vg(rng.normal(size=3).tolist(), rng.normal(size=(5, 3)).astype(np.float32))  # converted, not compiled
    (build,) = vg.compiles
    assert build["cause"] == "build" and "X: array(float64, 2d, C)" in build["signature"]
    kernel = vg.kernel

    @numba.njit
    def user(w, X):
        return kernel(w, X)[0]

    user(np.ones(3), np.ones((4, 6))[:, ::2])  # a strided view: another layout
    build, extra = vg.compiles
    assert "argument 'X' is array(float64, 2d, A)" in extra["cause"] and "'w'" not in extra["cause"]


def test_readonly_and_unaligned_arrays_run_the_built_machine_code_without_recompiling():
    # the entry calls the compiled overload directly, so what reaches it must have its layout
    x = sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(sg.exp(x) * x), wrt=x)
    data = np.linspace(0.0, 1.0, 5)
    want = vg(data)
    readonly = data.copy()
    readonly.flags.writeable = False
    unaligned = np.zeros(5 * 8 + 1, dtype=np.uint8)[1:].view(np.float64)
    unaligned[:] = data
    assert not unaligned.flags.aligned
    for arg in (readonly, unaligned, data[::-1][::-1], list(data)):
        value, grad = vg(arg)
        assert value == want[0] and np.array_equal(grad, want[1])
    assert len(vg.kernel.signatures) == 1 and len(vg.compiles) == 1


# ---------------------------------------------------------------- a private cache directory


def _build_in(monkeypatch, cache, backend="numpy"):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(cache))
    x = sg.scalar("x")
    return sg.compile(sg.sin(x) * 2.5 + 0.75, backend=backend)


def _assert_private_fallback(f, refused):
    folder = os.path.dirname(f._module.__file__)
    # by path components: the fresh mkdtemp "symgrad-0zs..." shares a string prefix with "symgrad-0"
    assert not Path(folder).is_relative_to(refused)
    st = os.stat(folder)
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700
    assert f(0.5) == pytest.approx(np.sin(0.5) * 2.5 + 0.75, rel=1e-15)


def test_a_cache_directory_others_can_write_is_refused_for_a_private_one(tmp_path, monkeypatch):
    for mode, what in ((0o777, "others"), (0o770, "group")):
        cache = tmp_path / f"shared{mode:o}"
        cache.mkdir()
        cache.chmod(mode)
        with pytest.warns(
            RuntimeWarning, match=r"not private to this user: .*written by its group or by others"
        ):
            f = _build_in(monkeypatch, cache)
        _assert_private_fallback(f, cache)
        assert not any(p.name.startswith("symgrad_") for p in cache.iterdir()), what


def test_a_cache_directory_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "theirs"
    cache.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(cache, 4242, -1)
        other = 4242
    else:  # not root: pretend to be another user instead
        other = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: other + 1)
    with pytest.warns(RuntimeWarning, match=f"owned by uid {other}, not by this user"):
        f = _build_in(monkeypatch, cache)
    _assert_private_fallback(f, cache)


def test_a_pycache_others_can_write_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "mine"
    cache.mkdir(mode=0o700)
    (cache / "__pycache__").mkdir()
    (cache / "__pycache__").chmod(0o777)
    with pytest.warns(RuntimeWarning, match=r"__pycache__ can be written by its group or by others"):
        f = _build_in(monkeypatch, cache)
    _assert_private_fallback(f, cache)


def test_directories_symgrad_creates_are_private(tmp_path, monkeypatch):
    import warnings

    old = os.umask(0o002)  # a permissive umask must not make them group-writable
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            f = _build_in(monkeypatch, tmp_path / "a" / "b" / "cache", backend="numba")
    finally:
        os.umask(old)
    for folder in ("a", "a/b", "a/b/cache", "a/b/cache/__pycache__"):
        assert (tmp_path / folder).stat().st_mode & 0o777 == 0o700, folder
    # numba's index and machine code are only in the checked directory
    assert os.path.dirname(f._module.__file__) == str(tmp_path / "a" / "b" / "cache")
    f(0.5)
    numba_files = [p.name for p in (tmp_path / "a" / "b" / "cache" / "__pycache__").iterdir()]
    assert any(n.endswith(".nbi") for n in numba_files) and any(n.endswith(".nbc") for n in numba_files)


def test_a_preexisting_world_writable_fallback_directory_is_never_used(tmp_path, monkeypatch):
    # the old fallback was the predictable $TMPDIR/symgrad-<uid>, trusted if it existed
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    planted = tmp / f"symgrad-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        f = _build_in(monkeypatch, blocker / "cache")
    _assert_private_fallback(f, planted)
    assert list(planted.iterdir()) == []


PLANTED = textwrap.dedent("""
    import sys, numpy as np, symgrad as sg
    x = sg.scalar("x")
    f = sg.compile(sg.sin(x) * 2.5 + 0.75, backend=sys.argv[1])
    print(repr(float(f(0.5))))
""")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_planted_bytecode_file_beside_a_generated_module_is_never_run(tmp_path, backend):
    import importlib.util
    import marshal

    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))
    run = [sys.executable, "-c", PLANTED, backend]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr
    # (a numba module's kernel is a module of its own beside it: a .pyc planted beside each)
    sources = [p for p in tmp_path.iterdir() if p.name.startswith(f"symgrad_{backend}_")]
    assert len(sources) == (2 if backend == "numba" else 1)
    canary = tmp_path / "canary"
    for source in sources:
        # a .pyc with the header Python checks (its source's time and size) that makes the canary
        payload = compile(f"open({str(canary)!r}, 'w').close()\n" + source.read_text(), str(source), "exec")
        st = source.stat()
        header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
        header += (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (st.st_size & 0xFFFFFFFF).to_bytes(
            4, "little"
        )
        pyc = importlib.util.cache_from_source(str(source))
        os.makedirs(os.path.dirname(pyc), exist_ok=True)
        with open(pyc, "wb") as fh:
            fh.write(header + marshal.dumps(payload))
    again = subprocess.run(run, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert float(again.stdout) == pytest.approx(np.sin(0.5) * 2.5 + 0.75, rel=1e-15)
    assert not canary.exists()


# ---------------------------------------------------------------- bounded memory and disk


def test_dropped_functions_release_their_generated_modules():
    import gc

    gc.collect()
    baseline = runtime.generated_modules()
    x = sg.tensor("x", ("n",))
    data = np.linspace(-1.0, 1.0, 5)
    for k in range(12):
        backend = "numba" if k < 2 else "numpy"
        f = sg.value_and_grad(sg.sum(sg.sin(x) * (k + 0.375)), wrt=x, backend=backend)
        value, _ = f(data)
        assert value == pytest.approx(np.sum(np.sin(data)) * (k + 0.375), rel=1e-13)
        assert f._module.__name__ in runtime.generated_modules()
        del f
    gc.collect()
    assert runtime.generated_modules() == baseline
    assert not [m for m in runtime._modules.values() if m.__name__ not in baseline]


def test_a_module_stays_while_any_function_built_from_it_lives():
    import gc

    x = sg.scalar("x")
    first = sg.compile(sg.cos(x) * 1.625, backend="numpy")
    second = sg.compile(sg.cos(x) * 1.625, backend="numpy")
    assert first._module is second._module
    name = first._module.__name__
    del first
    gc.collect()
    assert name in runtime.generated_modules() and second(0.0) == 1.625
    del second
    gc.collect()
    assert name not in runtime.generated_modules()


def _text(cache, k):
    # a text of its own for each test: this process may already hold another test's modules
    return f"# module {k} for {cache.name}\nvalue = {k}\n" + "#" * 1000 + "\n"


def _fill(cache, count):
    """``count`` generated modules in ``cache``, the first one used longest ago."""
    names = []
    for k in range(count):
        module, _ = runtime.load_module(_text(cache, k), "numpy")
        names.append(module.__name__)
    old = time.time() - 3600
    for k, name in enumerate(names):
        path = cache / f"{name}.py"
        os.utime(path, (old + k, old))
    return names


def test_eviction_removes_the_least_recently_used_modules_over_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    names = _fill(tmp_path, 5)
    # compiled code beside a module goes with it
    index = tmp_path / "__pycache__" / f"{names[0]}.kernel-3.py311.nbi"
    index.write_bytes(b"x" * 100)
    os.utime(index, (time.time() - 3600, time.time() - 3600))
    size = (tmp_path / f"{names[0]}.py").stat().st_size
    assert runtime.cache_size(str(tmp_path)) == (5 * size + 100, 6)
    # module 1 is used again: now the most recent
    os.utime(tmp_path / f"{names[1]}.py", (time.time() - 600, time.time() - 3600))
    monkeypatch.setenv("SYMGRAD_CACHE_MAX_BYTES", str(2 * size + 50))
    files, removed = runtime.evict(str(tmp_path))
    assert (files, removed) == (4, 3 * size + 100)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("symgrad_"))
    assert left == sorted([f"{names[1]}.py", f"{names[4]}.py"])
    assert list((tmp_path / "__pycache__").iterdir()) == []


def test_a_new_module_over_the_cap_evicts_and_recent_modules_are_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    names = _fill(tmp_path, 3)
    monkeypatch.setenv("SYMGRAD_CACHE_MAX_BYTES", "1")
    module, existed = runtime.load_module(_text(tmp_path, 7), "numpy")
    assert not existed and module.value == 7
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith("symgrad_")]
    # the new module was used just now: kept although the cache is still over its cap
    assert left == [f"{module.__name__}.py"] and not any(n + ".py" in left for n in names)


def test_loading_a_module_marks_it_used_without_touching_what_numba_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    (name,) = _fill(tmp_path, 1)
    path = tmp_path / f"{name}.py"
    before = path.stat()
    runtime.load_module(_text(tmp_path, 0), "numpy")
    after = path.stat()
    assert after.st_mtime_ns == before.st_mtime_ns and after.st_size == before.st_size
    assert after.st_atime > time.time() - 60 > before.st_atime


def test_a_bad_cache_cap_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE_MAX_BYTES", "a lot")
    with pytest.raises(sg.UnsupportedError, match="SYMGRAD_CACHE_MAX_BYTES must be a number of bytes"):
        runtime.cache_max_bytes()
    monkeypatch.delenv("SYMGRAD_CACHE_MAX_BYTES")
    assert runtime.cache_max_bytes() == 2**30


IN_USE = textwrap.dedent("""
    import gc, sys, numpy as np, symgrad as sg
    x = sg.tensor("x", ("n",))
    build = lambda: sg.value_and_grad(sg.sum(sg.exp(x) * 1.0625), wrt=x)
    data = np.linspace(0.0, 1.0, 4)
    f = build()
    print(repr(float(f(data)[0])), f.cache_state, flush=True)
    sys.stdin.readline()  # the other process evicts everything meanwhile
    value = float(f(data)[0])
    del f
    gc.collect()
    g = build()
    print(repr(value), repr(float(g(data)[0])), g.cache_state, flush=True)
""")


def test_eviction_in_another_process_does_not_break_a_module_in_use(tmp_path):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-c", IN_USE],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    want = float(np.sum(np.exp(np.linspace(0.0, 1.0, 4))) * 1.0625)
    try:
        first, state = proc.stdout.readline().split(" ", 1)
        assert float(first) == pytest.approx(want, rel=1e-14), proc.stderr.read()
        files, _ = runtime.evict(str(tmp_path), max_bytes=0, now=time.time() + 3600)
        assert files >= 3 and runtime.cache_size(str(tmp_path)) == (0, 0)
        out, err = proc.communicate("go\n", timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    value, again, state = out.split(" ", 2)
    assert float(value) == float(again) == pytest.approx(want, rel=1e-14)
    assert state.strip() == "compiled, saved to cache"  # rebuilt from nothing, not from a half-evicted entry


def test_a_shared_numba_cache_dir_is_named_in_a_warning(tmp_path, monkeypatch):
    shared = tmp_path / "numba"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(shared))
    with pytest.warns(RuntimeWarning, match=r"NUMBA_CACHE_DIR is set.*not private to this user"):
        runtime._private_dir(str(tmp_path / "cache"))


def test_cache_info_shows_size_files_and_cap(tmp_path, monkeypatch, capsys):
    from symgrad.cli import main

    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SYMGRAD_CACHE_MAX_BYTES", "123456789")
    _fill(tmp_path, 2)
    size = sum(p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("symgrad_"))
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"size: {size} bytes" in out and "in 2 files" in out
    assert "cap: 123456789 bytes" in out and "SYMGRAD_CACHE_MAX_BYTES" in out
    assert main(["cache", "clear"]) == 0
    assert runtime.cache_size(str(tmp_path)) == (0, 0)
    assert (tmp_path / "__pycache__").stat().st_mode & 0o777 == 0o700


def test_a_kernel_kept_after_its_function_is_dropped_still_works():
    import gc

    x = sg.tensor("x", ("n",))
    f = sg.value_and_grad(sg.sum(sg.exp(x) * 0.8125), wrt=x)
    # (the kernel's module: a numba module's kernel is a module of its own, runtime.load_module)
    kernel, name = f.kernel, f.kernel.py_func.__module__
    del f
    gc.collect()
    # numba imports a dispatcher's module by name to compile or load a new type: it stays while
    # the kernel lives
    assert name in runtime.generated_modules()
    data = np.linspace(0.0, 1.0, 6)
    value, grad = kernel(data)
    assert value == pytest.approx(np.sum(np.exp(data)) * 0.8125, rel=1e-14)
    np.testing.assert_allclose(grad, np.exp(data) * 0.8125, rtol=1e-14)

    @numba.njit
    def user(v):
        return kernel(v)[0]

    # a new layout compiles the kernel again, from its own globals (or loads it from the cache,
    # which must then name the module, not numba's placeholder: a second run of this test)
    assert user(np.linspace(0.0, 1.0, 11)[::2]) == pytest.approx(value, rel=1e-14)
    kernel = user = None  # the closure sees None from here on
    gc.collect()
    assert name not in runtime.generated_modules()


def test_a_kept_kernel_compiles_new_layouts_into_a_cache_a_second_process_loads(tmp_path):
    script = textwrap.dedent("""
        import gc, numba, numpy as np, symgrad as sg
        x = sg.tensor("x", ("n",))
        f = sg.value_and_grad(sg.sum(sg.exp(x) * 0.8125), wrt=x)
        kernel = f.kernel
        del f
        gc.collect()

        @numba.njit
        def user(v):
            return kernel(v)[0]

        print(repr(user(np.linspace(0.0, 1.0, 11)[::2])))
    """)
    env = {**os.environ, "SYMGRAD_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": ROOT}
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    expected = np.sum(np.exp(np.linspace(0.0, 1.0, 11)[::2])) * 0.8125
    assert [float(r.stdout) for r in runs] == pytest.approx([expected, expected], rel=1e-14)


def test_a_cache_directory_deleted_while_running_is_made_again_private(tmp_path, monkeypatch):
    import shutil

    cache = tmp_path / "cache"
    f = _build_in(monkeypatch, cache)
    shutil.rmtree(cache)
    module, existed = runtime.load_module(_text(tmp_path, 0), "numpy")
    assert not existed and module.value == 0 and os.path.dirname(module.__file__) == str(cache)
    assert (cache / "__pycache__").stat().st_mode & 0o777 == 0o700 and f(0.0) == 0.75


def test_a_module_also_loaded_without_an_owner_keeps_working_after_its_function_is_dropped():
    import gc

    x = sg.tensor("x", ("n",))
    f = sg.value_and_grad(sg.sum(sg.exp(x) * 0.6875), wrt=x)
    module, existed = runtime.load_module(f.source, "numba")  # as a Dask task does: no owner
    assert module is f._module and existed
    del f
    gc.collect()
    data = np.linspace(0.0, 1.0, 5)
    value, grad = module.call(data)
    assert value == pytest.approx(np.sum(np.exp(data)) * 0.6875, rel=1e-14)
    np.testing.assert_allclose(grad, np.exp(data) * 0.6875, rtol=1e-14)
    assert module.__name__ in runtime.generated_modules() and hasattr(module, "kernel")
