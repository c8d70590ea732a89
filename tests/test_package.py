"""The package's namespace: installing symgrad adds one import name, and the compiler is symgrad.codegen."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_installed_package_is_inside_symgrads_namespace():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "symgrad" or p.startswith("symgrad.") for p in config["packages"])
    assert config["package-dir"] == {"symgrad.codegen": "codegen"}


def test_a_codegen_module_in_the_working_directory_does_not_matter(tmp_path):
    (tmp_path / "codegen.py").write_text("raise SystemExit('imported the wrong codegen')\n")
    code = (
        "import sys, symgrad as sg\n"
        "x, y = sg.scalars('x y')\n"
        "value, (gx, gy) = sg.value_and_grad(x * y + sg.sin(x), wrt=[x, y])(0.5, 2.0)\n"
        "assert gy == 0.5, gy\n"
        "import symgrad.codegen\n"
        "assert 'codegen' not in sys.modules\n"
        "print(symgrad.codegen.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SYMGRAD_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()).parent.name == "codegen"


def test_generated_modules_import_the_compiler_by_symgrads_name():
    import symgrad as sg

    x = sg.scalar("x")
    source = sg.compile(sg.sin(x) * 2.0).source
    imports = [line for line in source.splitlines() if line.startswith("import ")]
    assert "import symgrad.codegen.runtime as _cv" in imports
    assert not [line for line in imports if line.split()[1].startswith("codegen")]
