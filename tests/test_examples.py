"""Every example script runs (with the small sizes of SYMGRAD_EXAMPLE_QUICK=1) and its own
asserts hold; each checks its claim against numpy written by hand, SymPy or central differences."""

import importlib.util
import pathlib
import re
import runpy

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("[!_]*.py"))
SEED_EXAMPLES = {
    "chain_rule",
    "affine",
    "matmul_backward",
    "repeat_and_sum",
    "softmax_with_loss",
    "gradient_descent",
    "xor",
    "digits_mlp",
    "numerical_vs_symbolic",
}
NEEDS = {"digits_mlp": "sklearn"}  # the `examples` extra; matplotlib stays optional
PLOTS = {"digits_mlp": "digits_mlp.png", "numerical_vs_symbolic": "numerical_vs_symbolic.png"}


def test_every_seed_example_exists():
    assert SEED_EXAMPLES <= {p.stem for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, capsys, monkeypatch, tmp_path):
    if path.stem in NEEDS:
        pytest.importorskip(NEEDS[path.stem])
    monkeypatch.setenv("SYMGRAD_EXAMPLE_QUICK", "1")
    monkeypatch.setenv("SYMGRAD_EXAMPLE_OUTDIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip()
    if path.stem in PLOTS and importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / PLOTS[path.stem]).stat().st_size > 1000


def test_demo_prints_source_and_timings():
    from symgrad.cli import main
    import io
    import contextlib

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["demo"]) == 0
    text = buffer.getvalue()
    assert "def kernel(x, y):" in text
    assert "np.cos(x)" in text
    assert "numpy by hand" in text and "build" in text


def test_demo_times_numbas_machine_code_after_a_background_build(monkeypatch):
    """With the default background build, the demo's first results come from the numpy twin;
    it waits for numba before timing calls, and says when numba's machine code was ready."""
    from symgrad.cli import main
    import io
    import contextlib

    monkeypatch.setenv("SYMGRAD_COMPILE", "background")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["demo"]) == 0
    text = buffer.getvalue()
    ready = re.findall(r"build \d\.\d+ s, numba's machine code (at once|\d+\.\d+ s after it began)", text)
    assert len(ready) == 2, text
