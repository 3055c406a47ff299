"""tutti's cluster detection for JAX: ``jax.distributed.initialize()`` with no arguments in a tutti rank.

JAX fills the arguments of ``jax.distributed.initialize()`` that a program leaves out from the first "cluster
environment" that says it is present: subclasses of ``jax._src.clusters.ClusterEnv``, which register themselves by
being defined (``ClusterEnv.__init_subclass__`` appends them to ``ClusterEnv._cluster_types``), tried in that list's
order (Open MPI, Slurm, mpi4py, Cloud TPU, Kubernetes in JAX 0.4.34 and later). This module adds ``TuttiCluster`` to
that list, first, so that in a tutti rank tutti's own variables answer, also inside a Slurm step (where JAX's
``SlurmCluster`` would otherwise answer from Slurm's numbering) or under ``mpirun``:

    JAX_COORDINATOR_ADDRESS  "<rank 0's node address>:<port>"   the coordinator (process 0 listens there)
    JAX_NUM_PROCESSES        the job's number of processes      get_process_count()
    JAX_PROCESS_ID           this process's number              get_process_id()
    JAX_LOCAL_DEVICE_IDS     "1" or "0,1,2,3": this process's GPUs, as numbered within its CUDA_VISIBLE_DEVICES;
                             absent for a CPU-only job          get_local_device_ids() and get_local_process_id()
    LOCAL_RANK               this process's number on its node  get_local_rank() (absent for a per-node rank)
    TUTTI_JOB_ID             set in every tutti rank: with JAX_COORDINATOR_ADDRESS, what tells a tutti rank

How it gets loaded: ``sitecustomize.py`` beside this file (the directory tutti puts on the ranks' PYTHONPATH) installs
``install_import_hook()``, which costs one dictionary lookup per import and imports nothing of JAX: only once the
program itself imports JAX, right after JAX's ``jax._src.clusters`` package has run (which ``import jax`` does, and
which registers JAX's own detections), ``register_with_jax()`` defines ``TuttiCluster`` and moves it to the front.

Nothing here may break a program: every failure of the hook or the registration is caught and ignored (told on
stderr when TUTTI_DEBUG_JAX is set). A value that cannot be read (JAX_NUM_PROCESSES=abc) raises only when
``jax.distributed.initialize()`` asks for it, with an error naming the variable.

JAX versions (checked against JAX's sources, 0.4.0 to 0.11): ``get_coordinator_address`` took no argument before
0.4.26, ``timeout_secs`` from 0.4.26 and also ``override_coordinator_port`` (JAX_COORDINATOR_PORT) from 0.8.1, so it
takes both as optional keywords; ``name`` (for ``cluster_detection_method="tutti"``) and ``opt_in_only_method`` are
read from 0.4.31. Written for Python 3.7 and later (JAX 0.4.1 supports 3.8).
"""

import os
import sys

#: What ``cluster_detection_method=`` names this detection by (JAX 0.4.31 and later).
CLUSTER_NAME = "tutti"

#: The module whose import makes JAX's cluster registry complete: the hook registers tutti's right after it ran.
JAX_CLUSTERS_MODULE = "jax._src.clusters"

_DEBUG_VARIABLE = "TUTTI_DEBUG_JAX"


def debug(message):
    """Tells `message` on stderr when TUTTI_DEBUG_JAX is set (to anything but "" or "0"); never raises."""
    try:
        if os.environ.get(_DEBUG_VARIABLE, "") not in ("", "0"):
            sys.stderr.write("tutti-jax: %s\n" % (message,))
    except Exception:
        pass


def tutti_environment_present(environ=None):
    """Whether this process is a tutti rank that JAX should take its distributed settings from."""
    environ = os.environ if environ is None else environ
    return "JAX_COORDINATOR_ADDRESS" in environ and "TUTTI_JOB_ID" in environ


def _required(name):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        raise ValueError(
            "tutti's JAX cluster detection: %s is not set in this rank's environment "
            "(tutti sets it in every rank; was it removed?)" % name
        )
    return value.strip()


def _whole_number(name, value):
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(
            "tutti's JAX cluster detection: %s is %r, not a whole number >= 0" % (name, value)
        )
    return number


def coordinator_address(override_port=None):
    """JAX_COORDINATOR_ADDRESS ("host:port"), its port replaced by `override_port` when JAX passes one."""
    address = _required("JAX_COORDINATOR_ADDRESS")
    host, separator, port = address.rpartition(":")
    if not separator or not host:
        raise ValueError(
            "tutti's JAX cluster detection: JAX_COORDINATOR_ADDRESS is %r, not host:port" % address
        )
    if override_port:
        # JAX_COORDINATOR_PORT (JAX 0.8.1 and later): the user's port, on tutti's coordinator host.
        port = str(override_port)
    _whole_number("the port of JAX_COORDINATOR_ADDRESS", port)
    return "%s:%s" % (host, port)


def process_count():
    return _whole_number("JAX_NUM_PROCESSES", _required("JAX_NUM_PROCESSES"))


def process_id():
    return _whole_number("JAX_PROCESS_ID", _required("JAX_PROCESS_ID"))


def local_rank():
    """LOCAL_RANK; None where tutti sets none (a per-node rank: the only process of its node, which starts workers)."""
    value = os.environ.get("LOCAL_RANK", "").strip()
    return None if value == "" else _whole_number("LOCAL_RANK", value)


def local_device_ids():
    """JAX_LOCAL_DEVICE_IDS as a list of ints; None when it is absent or empty (a CPU-only job)."""
    value = os.environ.get("JAX_LOCAL_DEVICE_IDS", "").strip()
    if value == "":
        return None
    return [_whole_number("JAX_LOCAL_DEVICE_IDS", part.strip()) for part in value.split(",")]


def local_process_id_for_jax():
    """
    What ``get_local_process_id`` answers. JAX does not use it as a number of processes: when the program passes no
    ``local_device_ids`` and JAX itself did not read JAX_LOCAL_DEVICE_IDS (it does from 0.4.32 on), it restricts the
    process to the one device ``[get_local_process_id()]``. So this answers the rank's one GPU when
    JAX_LOCAL_DEVICE_IDS names exactly one (a per-GPU rank, which may see every GPU of its node), and None (JAX then
    leaves every device of CUDA_VISIBLE_DEVICES visible) when it names several (a per-node rank, whose
    CUDA_VISIBLE_DEVICES holds just its GPUs) or none (CPU). Answering LOCAL_RANK instead would give a per-node rank
    one GPU of its node.
    """
    ids = local_device_ids()
    if ids is not None and len(ids) == 1:
        return ids[0]
    return None


def define_cluster_class(cluster_env_base):
    """
    Defines tutti's ClusterEnv subclass of `cluster_env_base` (JAX's ``ClusterEnv``). Defining it registers it: JAX's
    ``__init_subclass__`` appends it to ``_cluster_types``.
    """

    class TuttiCluster(cluster_env_base):
        """A tutti rank: JAX's distributed settings from the variables tutti sets (see tutti_jax_cluster.py)."""

        name = CLUSTER_NAME
        opt_in_only_method = False

        @classmethod
        def is_env_present(cls):
            return tutti_environment_present()

        @classmethod
        def get_coordinator_address(cls, timeout_secs=None, override_coordinator_port=None, **_later_arguments):
            # timeout_secs: tutti's address is known at once, nothing to wait for.
            return coordinator_address(override_coordinator_port)

        @classmethod
        def get_process_count(cls):
            return process_count()

        @classmethod
        def get_process_id(cls):
            return process_id()

        @classmethod
        def get_local_process_id(cls):
            return local_process_id_for_jax()

        # Not called by JAX: what tutti says of the rank, for programs and tests that ask the detection itself.
        @classmethod
        def get_local_rank(cls):
            return local_rank()

        @classmethod
        def get_local_device_ids(cls):
            return local_device_ids()

    TuttiCluster.__qualname__ = "TuttiCluster"
    return TuttiCluster


def put_first(cluster_types, cluster_class):
    """Moves `cluster_class` to the front of JAX's registry list, so that auto-detection tries it before JAX's own."""
    while cluster_class in cluster_types:
        cluster_types.remove(cluster_class)
    cluster_types.insert(0, cluster_class)


#: The class once registered (one per interpreter, whatever calls register_with_jax).
registered_cluster = None


def register_with_jax(clusters_module=None):
    """
    Registers TuttiCluster with JAX's cluster registry, first. `clusters_module` is ``jax._src.clusters`` (imported
    here when not given: only call it without one from a program that imports JAX anyway). Answers the class; at
    most one is ever registered.
    """
    global registered_cluster
    if registered_cluster is not None:
        return registered_cluster
    if clusters_module is None:
        import importlib

        clusters_module = importlib.import_module(JAX_CLUSTERS_MODULE)
    base = clusters_module.ClusterEnv
    cluster_class = define_cluster_class(base)
    registered_cluster = cluster_class
    cluster_types = getattr(base, "_cluster_types", None)
    if isinstance(cluster_types, list):
        put_first(cluster_types, cluster_class)
        debug("registered %s first of JAX's cluster detections: %s" % (
            cluster_class.__name__, ", ".join(getattr(c, "__name__", "?") for c in cluster_types)))
    else:
        # A JAX whose registry is no longer that list: defining the class registered it the new way, at its place.
        debug("registered %s; JAX's ClusterEnv has no _cluster_types list, so it may not be tried first"
              % cluster_class.__name__)
    return cluster_class


def _register_after_import(module):
    try:
        register_with_jax(module)
    except Exception as error:  # never break the program's `import jax`
        debug("could not register with JAX's cluster detection: %s: %s" % (type(error).__name__, error))


class _RunAfterExecLoader(object):
    """
    Wraps the loader of one module: runs it as usual, then `after(module)`. While the module runs, its
    ``__loader__`` and ``__spec__.loader`` are the original loader again, so that nothing inside it sees the wrapper.
    """

    def __init__(self, loader, after):
        self._loader = loader
        self._after = after

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def _unwrap(self, module):
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and getattr(spec, "loader", None) is self:
            spec.loader = self._loader

    def exec_module(self, module):
        self._unwrap(module)
        self._loader.exec_module(module)
        self._after(module)

    def load_module(self, fullname):  # loaders without exec_module (none in JAX; kept for completeness)
        module = self._loader.load_module(fullname)
        self._unwrap(module)
        self._after(module)
        return module


class _PostImportHook(object):
    """
    A ``sys.meta_path`` finder that finds nothing itself: when `module_name` is imported, it asks the finders after
    it for the module and wraps its loader so that `after(module)` runs once the module has run. Fires once.
    """

    def __init__(self, module_name, after):
        self.module_name = module_name
        self._after = after
        self._finding = False
        self.fired = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module_name or self._finding or self.fired:
            return None
        self._finding = True
        try:
            spec = self._find_with_other_finders(fullname, path, target)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return None
            self.fired = True
            spec.loader = _RunAfterExecLoader(spec.loader, self._after)
            return spec
        except Exception as error:
            debug("import hook for %s failed, importing it untouched: %s: %s" % (fullname, type(error).__name__, error))
            return None
        finally:
            self._finding = False

    def _find_with_other_finders(self, fullname, path, target):
        for finder in list(sys.meta_path):
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


def install_import_hook():
    """
    Arranges for tutti's detection to be registered once the program imports JAX. Costs nothing else: JAX is not
    imported here. When JAX's cluster registry is already imported, registers at once. Answers whether a hook or a
    registration is in place; never raises.
    """
    try:
        loaded = sys.modules.get(JAX_CLUSTERS_MODULE)
        if loaded is not None:
            _register_after_import(loaded)
            return registered_cluster is not None
        for finder in sys.meta_path:
            if isinstance(finder, _PostImportHook) and finder.module_name == JAX_CLUSTERS_MODULE:
                return True
        sys.meta_path.insert(0, _PostImportHook(JAX_CLUSTERS_MODULE, _register_after_import))
        return True
    except Exception as error:
        debug("could not install the import hook for JAX: %s: %s" % (type(error).__name__, error))
        return False
