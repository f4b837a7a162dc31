"""Training entry point: `python -m jdc_jax.main --config=configs/jicd.py:sigma25 --workdir=DIR`.

Two flags only: --config (an ml_collections config file, locked; override any field with
--config.FIELD=VALUE) and --workdir. Under a cluster launcher (TPU pod, Slurm, Open MPI) it
initializes JAX's multi-process runtime, which auto-detects the cluster; explicit settings come
from JDC_COORDINATOR_ADDRESS (host:port), JDC_NUM_PROCESSES and JDC_PROCESS_ID. Alone, it runs as
one process.
"""

from __future__ import annotations

import os

# TF's C++ logging (libpng profile notes, oneDNN banners) says nothing useful to a trainer.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and the config.")
config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])

CLUSTER_ENV = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
               "CLOUD_TPU_TASK_ID", "MEGASCALE_COORDINATOR_ADDRESS")


def initialize_distributed(environ=os.environ) -> str:
    """Starts jax.distributed when the environment asks for it; returns how it was started."""
    if environ.get("JDC_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=environ["JDC_COORDINATOR_ADDRESS"],
            num_processes=int(environ["JDC_NUM_PROCESSES"]),
            process_id=int(environ["JDC_PROCESS_ID"]))
        return "explicit"
    slurm_multi = int(environ.get("SLURM_NTASKS", "1")) > 1
    if slurm_multi or int(environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1 or \
            environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0:
        jax.distributed.initialize()
        return "auto"
    return "single"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # progress lines go to stdout
    import tensorflow as tf

    # TF only feeds data: it must not take accelerator memory from JAX.
    tf.config.set_visible_devices([], "GPU")
    how = initialize_distributed()
    logging.info("JAX %s: process %d of %d (%s), %d local / %d global devices: %s",
                 jax.__version__, jax.process_index(), jax.process_count(), how,
                 jax.local_device_count(), jax.device_count(), jax.devices())
    from jdc_jax import train

    metrics = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if jax.process_index() == 0:
        summary = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())
                           if isinstance(v, float))
        print(f"final metrics: {summary}")
        print(f"checkpoint: {metrics['checkpoint']}")


if __name__ == "__main__":
    app.run(main)
