"""The README's code runs: every ```python block, in order, in one namespace."""

import pathlib
import re

import pytest

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)

# what a block takes as given (the README elides how the user made it)
SETUP = {
    "sympy_expr": """
import sympy
sympy_expr = sympy.Symbol("x") * sympy.Symbol("y") + sympy.sin(sympy.Symbol("x"))
rng = np.random.default_rng(0)
W0, b0, X0, t0 = rng.normal(size=3), 0.1, rng.normal(size=(8, 3)), (rng.random(8) > 0.5) * 1.0
""",
    "vg.scipy(": """
import scipy.optimize
rng = np.random.default_rng(0)
W, b = sg.tensor("W", (3,)), sg.scalar("b")
X, t = sg.tensor("X", ("m", 3)), sg.tensor("t", ("m",))
loss = sg.mean((X @ W + b - t) ** 2) + 1e-3 * sg.sum(W * W)
W0, b0, X0, t0 = np.zeros(3), 0.0, rng.normal(size=(20, 3)), rng.normal(size=20)
""",
}


def test_readme_has_the_tour():
    assert len(BLOCKS) >= 5


def test_readme_python_blocks_run_in_order():
    namespace = {"__name__": "__main__"}  # as a script pasted from the README runs
    exec("import numpy as np\nimport symgrad as sg\n", namespace)
    for block in BLOCKS:
        for marker, setup in SETUP.items():
            if marker in block:
                exec(setup, namespace)
        try:
            exec(compile(block, "README.md", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            pytest.fail(f"README block failed with {type(exc).__name__}: {exc}\n{block}")
    # the tour's claims hold
    assert namespace["vg"] is not None
