"""Loading a kernel's machine code from numba's disk cache without numba's start-up work.

``Dispatcher.compile`` refreshes numba's target context before it even looks in the cache: it
imports and installs every registry numba has (its numpy, linalg, random, typed containers,
unicode, ...; ``numba.np.arraymath`` imports ``scipy.linalg``), about a second of a second
process's build although none of it is needed to load machine code. ``load_cached`` does what
``Dispatcher.compile`` does on a cache hit, with only the set-up loading needs (numba's runtime
symbols); on a miss, or any trouble, it returns False and the caller compiles as usual (which
refreshes the context, and handles a corrupt cache file).
"""


def load_cached(dispatcher, signature):
    """Give ``dispatcher`` its overload for ``signature`` from numba's disk cache; False if the
    cache has none (nothing is changed then)."""
    # numba: heavy optional import (see tests/test_layering.py); only numba builds come here
    from numba.core import sigutils
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import nrt

    try:
        with global_compiler_lock:
            args, _ = sigutils.normalize_signature(signature)
            if tuple(args) in dispatcher.overloads:
                return True
            cache = dispatcher._cache
            if not getattr(cache, "_enabled", False):
                return False
            ctx = dispatcher.targetctx
            nrt.rtsys.initialize(ctx)  # the NRT's symbols for the loaded code (what refresh starts with)
            cres = cache._load_overload(signature, ctx)
            if cres is None or cres.objectmode:
                return False
            dispatcher._cache_hits[signature] += 1
            ctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
            dispatcher.add_overload(cres)
            LOADS[0] += 1
            return True
    except Exception:
        return False


LOADS = [0]  # kernels this process loaded through load_cached (for tests)
