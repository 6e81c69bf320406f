"""How many CPU threads a run uses, and the one line that says what a run runs on.

torch's default (one intra-op thread per logical CPU of the machine) oversubscribes whenever the
process may use fewer CPUs than the machine has (a container or ``taskset`` affinity), shares them with
other processes (``accelerate launch --num_processes N`` on one host), or counts hyper-threads: on a
2-core machine shared with other work the VCR main job took 45 minutes with torch's default and ran
2.6x faster with ``OMP_NUM_THREADS=1``. :func:`choose_num_threads` picks the usable physical cores that
other work leaves idle, divided among the local processes; ``OMP_NUM_THREADS`` set by the user always wins.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("hf_vcr")


def physical_cores() -> int | None:
    """Physical cores of the machine (hyper-threads not counted), from ``/proc/cpuinfo``; None when unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    cores, physical, core = set(), None, None
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip():
            if core is not None:
                cores.add((physical, core))
            physical, core = None, None
    return len(cores) or None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and ``taskset`` restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_process_count() -> int:
    """Processes of this run on this host (``LOCAL_WORLD_SIZE`` from torchrun / accelerate launch; 1 otherwise)."""
    for name in ("LOCAL_WORLD_SIZE", "ACCELERATE_NUM_PROCESSES_PER_NODE"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def other_load() -> float:
    """CPUs kept busy by other work: the 1-minute load average, read before this run starts computing."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def choose_num_threads(environ: dict | None = None, *, cores: int | None = None, cpus: int | None = None,
                       processes: int | None = None, load: float | None = None) -> int:
    """Intra-op threads for one process: ``OMP_NUM_THREADS`` when set, else
    ``max(1, min(physical cores, usable CPUs, usable CPUs - load of other work) // local processes)``.

    Threads beyond the idle cores only wait for each other (every op's threads synchronise), so a shared
    machine gets fewer. The keyword arguments override what is read from the machine (for tests).
    """
    environ = os.environ if environ is None else environ
    value = environ.get("OMP_NUM_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"OMP_NUM_THREADS={value!r} is not a positive integer")
        return int(value)
    cpus = usable_cpus() if cpus is None else cpus
    cores = physical_cores() if cores is None else cores
    processes = local_process_count() if processes is None else processes
    load = other_load() if load is None else load
    idle = int(round(cpus - load))
    return max(1, min(cpus, cores or cpus, idle) // max(1, processes))


def configure_threads(device=None, record: str | None = None, write: bool = True) -> int:
    """Set torch's intra-op threads with :func:`choose_num_threads` (CPU runs only: on a GPU the host threads
    only feed the device, torch's setting stays) and return the count in use.

    ``record`` (a run's ``threads.json``) keeps the first choice for the whole run: the count depends on the
    machine's load when a run starts, and a run resumed after a kill must compute with the same threads as
    before (reductions split over another number of threads round differently), so it reads it back.
    ``OMP_NUM_THREADS`` still wins.
    """
    import json

    import torch

    if device is None or str(device).startswith("cpu"):
        threads = None
        if record and not os.environ.get("OMP_NUM_THREADS", "").strip() and os.path.isfile(record):
            with open(record, encoding="utf-8") as f:
                threads = int(json.load(f)["threads"])
        if threads is None:
            threads = choose_num_threads()
            if record and write and not os.path.isfile(record):
                from .checkpoints import atomic_write_json

                os.makedirs(os.path.dirname(os.path.abspath(record)), exist_ok=True)
                atomic_write_json(record, {"threads": threads})
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def count_parameters(model) -> int:
    """Parameters of ``model`` (ZeRO-3 partitioned ones counted whole)."""
    return sum(getattr(p, "ds_numel", 0) or p.numel() for p in model.parameters())


def runtime_summary(device, model=None, what: str | None = None) -> str:
    """The one line a run logs: device, threads and (with ``model``) its parameter count."""
    import torch

    parts = [f"device={device}", f"threads={torch.get_num_threads()}"]
    if model is not None:
        parts.append(f"parameters={count_parameters(model) / 1e6:.2f}M")
    return "hf_vcr: " + (f"{what}: " if what else "") + " ".join(parts)


def log_runtime(device, model=None, what: str | None = None, main_process: bool = True, record: str | None = None) -> str:
    """Configure threads for ``device``, then print (main process only, on stderr) and return the summary line."""
    import sys

    configure_threads(device, record=record, write=main_process)
    line = runtime_summary(device, model, what)
    if main_process:
        print(line, file=sys.stderr, flush=True)
    return line


def _named_progress_callback_class():
    from transformers.trainer_callback import ProgressCallback

    class NamedProgressCallback(ProgressCallback):
        """transformers' progress bars, each prefixed with the task it counts ("q2a train", "q2a eval")."""

        def __init__(self, name: str, **kwargs):
            super().__init__(**kwargs)
            self.name = name

        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            if getattr(self, "training_bar", None) is not None:
                self.training_bar.set_description(f"{self.name} train")

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            fresh = getattr(self, "prediction_bar", None) is None
            super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)
            if fresh and getattr(self, "prediction_bar", None) is not None:
                self.prediction_bar.set_description(f"{self.name} eval")

    return NamedProgressCallback


def name_progress_bars(trainer, name: str) -> None:
    """Make ``trainer``'s progress bars say which task they count (a no-op with ``disable_tqdm``)."""
    from transformers.trainer_callback import ProgressCallback

    cls = _named_progress_callback_class()
    handler = trainer.callback_handler
    if any(isinstance(cb, ProgressCallback) for cb in handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(cls(name))


def announce_run(trainer, name: str) -> str:
    """What a flow calls once per trainer it builds: threads chosen for its device, progress bars named after
    ``name``, and the one-line summary (device, threads, parameters) printed by the main process."""
    name_progress_bars(trainer, name)
    return log_runtime(trainer.args.device, trainer.model, what=name, main_process=trainer.is_world_process_zero(),
                       record=os.path.join(trainer.args.output_dir, "threads.json"))
