"""Programs and truths tests share: central differences (any test here) and an RNN written as a
Python loop and with sg.scan (test_loops.py, test_loop_lengths.py); pytest puts this folder on
sys.path when it imports them."""

import numpy as np

import symgrad as sg


def central(f, x, h=1e-6):
    """d f / d x by central differences (x an array or a float), f returning a float."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def rnn_numpy(W, U, h0, xs):
    h, total = h0, 0.0
    for x in xs:
        h = np.tanh(W @ h + U @ x)
        total += np.sum(h**2)
    return np.sum(h) + total


def rnn_scan(W, U, h0, xs):
    def step(h, x):
        h = np.tanh(W @ h + U @ x)
        return h, np.sum(h**2)

    h, ys = sg.scan(step, h0, xs)
    return np.sum(h) + np.sum(ys)
