"""Checkpoints: orbax for the training state, JSON for the resolved config.

Layout of a work directory:

    WORKDIR/config.json                 the resolved ml_collections config
    WORKDIR/checkpoints/<step>/state    orbax PyTree of {step, params, opt_state}
    WORKDIR/checkpoints/<step>/config   the same config, so a step directory stands alone
    WORKDIR/data_state/<step>/process_<i>_of_<n>
                                        tf.data iterator state of process i of n (resumption)

The state is saved by all processes of a job together, each writing its part. Training resumes
it with its own state's sharding (`restore_state`), and `restore_params` reads host arrays, so a
checkpoint that any number of processes wrote is read by any number; neither relies on the
sharding the saving job recorded. `restore_config` reads the config item alone.

`restore_params` reads parameters (and the config) from a checkpoint directory without building
an optimizer, for fine-tuning (`config.init_from`), the codec and export: they come back as
arrays on this process's default device, whatever the devices and processes that saved them.
It never imports TensorFlow.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from jdc_jax.atomic_write import write_bytes_atomic

CHECKPOINT_SUBDIR = "checkpoints"


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL such as gs://bucket/dir (cloud work directories)."""
    return "://" in os.fspath(path)


def local_or_remote_path(path: str | os.PathLike):
    """A pathlib-like object for local paths and gs:// URLs alike (etils.epath, which orbax
    itself uses); local paths are made absolute."""
    return epath.Path(path) if is_remote(path) else epath.Path(os.path.abspath(
        os.path.expanduser(os.fspath(path))))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_file_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_file_atomic(path: str | os.PathLike, payload: bytes) -> None:
    """Writes `payload` to a local path (temporary file, then rename) or a gs:// URL."""
    if not is_remote(path):
        write_bytes_atomic(path, payload)
        return
    # Object stores have no rename-into-place; a whole-object upload is already atomic.
    target = local_or_remote_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)


class CheckpointWriteError(RuntimeError):
    """A training checkpoint could not be written (a full disk, a lost bucket, ...).

    Orbax writes a step into a temporary directory and renames it into place only once complete,
    so the newest complete checkpoint is intact and a partial step is never loaded; training
    removes it when it starts again (`checkpoint_manager(remove_partial_steps=True)`)."""

    def __init__(self, step: int, workdir, latest_complete: int | None, cause: BaseException):
        if latest_complete is None:
            intact = "there is no complete checkpoint yet: training starts from scratch"
        elif latest_complete == step:  # the state was written, the input pipeline's not
            intact = (f"its training state is complete: training resumes from step {step}, "
                      f"with the data order restarted")
        else:
            intact = (f"the newest complete checkpoint, step {latest_complete}, is intact: "
                      f"training resumes from it")
        super().__init__(
            f"checkpoint step {step} could not be written completely in {workdir} "
            f"({' '.join(str(cause).split()) or type(cause).__name__}); {intact} once the "
            f"cause is fixed (a partial step is never loaded)")
        self.step = step


def checkpoint_manager(directory: str | os.PathLike, *, max_to_keep: int | None = None,
                       save_interval_steps: int = 1,
                       remove_partial_steps: bool = False) -> ocp.CheckpointManager:
    """An orbax manager of the step directories in `directory` (synchronous saves).

    remove_partial_steps: delete the temporary directories of steps whose writing was cut
    short (a killed job, a full disk) when the manager starts. Only for the job that writes the
    checkpoints: a reader would delete the step a running job is writing."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           save_interval_steps=save_interval_steps,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=remove_partial_steps)
    # Handlers named up front, so that item_metadata can read a checkpoint before any restore.
    return ocp.CheckpointManager(local_or_remote_path(directory), options=options,
                                 item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                                                "config": ocp.JsonCheckpointHandler()})


def resolve_checkpoint_dir(path: str | os.PathLike):
    """Accepts a work directory, its checkpoints/ directory or one step directory (local or
    gs://); returns the checkpoints/ directory. Raises FileNotFoundError with the path when
    nothing is there."""
    path = local_or_remote_path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if (path / CHECKPOINT_SUBDIR).is_dir():
        path = path / CHECKPOINT_SUBDIR
    elif path.name.isdigit() and (path / "state").exists():
        path = path.parent
    steps = [p for p in path.iterdir() if p.name.isdigit() and (p / "state").exists()] \
        if path.is_dir() else []
    if not steps:
        raise FileNotFoundError(f"no checkpoint steps in {path}")
    return path


def restore_state(manager: ocp.CheckpointManager, step: int, like):
    """The training state saved at `step`, restored onto the shardings of `like` (the state the
    job built: its structure, dtypes and shardings).

    Every jax.Array leaf is read with its own sharding (`construct_restore_args`), so each
    process reads only what its devices hold, whatever the job that saved it, and orbax never
    falls back on the sharding file of that job (its "Sharding info not provided" warning)."""
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=like, restore_args=ocp.checkpoint_utils.construct_restore_args(like)),
        config=ocp.args.JsonRestore()))
    return restored["state"]


def _open_step(path: str | os.PathLike, step: int | None):
    """(manager, step) of a checkpoint path (`resolve_checkpoint_dir`): the step directory's
    own step, `step`, or the latest. FileNotFoundError when that step is not there."""
    requested = local_or_remote_path(path)
    directory = resolve_checkpoint_dir(requested)
    if step is None and requested.name.isdigit() and (requested / "state").exists():
        step = int(requested.name)
    manager = checkpoint_manager(directory)
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
        manager.close()
        raise FileNotFoundError(f"checkpoint step {step} not found in {directory}")
    return manager, step


def restore_config(path: str | os.PathLike, step: int | None = None) -> tuple[dict, int]:
    """(config dict, step) of a checkpoint, without reading its parameters; the latest step
    unless `step` is given or `path` is a step directory."""
    manager, step = _open_step(path, step)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    finally:
        manager.close()
    return dict(restored["config"]), step


def restore_params(path: str | os.PathLike, step: int | None = None):
    """(params, config dict, step) from a checkpoint; the latest step unless `step` is given.
    Parameters are read as host arrays (restore_type np.ndarray), never through the sharding
    the saving job recorded."""
    manager, step = _open_step(path, step)
    directory = manager.directory
    # The state item's metadata alone: the manager's would also list the coding tables stored in
    # the step directory (codec.api), as an item orbax warns it cannot restore.
    handler = ocp.PyTreeCheckpointHandler()
    try:
        saved = handler.metadata(directory / str(step) / "state").tree
    except FileNotFoundError:
        saved = {}
    finally:
        handler.close()
    if "params" not in saved:
        manager.close()
        raise ValueError(f"checkpoint {directory}/{step} holds no parameters")
    # Read as host arrays: the saved sharding names the devices of the job that wrote it.
    as_host = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                     saved["params"])
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(item={"params": saved["params"]},
                                     restore_args={"params": as_host}, partial_restore=True),
        config=ocp.args.JsonRestore()))
    manager.close()
    params = jax.tree_util.tree_map(jnp.asarray, restored["state"]["params"])
    return params, dict(restored["config"]), step
