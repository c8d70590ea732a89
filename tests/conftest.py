import datetime
import os
import zlib

import pytest

# A build's default is compile="background" (codegen/tiers.py): its first calls run on the numpy
# twin while numba compiles. The suite tests numba's machine code, so its builds wait for numba
# unless a test asks otherwise (tests/codegen/test_tiers.py tests the background builds; the
# variable reaches the examples and README snippets the suite runs in subprocesses too).
os.environ.setdefault("SYMGRAD_COMPILE", "sync")


@pytest.fixture(scope="session", autouse=True)
def symgrad_cache_dir(tmp_path_factory):
    """Generated modules go to a per-session directory, so tests never touch the user's cache.

    An explicit ``SYMGRAD_CACHE_DIR`` wins (a warm cache makes reruns fast)."""
    if os.environ.get("SYMGRAD_CACHE_DIR"):
        yield os.environ["SYMGRAD_CACHE_DIR"]
        return
    patch = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("symgrad-cache")
    patch.setenv("SYMGRAD_CACHE_DIR", str(path))
    yield str(path)
    patch.undo()


# ---------------------------------------------------------------- slow cases, sampled in CI
# Each of these compiles a numba kernel per case (the op table's walks, linear algebra,
# contractions, array functions, special functions, custom rules through numba): together they
# take longer than the rest of the suite. The walk that lowers every op in every backend
# (test_op_lowers_in_every_backend) always runs in full. With CI=true (the .ci/run job) a ninth of them run, a different ninth
# each day (by the UTC date), so every case runs within nine days (a sixth until the suite reached
# 9.9 min on 2 cores); SYMGRAD_FULL_TESTS=1 (or no CI variable: a developer's run) runs them all.
# The numpy-backend twins always run.
SLOW_NUMBA_CASES = (
    "tests/symgrad/test_ops.py",
    "tests/symgrad/test_linalg_decomp.py",
    "tests/symgrad/test_contract.py",
    "tests/symgrad/test_array_functions.py",
    "tests/symgrad/test_special_functions.py",
    "tests/symgrad/test_custom_rules.py",
)
SAMPLED = 9


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: compiles numba kernels per case; sampled when CI=true")


def _is_slow(item):
    path = item.nodeid.split("::")[0]
    if "test_op_lowers_in_every_backend" in item.nodeid:
        return False
    return item.get_closest_marker("slow") is not None or (
        path in SLOW_NUMBA_CASES and "numba" in item.nodeid
    )


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes") or os.environ.get("SYMGRAD_FULL_TESTS"):
        return
    day = datetime.datetime.now(datetime.timezone.utc).date().toordinal()
    skip = pytest.mark.skip(
        reason=f"slow numba case: CI runs 1 in {SAMPLED} each day (SYMGRAD_FULL_TESTS=1 runs all)"
    )
    for item in items:
        if _is_slow(item) and (zlib.crc32(item.nodeid.encode()) + day) % SAMPLED:
            item.add_marker(skip)
