"""Softmax with cross-entropy over a batch of N: the gradient with respect to the scores is
(softmax(s) - t) / N, with one-hot labels t or with integer labels, and it stays exact for
scores of 1000, where exp overflows.

One-hot:  loss = -sum(t * log_softmax(s)) / N
Integer:  loss = -mean(log_softmax(s)[arange(N), labels])   (labels are an int64 input;
          integer inputs never get a gradient)
"""

import numpy as np

import symgrad as sg

C = 3
s = sg.tensor("s", ("N", C))
t = sg.tensor("t", ("N", C))  # one-hot rows
labels = sg.tensor("labels", ("N",), dtype="int64")  # class numbers 0..C-1
n = s.shape[0]
logp = sg.log_softmax(s, axis=1)  # s - logsumexp(s), shifted by the row max

one_hot_loss = -sg.sum(t * logp) / n
integer_loss = -sg.mean(logp[sg.arange(n), labels])
vg_one_hot = sg.value_and_grad(one_hot_loss, wrt=s, inputs=[s, t])
vg_integer = sg.value_and_grad(integer_loss, wrt=s, inputs=[s, labels])


def softmax_by_hand(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


rng = np.random.default_rng(0)
for N, shift in [(4, 0.0), (4, 1000.0), (64, -1000.0)]:
    scores = rng.normal(size=(N, C)) + shift
    classes = rng.integers(0, C, N)
    one_hot = np.eye(C)[classes]
    expected = (softmax_by_hand(scores) - one_hot) / N
    loss_a, ds_a = vg_one_hot(scores, one_hot)
    loss_b, ds_b = vg_integer(scores, classes)
    print(
        f"N={N:3d}, scores around {shift:+7.0f}: loss {loss_a:.6f} (one-hot) {loss_b:.6f} (integer); "
        f"max |ds - (softmax(s) - t)/N| = {max(np.abs(ds_a - expected).max(), np.abs(ds_b - expected).max()):.1e}"
    )
    np.testing.assert_allclose(ds_a, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ds_b, expected, rtol=1e-12, atol=1e-15)
    assert np.isfinite(loss_a) and abs(loss_a - loss_b) < 1e-12
    if N == 4 and shift == 0.0:
        print("  gradient:\n", np.round(ds_a, 4))

with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
print("naive exp(s) / sum(exp(s)) at scores of -1000:", naive[0], "- symgrad shifts by the row max first")
print()
print(vg_integer)
