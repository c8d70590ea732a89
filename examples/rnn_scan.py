"""The tanh RNN of examples/rnn_loop.py written with ``sg.scan``: the loop stays one loop in the
generated code, so the build does not grow with the sequence length and one compile serves
every length.

    python examples/rnn_scan.py

The loss is the squared error of the RNN's output at every step. The values and gradients are
checked against the plain Python loop (rnn_loop.py's function, run on numpy), and against
central differences; a few gradient-descent steps lower the loss.
"""

import os
import time

import numpy as np

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
T, HIDDEN, D = (5 if QUICK else 50), 8, 4


def rnn_loss(Wx, Wh, b, w_out, xs, ys):
    def step(h, x_y):
        x, y = x_y
        h = np.tanh(x @ Wx + h @ Wh + b)
        return h, (h @ w_out - y) ** 2

    _, errors = sg.scan(step, np.zeros(HIDDEN), (xs, ys))
    return np.sum(errors)


def rnn_loss_loop(Wx, Wh, b, w_out, xs, ys):
    """The same loss as a plain Python loop over numpy (rnn_loop.py's)."""
    h, loss = np.zeros(Wh.shape[0]), 0.0
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
lines = vg.source.count("\n")
print(f"T = {T}: built and called in {time.perf_counter() - start:.2f} s, {lines} generated lines")
assert np.isclose(value, rnn_loss_loop(*params, xs, ys), rtol=1e-12)

# a longer sequence runs on the same compiled function
long_xs, long_ys = rng.normal(size=(4 * T, D)), np.sin(np.arange(4 * T) / 2.0)
long_value, _ = vg(*params, long_xs, long_ys)
assert np.isclose(long_value, rnn_loss_loop(*params, long_xs, long_ys), rtol=1e-12)
assert vg.compile_count == 1 and vg.source.count("\n") == lines
print(f"T = {4 * T}: same compiled function ({vg.compile_count} compile)")

h = 1e-6
for k, p in enumerate(params):
    i = np.unravel_index(np.argmax(np.abs(grads[k])), p.shape)
    up, down = [q.copy() for q in params], [q.copy() for q in params]
    up[k][i] += h
    down[k][i] -= h
    numeric = (rnn_loss_loop(*up, xs, ys) - rnn_loss_loop(*down, xs, ys)) / (2 * h)
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
