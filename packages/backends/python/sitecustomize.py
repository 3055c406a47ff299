"""tutti's start-up hook for the Python of a rank: makes ``jax.distributed.initialize()`` work with no arguments.

tutti puts this file's directory first on the ranks' PYTHONPATH. Python's ``site`` imports the first
``sitecustomize`` module it finds on ``sys.path`` at start-up, so this one runs in every Python program of the rank.
It does two things, and neither may ever break the program (every failure is caught; TUTTI_DEBUG_JAX=1 tells it on
stderr):

1. installs tutti's lazy JAX hook (tutti_jax_cluster.py): nothing of JAX is imported unless the program imports JAX;
2. runs the ``sitecustomize`` Python would have run without this one (the next on ``sys.path``: Debian's
   /usr/lib/python3.X/sitecustomize.py, a virtualenv's or the job's own), under the same name, so that it behaves as
   if tutti were not there. An error in it is reported as ``site`` reports one, and the program goes on.

Not loaded by ``python -S`` (no ``site``) or ``python -I`` / ``-E`` (PYTHONPATH ignored): such a program must pass
``jax.distributed.initialize()`` its arguments (tutti's JAX_* variables hold them).
"""

import os
import sys


def _install_tutti_jax_hook():
    try:
        import tutti_jax_cluster

        tutti_jax_cluster.install_import_hook()
    except Exception as error:
        if os.environ.get("TUTTI_DEBUG_JAX", "") not in ("", "0"):
            sys.stderr.write("tutti-jax: could not install the JAX hook: %s: %s\n" % (type(error).__name__, error))


def _same_directory(entry, directories):
    try:
        return os.path.realpath(os.path.abspath(entry or os.curdir)) in directories
    except Exception:
        return False


def _next_sitecustomize_spec():
    """The spec of the sitecustomize that comes after tutti's on sys.path (skipping other copies of tutti's), or None."""
    from importlib.machinery import PathFinder

    skipped = {os.path.realpath(os.path.dirname(os.path.abspath(__file__)))}
    # Each round skips one more directory of tutti's helpers (a second copy on the path), so this ends.
    for _ in range(len(sys.path) + 1):
        spec = PathFinder.find_spec("sitecustomize", [entry for entry in sys.path if not _same_directory(entry, skipped)])
        if spec is None or spec.origin is None or spec.loader is None:
            return None
        directory = os.path.realpath(os.path.dirname(os.path.abspath(spec.origin)))
        if not os.path.exists(os.path.join(directory, "tutti_jax_cluster.py")):
            return spec
        skipped.add(directory)
    return None


def _run_next_sitecustomize():
    try:
        spec = _next_sitecustomize_spec()
        if spec is None:
            return
        from importlib.util import module_from_spec

        module = module_from_spec(spec)
    except Exception as error:
        if os.environ.get("TUTTI_DEBUG_JAX", "") not in ("", "0"):
            sys.stderr.write("tutti-jax: could not find the next sitecustomize: %s: %s\n" % (type(error).__name__, error))
        return
    # It becomes `sitecustomize`, as it would have been without tutti's (the import that runs this file then ends
    # with it in sys.modules).
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        # As site.execsitecustomize reports an error in a sitecustomize: the program still starts.
        if sys.flags.verbose:
            sys.excepthook(*sys.exc_info())
        else:
            sys.stderr.write(
                "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n" % (type(error).__name__, error)
            )


_install_tutti_jax_hook()
_run_next_sitecustomize()
