"""Training entry point: `python -m jdc_jax.main --config=configs/jicd.py:sigma25 --workdir=DIR`.

Two flags only: --config (an ml_collections config file, locked; override any field with
--config.FIELD=VALUE) and --workdir. The same command runs on every process of a multi-process
job, which forms one JAX program through `jax.distributed` (see `initialize_distributed`):

- explicit: JDC_COORDINATOR_ADDRESS (host:port of process 0's coordinator), JDC_NUM_PROCESSES
  and JDC_PROCESS_ID (0 .. JDC_NUM_PROCESSES - 1);
- auto-detected by JAX: Slurm with several tasks, Open MPI with several ranks, a TPU host list
  with several hosts (TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES, as on GKE), or a Cloud TPU
  VM, whose workers find each other through the TPU metadata.

On the CPU backend, cross-process collectives need an implementation: JDC_CPU_COLLECTIVES
(gloo | mpi) chooses it, otherwise gloo (JAX's own choice, --jax_cpu_collectives_implementation,
is kept when it names one). Alone, the job runs as one process.

A config that cannot work (`config_validation.ConfigError`) or a data source that cannot be read
here (`data_sources.SourceUnavailable`, e.g. TFDS data neither prepared nor downloadable) ends
the job before anything is written, with one line ``error: ...`` on stderr and exit status 1;
so does a checkpoint that cannot be written (`checkpoints.CheckpointWriteError`, e.g. a full
disk), as the last line of stderr.
"""

from __future__ import annotations

import logging as python_logging
import os
import sys

# TF's C++ logging (libpng profile notes, oneDNN banners) says nothing useful to a trainer.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jax._src import cloud_tpu_init  # noqa: E402
from jdc_jax import input_pipeline, train  # noqa: E402
from jdc_jax.checkpoints import CheckpointWriteError  # noqa: E402
from jdc_jax.config_validation import ConfigError  # noqa: E402
from jdc_jax.data_sources import SourceUnavailable  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and the config.")
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])

EXPLICIT_ENV = ("JDC_COORDINATOR_ADDRESS", "JDC_NUM_PROCESSES", "JDC_PROCESS_ID")
# What --jax_cpu_collectives_implementation accepts for cross-process collectives.
CPU_COLLECTIVES = ("gloo", "mpi")


def _integer_at_least(environ, name: str, minimum: int) -> int:
    text = environ[name]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def explicit_settings(environ) -> dict | None:
    """jax.distributed.initialize arguments from JDC_* variables; None when none is set."""
    present = [name for name in EXPLICIT_ENV if environ.get(name)]
    if not present:
        return None
    missing = [name for name in EXPLICIT_ENV if name not in present]
    if missing:
        raise ValueError(f"{', '.join(present)} set but {', '.join(missing)} missing: "
                         f"a multi-process job needs all of {', '.join(EXPLICIT_ENV)}")
    address = environ["JDC_COORDINATOR_ADDRESS"]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"JDC_COORDINATOR_ADDRESS must be host:port, got {address!r}")
    num_processes = _integer_at_least(environ, "JDC_NUM_PROCESSES", 1)
    process_id = _integer_at_least(environ, "JDC_PROCESS_ID", 0)
    if process_id >= num_processes:
        raise ValueError(f"JDC_PROCESS_ID {process_id} is not below JDC_NUM_PROCESSES "
                         f"{num_processes}")
    return {"coordinator_address": address, "num_processes": num_processes,
            "process_id": process_id}


def _on_cloud_tpu_vm() -> bool:
    # Set by `import jax` when libtpu and TPU chips are present: the check JAX's own cluster
    # detection relies on. No public API exposes it.
    return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def cluster_detected(environ) -> bool:
    """Whether JAX can find a multi-process job's processes on its own. A Cloud TPU VM counts
    even alone: its slice may span several hosts, which the TPU metadata names."""
    def count(name: str) -> int:
        text = environ.get(name, "1")
        return int(text) if text.isdigit() else 1

    tpu_hosts = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES", "")
    return (count("SLURM_NTASKS") > 1 or count("OMPI_COMM_WORLD_SIZE") > 1
            or tpu_hosts.count(",") > 0 or _on_cloud_tpu_vm())


def choose_cpu_collectives(environ) -> str:
    """Sets --jax_cpu_collectives_implementation before the CPU backend starts; returns it."""
    chosen = environ.get("JDC_CPU_COLLECTIVES", "")
    if chosen and chosen not in CPU_COLLECTIVES:
        raise ValueError(f"JDC_CPU_COLLECTIVES must be one of {CPU_COLLECTIVES}, got {chosen!r}")
    # Without an implementation, every cross-process computation on CPU fails.
    chosen = chosen or jax.config.jax_cpu_collectives_implementation or "gloo"
    jax.config.update("jax_cpu_collectives_implementation", chosen)
    return chosen


def initialize_distributed(environ=os.environ) -> str:
    """Starts jax.distributed when the environment asks for it (module docstring); returns how:
    "explicit", "auto" or "single". Call it before any JAX computation."""
    settings = explicit_settings(environ)
    if settings is None and not cluster_detected(environ):
        return "single"
    choose_cpu_collectives(environ)
    if settings is None:
        jax.distributed.initialize()
        return "auto"
    jax.distributed.initialize(**settings)
    return "explicit"


def _exit_with_last_line(line: str) -> None:
    """Writes `line` as stderr's last line, and ends the process with status 1.

    After a failed save, orbax's writer threads can still be printing a traceback ("Event loop
    is closed"), and a part of one left in sys.stderr's buffer would run into the line. So the
    line goes straight to a duplicate of the stderr descriptor, after stderr itself is pointed
    at /dev/null (what the threads print from then on, or left unflushed, is dropped), and the
    process ends at once, before the interpreter's shutdown."""
    descriptor = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.write(descriptor, f"{line}\n".encode())
    os._exit(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # progress lines go to stdout
    input_pipeline.hide_accelerators_from_tf()
    how = initialize_distributed()
    logging.info("JAX %s: process %d of %d (%s), %d local / %d global devices: %s",
                 jax.__version__, jax.process_index(), jax.process_count(), how,
                 jax.local_device_count(), jax.device_count(), jax.devices())
    try:
        metrics = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (ConfigError, SourceUnavailable, CheckpointWriteError) as error:
        # A config or data source refused before any work starts, or a checkpoint that could
        # not be written: one line for a person, not a traceback, and the last one. (At exit,
        # asyncio would log each of orbax's abandoned write futures after it.)
        python_logging.getLogger("asyncio").setLevel(python_logging.CRITICAL)
        sys.stdout.flush()
        _exit_with_last_line(f"error: {' '.join(str(error).split())}")
    except train.TrainingStopped as stopped:
        # Asked to stop (a preemption notice, `kill`, Ctrl-C): the checkpoint of the step it
        # reached is saved, and the line saying so printed; the status tells a scheduler or a
        # queue that the run is not done (128 + the signal's number, as a shell reports it).
        sys.stdout.flush()
        sys.exit(stopped.exit_status)
    if jax.process_index() == 0:
        summary = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())
                           if isinstance(v, float))
        print(f"final metrics: {summary}")
        print(f"checkpoint: {metrics['checkpoint']}")


if __name__ == "__main__":
    app.run(main)
