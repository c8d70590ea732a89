"""z = x*y + sin(x): dz/dx = y + cos(x), dz/dy = x, by symgrad and by central differences."""

import numpy as np

import symgrad as sg

x, y = sg.scalars("x y")
z = x * y + sg.sin(x)
gx, gy = sg.grad(z, [x, y])
print("z      =", z)
print("dz/dx  =", gx)
print("dz/dy  =", gy)

vg = sg.value_and_grad(z, wrt=[x, y])
value, (dx, dy) = vg(0.7, -1.3)
print(f"at x=0.7, y=-1.3: z = {value:.6f}, dz/dx = {dx:.6f}, dz/dy = {dy:.6f}")
print(f"by hand:            y + cos(x) = {-1.3 + np.cos(0.7):.6f}, x = 0.7")

h = 1e-5
f = sg.compile(z)
central = (f(0.7 + h, -1.3) - f(0.7 - h, -1.3)) / (2 * h)
print(f"central difference: dz/dx ~ {central:.6f} (error {abs(central - dx):.1e})")
print()
print("generated source:")
print(vg.source)
