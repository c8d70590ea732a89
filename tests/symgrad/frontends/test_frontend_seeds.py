"""Seed examples through the parser and through tracing: XOR and softmax-with-loss with integer labels."""

import numpy as np
import pytest

import symgrad as sg

X_XOR = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
T_XOR = np.array([0, 1, 1, 0], dtype=float)


def _train_xor(vg_call, params, steps=3000, lr=2.0):
    for _ in range(steps):
        _, grads = vg_call(params)
        params = [p - lr * g for p, g in zip(params, grads)]
    return params


def _forward(W1, b1, W2, b2, X):
    h = 1 / (1 + np.exp(-(X @ W1 + b1)))
    return 1 / (1 + np.exp(-(h @ W2 + b2)))


def _init():
    rng = np.random.default_rng(1)
    return [rng.normal(size=(2, 2)), np.zeros(2), rng.normal(size=2), 0.0]


def test_xor_through_the_parser_learns_xor():
    shapes = {"W1": (2, 2), "b1": (2,), "W2": (2,), "x": ("n", 2), "t": ("n",)}
    loss = sg.parse("mean((sigmoid(sigmoid(x @ W1 + b1) @ W2 + b2) - t)**2)", shapes=shapes)
    W1, b1, W2, x, t = (sg.tensor(n, s) for n, s in shapes.items())
    b2 = sg.scalar("b2")
    vg = sg.value_and_grad(loss, wrt=[W1, b1, W2, b2], inputs=[W1, b1, W2, b2, x, t])
    params = _train_xor(lambda p: vg(*p, X_XOR, T_XOR), _init())
    out = _forward(*params, X_XOR)
    assert np.all((out > 0.5) == (T_XOR > 0.5))


def test_xor_through_tracing_learns_xor():
    @sg.value_and_grad(argnums=(0, 1, 2, 3))
    def loss(W1, b1, W2, b2, X, t):
        h = 1 / (1 + np.exp(-(X @ W1 + b1)))
        out = 1 / (1 + np.exp(-(h @ W2 + b2)))
        return np.mean((out - t) ** 2)

    params = _train_xor(lambda p: loss(*p, X_XOR, T_XOR), _init())
    out = _forward(*params, X_XOR)
    assert np.all((out > 0.5) == (T_XOR > 0.5))


@pytest.mark.parametrize("labels_kind", ["one_hot", "integer"])
def test_softmax_with_loss_through_tracing(labels_kind):
    def loss(s, t):
        m = np.max(s, axis=1, keepdims=True)
        logp = s - m - np.log(np.sum(np.exp(s - m), axis=1, keepdims=True))
        if labels_kind == "one_hot":
            return -np.sum(t * logp) / s.shape[0]
        return -np.mean(logp[np.arange(s.shape[0]), t])

    vg = sg.value_and_grad(loss)
    rng = np.random.default_rng(3)
    N, C = 5, 4
    s = rng.normal(size=(N, C)) * 3
    labels = rng.integers(0, C, N)
    t = np.eye(C)[labels] if labels_kind == "one_hot" else labels
    value, ds = vg(s, t)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    assert value == pytest.approx(-np.mean(np.log(p[np.arange(N), labels])), rel=1e-13)
    np.testing.assert_allclose(ds, (p - np.eye(C)[labels]) / N, rtol=1e-12, atol=1e-16)
