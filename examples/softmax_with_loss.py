"""Softmax with cross-entropy over a batch of N: the gradient is (softmax(s) - t) / N, even for scores of 1000."""

import numpy as np

import symgrad as sg

N, C = 4, 3
s, t = sg.tensor("s", ("N", C)), sg.tensor("t", ("N", C))
loss = -sg.sum(t * sg.log_softmax(s, axis=1)) / N
vg = sg.value_and_grad(loss, wrt=s, inputs=[s, t])

rng = np.random.default_rng(0)
scores = rng.normal(size=(N, C)) + 1000.0
labels = np.eye(C)[rng.integers(0, C, N)]
value, ds = vg(scores, labels)
e = np.exp(scores - scores.max(axis=1, keepdims=True))
expected = (e / e.sum(axis=1, keepdims=True) - labels) / N
print(f"loss {value:.6f}")
print("gradient:\n", ds)
print("max difference from (softmax(s) - t)/N:", np.max(np.abs(ds - expected)))
assert np.allclose(ds, expected, atol=1e-12)
