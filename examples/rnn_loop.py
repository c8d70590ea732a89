"""A tanh RNN (hidden size 8) over a sequence, written as the plain Python loop anyone writes,
with its loss gradient from symgrad (the traced function's value_and_grad).

    python examples/rnn_loop.py

The loss is the squared error of the RNN's output at every step. The gradient is checked
against central differences; a few gradient-descent steps lower the loss. One of the
programs of `symgrad bench --suite build` (rnn/T).
"""

import os
import time

import numpy as np

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
T, HIDDEN, D = (5 if QUICK else 20), 8, 4


def rnn_loss(Wx, Wh, b, w_out, xs, ys):
    h = np.zeros(Wh.shape[0])
    loss = 0.0
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        loss = loss + (h @ w_out - ys[t]) ** 2
    return loss


rng = np.random.default_rng(0)
params = [
    rng.normal(size=(D, HIDDEN)) * 0.5,
    rng.normal(size=(HIDDEN, HIDDEN)) * 0.3,
    rng.normal(size=HIDDEN) * 0.1,
    rng.normal(size=HIDDEN) * 0.5,
]
xs, ys = rng.normal(size=(T, D)), np.sin(np.arange(T) / 2.0)

vg = sg.value_and_grad(rnn_loss, argnums=(0, 1, 2, 3))
start = time.perf_counter()
value, grads = vg(*params, xs, ys)
print(
    f"T = {T}: built and called in {time.perf_counter() - start:.2f} s, {vg.source.count(chr(10))} generated lines"
)
assert np.isclose(value, rnn_loss(*params, xs, ys), rtol=1e-12)

# the gradient against central differences of the same Python function, one entry per parameter
h = 1e-6
for k, p in enumerate(params):
    i = np.unravel_index(np.argmax(np.abs(grads[k])), p.shape)
    up, down = [q.copy() for q in params], [q.copy() for q in params]
    up[k][i] += h
    down[k][i] -= h
    numeric = (rnn_loss(*up, xs, ys) - rnn_loss(*down, xs, ys)) / (2 * h)
    assert np.isclose(grads[k][i], numeric, rtol=1e-6, atol=1e-8), (k, grads[k][i], numeric)
print("gradient agrees with central differences")

initial = value

for step in range(20 if QUICK else 200):
    value, grads = vg(*params, xs, ys)
    params = [p - 0.02 * g for p, g in zip(params, grads)]
    if step % (5 if QUICK else 50) == 0:
        print(f"step {step:3d}: loss {value:.5f}")
final, _ = vg(*params, xs, ys)
print(f"final loss {final:.5f}")
assert final < initial
