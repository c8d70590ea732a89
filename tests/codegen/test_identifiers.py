"""User text in generated source: names, dims and titles reach a module only as checked
identifiers, escaped comments and ``repr`` literals (issue #17, items 1, 2, 6, 10).

The truth is numpy on the same arrays, and whether a payload file appeared on disk."""

import ast
import io
import keyword
import os
import subprocess
import sys
import tokenize
import unicodedata

import numpy as np
import pytest
import sympy

import symgrad as sg
from symgrad.codegen import schedule
from symgrad.errors import InputError, ShapeError, SymgradError, UnsupportedError

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

BACKENDS = ["numpy", "numba"]
PAYLOAD = "__import__('os').system('touch canary')"
# every character Python's str.splitlines or its tokenizer could take for the end of a line
LINE_BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
# the names the audit used, the generated module's own words, Python's, and look-alikes of them
INTERNAL = [
    "kernel_entry", "kernel", "call", "more", "named", "out", "out0", "np", "numba", "math",
    "dim_n", "value", "d_x", "sin_x", "const", "t", "i", "j", "k", "range", "float", "type", "len",
    "min", "max", "print", "None_", "_rt", "_cv", "v_dim_n", "kernel_entry_2", "match", "case",
]  # fmt: skip


def _names_in(source):
    """Every NAME token of ``source`` (identifiers and keywords)."""
    return [
        t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.NAME
    ]


# ---------------------------------------------------------------- item 1: titles and comments


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("brk", LINE_BREAKS, ids=[repr(b) for b in LINE_BREAKS])
def test_compile_name_with_a_line_break_stays_in_its_comment(backend, brk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = sg.tensor("x", (3,))
    f = sg.compile(sg.sum(x * 2), name=f"f{brk}{PAYLOAD}{brk}#", backend=backend)
    assert f(np.arange(3.0)) == 6.0
    assert not (tmp_path / "canary").exists()
    # the title is one comment line, whatever line break it held
    plain = sg.compile(sg.sum(x * 2), name="f", backend=backend).source
    assert len(f.source.splitlines()) == len(plain.splitlines())
    assert not any(line.lstrip().startswith("__import__") for line in f.source.splitlines())
    tree = ast.parse(f.source)
    assert not any(isinstance(n, ast.Name) and n.id == "__import__" for n in ast.walk(tree))


def test_title_cannot_declare_the_source_encoding():
    # PEP 263: "coding=..." in a comment on line 1 or 2 changes how the file is decoded
    x = sg.scalar("x")
    f = sg.compile(x * 2, name="coding=utf-7 +AAo-", backend="numpy")
    cookie = r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)"
    import re

    assert not any(re.match(cookie, line) for line in f.source.splitlines()[:2])
    assert f(3.0) == 6.0


def test_comment_text_never_breaks_a_line():
    for brk in LINE_BREAKS + ["\x00", "\x1f", "\x7f"]:
        text = schedule.comment_text(f"a{brk}b")
        assert len(text.splitlines()) == 1 and text.isprintable(), repr(brk)


def test_literal_ignores_a_str_subclass_repr():
    class Sly(str):
        def __repr__(self):
            return "__import__('os')"

    assert schedule.literal(Sly("x")) == "'x'"


@pytest.mark.parametrize("name", [f"f\n{PAYLOAD}\n#", "_rt.nonexistent _cv.os"])
def test_saved_module_keeps_the_title_as_text(name, tmp_path, monkeypatch):
    # save() rewrites _rt.<name> and _cv.<name> in code only, never in the title's text
    monkeypatch.chdir(tmp_path)
    x = sg.tensor("x", (3,))
    f = sg.compile(sg.sum(x * 2), name=name)
    text = open(f.save(tmp_path / "m.py")).read()
    assert not any(line.startswith("__import__") for line in text.splitlines())
    assert schedule.literal(f"compile({name})") in text
    run = subprocess.run(
        [sys.executable, "-c", "import m, numpy as np; print(m.call(np.arange(3.0)))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) == 6.0 and not (tmp_path / "canary").exists()


# ---------------------------------------------------------------- item 2: dims of any type


@pytest.mark.parametrize("backend", BACKENDS)
def test_sympy_symbol_dimension_must_be_an_identifier(backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = sympy.Symbol("m[__import__('os').system('touch canary')]")
    m = sympy.Symbol("m")
    for dim in (bad, bad + 1, 2 * bad * m):
        with pytest.raises(ShapeError, match=r"tensor 'X': dimension name must be an identifier string"):
            sg.tensor("X", ("m", dim))
        with pytest.raises(ShapeError, match=r"dimension name must be an identifier string"):
            sg.parse("sum(X)", shapes={"X": ("m", dim)})
    with pytest.raises(ShapeError, match=r"tensor 'X': dimension 'f\(m\)' contains f; a dimension is an int"):
        sg.tensor("X", (sympy.Function("f")(m),))
    with pytest.raises(ShapeError, match=r"dimension '2\.5\*m' contains Float"):
        sg.tensor("X", (2.5 * m,))
    with pytest.raises(ShapeError, match=r"dimension name may not start with '__'"):
        sg.tensor("X", (sympy.Symbol("__n"),))
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sympy_symbol_dimension_is_the_named_dimension(backend):
    # a plain sympy.Symbol("m") is the dim "m" (one symbol, one size), in a shape or through parse
    X = sg.tensor("X", (sympy.Symbol("m"),))
    Y = sg.tensor("Y", ("m",))
    assert X.shape == Y.shape
    f = sg.compile(sg.sum(X * Y), backend=backend)
    assert f(np.arange(3.0), np.ones(3)) == 3.0
    with pytest.raises(InputError, match=r"argument 'Y': dimension 0 is 4, but dimension 'm' is 3"):
        f(np.arange(3.0), np.ones(4))
    e = sg.parse("sum(Z)", shapes={"Z": (sympy.Symbol("k"),)})
    assert sg.compile(e, backend=backend)(np.arange(4.0)) == 6.0


# ---------------------------------------------------------------- item 6: NFKC


@pytest.mark.parametrize("backend", BACKENDS)
def test_fullwidth_dim_is_the_same_dim(backend):
    X, Y = sg.tensor("X", ("n",)), sg.tensor("Y", ("ｎ",))
    assert X.shape == Y.shape
    f = sg.compile(sg.sum(X) + sg.sum(Y), backend=backend)
    assert f(np.arange(2.0), np.ones(2)) == 3.0
    # a different length is refused before the kernel runs (it read past the array before)
    with pytest.raises(InputError, match=r"argument 'Y': dimension 0 is 10000000, but dimension 'n' is 2"):
        f(np.arange(2.0), np.ones(10**7))


@pytest.mark.parametrize("backend", BACKENDS)
def test_symbol_that_normalises_to_a_dim_variable_stays_apart(backend):
    X, s = sg.tensor("X", ("n",)), sg.scalar("ｄim_n")
    assert s.name == "dim_n"
    f = sg.compile(sg.sum(X) * s, inputs=[X, s], backend=backend)
    assert f(np.arange(5.0), 3.0) == 30.0
    assert f(X=np.arange(5.0), dim_n=3.0) == 30.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_ascii_names_compile_to_ascii_identifiers(backend):
    theta, lam = sg.scalar("θ"), sg.scalar("λ")
    X = sg.tensor("X", ("θ",))
    loss = sg.sum(X * theta) + lam * theta
    vg = sg.value_and_grad(loss, wrt=[theta, lam], inputs=[X, theta, lam], backend=backend)
    value, (d_theta, d_lam) = vg(np.arange(4.0), 2.0, 5.0)
    assert (value, d_theta, d_lam) == (6.0 * 2 + 10.0, 6.0 + 5.0, 2.0)
    assert all(name.isascii() for name in _names_in(vg.source))
    # keyword calls take the user's names, also the fullwidth spelling of an ASCII one
    assert vg(**{"X": np.arange(4.0), "θ": 2.0, "λ": 5.0})[0] == 22.0
    x = sg.scalar("ｘ")
    assert x is sg.scalar("x")
    assert sg.compile(x * 2, backend=backend)(**{"ｘ": 2.0}) == 4.0


def test_ascii_name_is_injective_and_ascii():
    names = ["n", "ｎ", "θ", "_3b8_", "x_θ", "xθ", "x__θ", "θ_", "_θ", "θθ", "a_5f_", "é_ue9_", "éé"]
    names = {unicodedata.normalize("NFKC", n) for n in names}
    out = {schedule.ascii_name(n) for n in names}
    assert len(out) == len(names)
    assert all(o.isascii() and o.isidentifier() for o in out)


# ---------------------------------------------------------------- item 10: internal names


@pytest.mark.parametrize("backend", BACKENDS)
def test_internal_and_python_names_are_plain_symbol_names(backend):
    names = INTERNAL + ["True_", "print_2"]
    symbols = [sg.scalar(n) for n in names]
    X = sg.tensor("X", ("n",))
    weights = np.arange(1.0, len(names) + 1)
    loss = sg.sum(X * X) * symbols[0]
    for w, s in zip(weights[1:], symbols[1:]):
        loss = loss + float(w) * sg.sin(s)
    vg = sg.value_and_grad(loss, wrt=symbols, inputs=[X] + symbols, backend=backend)
    values = np.linspace(0.1, 2.0, len(names))
    x = np.arange(3.0)
    value, grads = vg(x, *values)
    expected = np.sum(x * x) * values[0] + np.sum(weights[1:] * np.sin(values[1:]))
    assert np.isclose(value, expected, rtol=1e-13)
    assert np.isclose(grads[0], np.sum(x * x)) and np.allclose(grads[1:], weights[1:] * np.cos(values[1:]))
    by_name = vg(X=x, **dict(zip(names, values)))
    assert by_name[0] == value


# which generated names are written by the module's frame (not handed out by a Namer): all must
# be Python's, underscored, dim_*, or in schedule.FRAME_NAMES, or a user's name could take one
def _graphs():
    X, w, t = sg.tensor("X", ("n", "d")), sg.tensor("w", ("d",)), sg.tensor("t", ("n",))
    idx = sg.tensor("idx", ("m",), dtype="int64")
    s = sg.scalar("s")
    z = X @ w - t
    chain = s
    for _ in range(80):
        chain = sg.sin(chain) * 0.5 + chain
    yield sg.sum(z * z) + sg.sum(sg.where(z > 0, sg.log(sg.exp(z) + 1.0), -z)), [X, w, t]
    yield sg.sum(sg.tanh(X[1:, :] * 2.0) + sg.exp(X[:-1, :])) + sg.sum(w[idx]), [X, w, idx]
    yield chain + sg.where(s > 0, sg.log(s), -s), [s]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_frame_name_is_outside_the_namers_namespace(backend, monkeypatch):
    for loss, wrt in _graphs():
        handed = set()
        claim = schedule.Namer.claim

        def recording(self, base, _claim=claim):
            name = _claim(self, base)
            handed.add(name)
            return name

        monkeypatch.setattr(schedule.Namer, "claim", recording)
        floats = [w for w in wrt if w.dtype == "float64"]
        vg = sg.value_and_grad(loss, wrt=floats, inputs=wrt, backend=backend)
        monkeypatch.undo()
        frame = set()
        for node in ast.walk(ast.parse(vg.source)):
            if isinstance(node, ast.Name):
                frame.add(node.id)
            elif isinstance(node, ast.arg):
                frame.add(node.arg)
            elif isinstance(node, ast.FunctionDef):
                frame.add(node.name)
        frame -= handed
        stray = {
            n
            for n in frame
            if not (n.startswith(("_", "dim_")) or n in schedule.PYTHON_NAMES or n in schedule.FRAME_NAMES)
        }
        assert stray == set(), vg.source
        assert not handed & (schedule.FRAME_NAMES | schedule.PYTHON_NAMES)
        assert not any(n.startswith(("_", "dim_")) for n in handed)


# ---------------------------------------------------------------- fuzzing the names


def _name_text():
    letters = st.characters(categories=("Lu", "Ll", "Lo", "Nd", "Pc", "Mn", "Nl"), max_codepoint=0x2FFFF)
    special = INTERNAL + [
        "ｎ",
        "n",
        "ｄim_n",
        "ｋernel_entry",
        "ｍore",
        "θ",
        "ℌ",
        "ﬁ",
        "_",
        "x_",
        "__x",
        "if",
    ]
    special += keyword.kwlist + ["ｎｐ", "ｏut", "ℕ", "Ⅸ", "º"]
    return st.one_of(st.sampled_from(special), st.text(letters, min_size=1, max_size=5))


def _same(a, b):
    return unicodedata.normalize("NFKC", a) == unicodedata.normalize("NFKC", b)


def _build(names, dims, backend):
    """sum(A * s) + 2 sum(B): A over dims[0], B over dims[1]."""
    A = sg.tensor(names[0], (dims[0],))
    s = sg.scalar(names[1])
    B = sg.tensor(names[2], (dims[1], 2))
    return sg.compile(sg.sum(A * s) + 2.0 * sg.sum(B), inputs=[A, s, B], backend=backend)


def _fuzz(names, dims, backend):
    try:
        f = _build(names, dims, backend)
    except SymgradError:
        return  # a refused name (not an identifier, __, two symbols of one name) is fine
    sizes = (3, 3) if _same(dims[0], dims[1]) else (3, 4)
    a, b = np.arange(1.0, sizes[0] + 1), np.full((sizes[1], 2), 0.5)
    expected = np.sum(a * 1.5) + 2.0 * np.sum(b)
    assert f(a, 1.5, b) == expected
    assert all(name.isascii() for name in _names_in(f.source))
    assert f(**{names[0]: a, names[1]: 1.5, names[2]: b}) == expected
    b = np.full((sizes[1] + 1, 2), 0.5)
    if _same(dims[0], dims[1]):
        with pytest.raises(InputError, match="dimension 0 is 4, but dimension"):
            f(a, 1.5, b)
    else:
        assert f(a, 1.5, b) == np.sum(a * 1.5) + 2.0 * np.sum(b)


def _fuzz_settings(examples):
    return settings(
        max_examples=examples, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )


@_fuzz_settings(60)
@given(st.lists(_name_text(), min_size=3, max_size=3), st.lists(_name_text(), min_size=2, max_size=2))
def test_random_names_compile_right_or_are_refused_numpy(names, dims):
    _fuzz(names, dims, "numpy")


@_fuzz_settings(20)
@given(st.lists(_name_text(), min_size=3, max_size=3), st.lists(_name_text(), min_size=2, max_size=2))
def test_random_names_compile_right_or_are_refused_numba(names, dims):
    _fuzz(names, dims, "numba")


def test_refused_names_say_why():
    with pytest.raises(
        UnsupportedError, match=r"tensor: a symbol name must be an identifier string, got 'a b'"
    ):
        sg.scalar("a b")
    with pytest.raises(UnsupportedError, match=r"tensor: a symbol name may not start with '__': '__x'"):
        sg.scalar("__x")
    with pytest.raises(ShapeError, match=r"tensor 'X': dimension name may not start with '__': '__n'"):
        sg.tensor("X", ("__n",))
