"""Every example script runs and finishes cleanly."""

import pathlib
import runpy

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, capsys):
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


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
