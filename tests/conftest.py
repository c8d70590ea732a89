import os

import pytest


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
