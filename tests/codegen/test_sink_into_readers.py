"""A fused loop computes the backward's elementwise values from what the forward stored.

The adjoint of ``tanh`` multiplies by ``1 - tanh(x)^2``. Fusion would compute that in the
forward loop, next to ``tanh(x)``, and store it as a second array of the layer's shape for the
backward loop that multiplies it by the incoming gradient. ``fusion.Plan._sink_into_readers``
moves such members into the loop reading them when what they read is stored anyway (here
``tanh(x)``, the next product's operand): each value is still computed once, and the array
written and read again is gone. Values are checked against the gradients written by hand in
numpy and central differences.
"""

import re

import numpy as np
import pytest

import symgrad as sg


def _kernel(source):
    return source.split("# the entry point of the machine code", 1)[0]


def _layer(act):
    X, W1, b1, W2 = (
        sg.tensor("X", ("n", "d")),
        sg.tensor("W1", ("d", "h")),
        sg.tensor("b1", ("h",)),
        sg.tensor("W2", ("h", "k")),
    )
    Y = sg.tensor("Y", ("n", "k"))
    hidden = sg.tanh(X @ W1 + b1) if act == "tanh" else sg.sigmoid(X @ W1 + b1)
    loss = sg.sum((hidden @ W2 - Y) ** 2)
    return loss, [W1, b1, W2], [W1, b1, W2, X, Y]


def _by_hand(act, W1, b1, W2, X, Y):
    z = X @ W1 + b1
    a = np.tanh(z) if act == "tanh" else 1 / (1 + np.exp(-z))
    r = a @ W2 - Y
    g_a = 2 * r @ W2.T
    g_z = g_a * (1 - a**2) if act == "tanh" else g_a * a * (1 - a)
    return np.sum(r**2), (X.T @ g_z, g_z.sum(axis=0), a.T @ (2 * r))


# sigmoid's rule reads the pre-activation x (s(x) s(-x)), which only the forward loop has: moving
# the derivative would store x instead of it, so it stays (three arrays of the layer's shape)
@pytest.mark.parametrize("act, arrays", [("tanh", 2), ("sigmoid", 3)])
def test_the_layer_stores_its_activations_and_no_array_of_their_derivative(act, arrays):
    loss, wrt, inputs = _layer(act)
    vg = sg.value_and_grad(loss, wrt=wrt, inputs=inputs)
    rng = np.random.default_rng(0)
    n, d, h, k = 300, 5, 7, 3
    args = [rng.normal(size=(d, h)) * 0.5, rng.normal(size=h) * 0.1, rng.normal(size=(h, k)) * 0.5]
    args += [rng.normal(size=(n, d)), rng.normal(size=(n, k))]
    value, grads = vg(*args)
    kernel = _kernel(vg.source)
    # of the layer's shape: the activations (the next product's operand) and the gradient of
    # the pre-activations (the operand of the products giving d_W1), nothing more for tanh
    assert len(re.findall(r"_rt\.empty\(\(dim_n, dim_h\)", kernel)) == arrays
    want_value, want = _by_hand(act, *args)
    assert np.isclose(value, want_value, rtol=1e-12)
    for got, expected in zip(grads, want):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # and against central differences, a few entries of W1
    f = sg.compile(loss, inputs)
    step = 1e-6
    for index in [(0, 0), (2, 3), (4, 6)]:
        up, down = [a.copy() for a in args], [a.copy() for a in args]
        up[0][index] += step
        down[0][index] -= step
        numeric = (f(*up) - f(*down)) / (2 * step)
        assert np.isclose(grads[0][index], numeric, rtol=1e-6, atol=1e-8)
