"""Repeat and Sum are each other's backward pass.

Repeating a vector N times (broadcasting, as when a bias b is added to every
row of x @ W) sends back the SUM of the N upstream gradients; summing N rows
sends back the upstream gradient REPEATED N times. symgrad gets both from the
broadcasting rule alone: adjoints are summed over the axes a value was
broadcast along.
"""

import numpy as np

import symgrad as sg

D = 3
rng = np.random.default_rng(0)
N = 4

# Repeat: b (D,) is repeated over the N rows of Z (N, D); the gradient of b sums dy over rows
b, Z, dy = sg.tensor("b", (D,)), sg.tensor("Z", ("N", D)), sg.tensor("dy", ("N", D))
db = sg.vjp(Z + b, b, dy)
repeat_backward = sg.compile(db, inputs=[b, Z, dy], name="repeat_backward")
print("y = Z + b  (b repeated over N rows)   db =", db)
bv, Zv, dyv = rng.normal(size=D), rng.normal(size=(N, D)), rng.normal(size=(N, D))
db_value = repeat_backward(bv, Zv, dyv)
print("  dy =\n", np.round(dyv, 3))
print("  db =", np.round(db_value, 3), "= dy summed over the repeated axis")
np.testing.assert_allclose(db_value, dyv.sum(axis=0), rtol=1e-14, atol=1e-14)

# the same through an explicit repeat (broadcast_to) node
db_explicit = sg.vjp(sg.broadcast_to(b, ("N", D)), b, dy)
np.testing.assert_allclose(sg.compile(db_explicit, inputs=[b, dy])(bv, dyv), dyv.sum(axis=0), atol=1e-14)

# Sum: s = sum of the N rows of X; the gradient of X repeats ds on every row
X, ds = sg.tensor("X", ("N", D)), sg.tensor("ds", (D,))
dX = sg.vjp(sg.sum(X, axis=0), X, ds)
sum_backward = sg.compile(dX, inputs=[X, ds], name="sum_backward")
print()
print("s = sum(X, axis=0)   dX =", dX)
Xv, dsv = rng.normal(size=(N, D)), rng.normal(size=D)
dX_value = sum_backward(Xv, dsv)
print("  ds =", np.round(dsv, 3))
print("  dX =\n", np.round(dX_value, 3), "\n  = ds repeated on each of the N rows")
np.testing.assert_allclose(dX_value, np.tile(dsv, (N, 1)), rtol=0, atol=0)

# together: the gradient of sum(repeat(b)) is N * ones, and one compile serves every N
total = sg.sum(sg.broadcast_to(b, ("N", D)) * Z)
vg = sg.value_and_grad(total, wrt=b, inputs=[b, Z])
for n in (1, 7, 100):
    Zn = rng.normal(size=(n, D))
    _, grad_b = vg(bv, Zn)
    np.testing.assert_allclose(grad_b, Zn.sum(axis=0), rtol=1e-13, atol=1e-13)
print()
print("d/db sum(repeat(b) * Z) = sum of Z over rows, checked for N = 1, 7, 100. Its backward pass:")
print(vg.source.split("# backward")[1].split("return")[0].rstrip())
