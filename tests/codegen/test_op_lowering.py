"""An op's lowering comes from its record: a template, a function, or one backend's own spelling."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.errors import UnsupportedError
from symgrad.graph import as_shape
from symgrad.ops.registry import OPS, make, register


@pytest.fixture
def temporary_op():
    made = []

    def reg(name, **traits):
        register(name, infer=lambda inputs, attrs: (inputs[0].shape, inputs[0].dtype), **traits)
        made.append(name)
        return lambda x, **attrs: make(name, [x], **attrs)

    yield reg
    for name in made:
        del OPS[name]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_template_with_attributes(temporary_op, backend):
    flip = temporary_op("t_flip_rows", lower="np.ascontiguousarray({0}[::{step}])")
    x = sg.tensor("x", (5,))
    out = sg.compile(flip(x, step=-1), backend=backend)(np.arange(5.0))
    np.testing.assert_array_equal(np.asarray(out).ravel(), np.arange(5.0)[::-1])


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_function_and_backend_override(temporary_op, backend):
    seen = []

    def shared(node, args):
        seen.append(node.inputs[0].shape)
        return f"np.cumsum({args[0]})"

    op = temporary_op("t_cumsum", lower=shared, lowerings={"numpy": "np.cumsum({0}) + 0.0"})
    x = sg.tensor("x", (4,))
    f = sg.compile(op(x), backend=backend)
    np.testing.assert_allclose(np.asarray(f(np.ones(4))).ravel(), [1, 2, 3, 4])
    assert ("np.cumsum(x) + 0.0" in f.source) == (backend == "numpy")
    assert seen == ([as_shape((4,))] if backend == "numba" else [])


def test_no_lowering_is_a_clear_error(temporary_op):
    op = temporary_op("t_nothing")
    with pytest.raises(UnsupportedError, match="backend cannot lower op 't_nothing'"):
        sg.compile(op(sg.tensor("x", (3,))))
