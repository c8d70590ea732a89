"""The ``symgrad`` command: ``symgrad demo``, ``symgrad bench``, ``symgrad cache``, ``--version``."""

import argparse
import os
import sys
import time

import numpy as np

import symgrad as sg
from symgrad.codegen.runtime import cache_dir, cache_max_bytes, cache_size, clear_cache


def demo(out=None):
    # the demo's by-hand references and timer are the benchmark harness's; it is no part of the
    # library, so only the commands that use it load it
    from .bench import format_seconds as _fmt, median_call_seconds, mlp_by_hand, seed_by_hand

    def say(text=""):
        print(text, file=out or sys.stdout)

    say("symgrad demo: compile a loss, read its derivative source, time it next to numpy by hand")
    say()
    x, y = sg.scalars("x y")
    z = x * y + sg.sin(x)
    say(f"1. the seed loss  z = {z!r}")
    start = time.perf_counter()
    vg = sg.value_and_grad(z, wrt=[x, y])
    build = time.perf_counter() - start
    value, (dx, dy) = vg(0.7, -1.3)
    say(f"   vg(0.7, -1.3) = {value:.6f}, (dz/dx, dz/dy) = ({dx:.6f}, {dy:.6f})")
    say(f"   by hand: y + cos(x) = {-1.3 + np.cos(0.7):.6f}, x = 0.7")
    say("   generated source (exactly what numba compiled):")
    say()
    for line in vg.source.splitlines():
        say("   | " + line)
    say()
    say(f"   build {build:.3f} s, {_ready(vg, start)}")
    t_sg = median_call_seconds(vg, 0.7, -1.3)
    t_np = median_call_seconds(seed_by_hand, 0.7, -1.3)
    say(f"   per call: symgrad {_fmt(t_sg)}   numpy by hand {_fmt(t_np)}   ratio {t_sg / t_np:.2f}")
    say()

    n, d, h, k = 64, 64, 32, 10
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = (
        sg.tensor("W1", ("d", "h")),
        sg.tensor("b1", ("h",)),
        sg.tensor("W2", ("h", "k")),
        sg.tensor("b2", ("k",)),
    )
    X, T = sg.tensor("X", ("n", "d")), sg.tensor("T", ("n", "k"))
    scores = sg.tanh(X @ W1 + b1) @ W2 + b2
    loss = -sg.mean(sg.sum(T * sg.log_softmax(scores, axis=1), axis=1))
    say(f"2. a small MLP: tanh hidden layer, softmax cross-entropy, batch {n}, {d}-{h}-{k}")
    start = time.perf_counter()
    mlp = sg.value_and_grad(loss, wrt=[W1, b1, W2, b2], inputs=[W1, b1, W2, b2, X, T])
    build = time.perf_counter() - start
    args = (
        rng.normal(size=(d, h)) * 0.1,
        np.zeros(h),
        rng.normal(size=(h, k)) * 0.1,
        np.zeros(k),
        rng.normal(size=(n, d)),
        np.eye(k)[rng.integers(0, k, n)],
    )
    value, grads = mlp(*args)
    ref_value, ref_grads = mlp_by_hand(*args)
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(grads, ref_grads))
    say(f"   loss {value:.6f} (by hand {ref_value:.6f}); max gradient difference {err:.1e}")
    say(f"   generated source: {mlp.source.count(chr(10))} lines, graph {mlp.graph_nodes} nodes")
    say(f"   build {build:.3f} s, {_ready(mlp, start)}")
    t_sg = median_call_seconds(mlp, *args)
    t_np = median_call_seconds(mlp_by_hand, *args)
    say(f"   per call: symgrad {_fmt(t_sg)}   numpy by hand {_fmt(t_np)}   ratio {t_sg / t_np:.2f}")
    say()
    say("Run it again: the second process loads the machine code from the cache.")


def _ready(compiled, start):
    """Wait for numba's machine code (the first calls ran on the numpy twin while it compiled,
    sg.config(compile=...)) and say when it was ready and where it came from."""
    tier = compiled.tier
    compiled.wait()
    if tier == "numba":
        return f"numba's machine code at once ({compiled.cache_state})"
    return f"numba's machine code {time.perf_counter() - start:.3f} s after it began ({compiled.cache_state})"


# what each command does, for `symgrad --help` and `symgrad <command> --help` (plain text: argparse
# prints it as it is)
COMMANDS = {
    "demo": "compile the seed loss z = x*y + sin(x) and a small MLP, print the generated source "
    "and time a call next to numpy by hand",
    "bench": "time building, a forward call and a value-and-grad call on the benchmark losses "
    "against numpy by hand, hand-fused loops and the peers that are installed "
    "(JAX, PyTorch, autograd, SymPy); symgrad bench --suite build times cold and warm builds "
    "of the loop and model programs beside JAX's; symgrad bench --help lists its options",
    "cache": "the on-disk cache of generated modules and machine code: symgrad cache info shows "
    "where it is, its size and its cap (SYMGRAD_CACHE_DIR, SYMGRAD_CACHE_MAX_BYTES); "
    "symgrad cache clear empties it",
}
DESCRIPTION = "compile a loss to a fast function returning its value and exact gradient"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # the benchmark harness is no part of the library: only this command loads it
        from . import bench

        return bench.main(argv[1:], prog="symgrad bench")
    parser = argparse.ArgumentParser(prog="symgrad", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"symgrad {sg.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("demo", help=COMMANDS["demo"], description=COMMANDS["demo"])
    sub.add_parser("bench", help=COMMANDS["bench"], description=COMMANDS["bench"])
    cache = sub.add_parser("cache", help=COMMANDS["cache"], description=COMMANDS["cache"])
    cache.add_argument(
        "action",
        choices=["info", "clear"],
        help="info: the directory, its size, the number of modules and the cap; clear: delete it all",
    )
    args = parser.parse_args(argv)
    if args.command == "cache":
        if args.action == "clear":
            files, size = clear_cache()
            print(f"removed {files} files ({size / 1e6:.1f} MB) from {cache_dir()}")
        else:
            root = cache_dir()
            modules = [f for f in os.listdir(root) if f.startswith("symgrad_") and f.endswith(".py")]
            size, files = cache_size(root)
            cap = cache_max_bytes()
            print(f"cache directory: {root} (set SYMGRAD_CACHE_DIR to move it)")
            print(f"generated modules: {len(modules)}")
            print(f"size: {size} bytes ({size / 2**20:.1f} MiB) in {files} files")
            print(
                f"cap: {cap} bytes ({cap / 2**20:.1f} MiB; set SYMGRAD_CACHE_MAX_BYTES to change it); "
                "the least recently used modules are evicted above it"
            )
        return 0
    if args.command == "demo":
        demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
