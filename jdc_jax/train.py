"""Training loop: a pure, sharded, jit-compiled step and the loop around it.

`train_step(state, batch, rng) -> (state, metrics)` is compiled once over a 1-D device mesh
('data'): parameters and optimizer state replicated, the batch sharded along its leading axis,
the state donated. It runs unchanged on 1..n devices and on several processes, where each
process feeds only its own shard of the global batch (`jax.make_array_from_process_local_data`).

Several processes: the state, the step key and the batch are global jax.Arrays over all
processes' devices; every process builds the same initial state from the seed and contributes
its copy (`replicate`). The step's random numbers are the same whatever the number of devices
or processes: jax_threefry_partitionable (the default since JAX 0.5) draws each element from its
global index, not from the shard that holds it. Checkpoints are written and read by all
processes together (orbax), and restored with the state's sharding. Process 0 alone writes
config.json, final_metrics.json and the summaries, and prints progress; evaluation runs on
every process, each on its local copy of the parameters.

The loop around it: tf.data input (`input_pipeline`), metrics every `log_every_steps` (the only
host-device synchronization), TensorBoard summaries and progress lines from process 0, periodic
evaluation on a held-out folder with rounding quantization, orbax checkpoints with automatic
resumption (including the tf.data iterator position), and `init_from` fine-tuning (the JICD lambda
ladder).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tensorflow as tf
from absl import logging
from jax._src import distributed as jax_distributed
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from jdc_jax import checkpoints, images, input_pipeline
from jdc_jax.config_validation import frozen_modules, module_lr_scales, validate_config
from jdc_jax.codec.api import (INTEGER_ENTROPY_FILE, TABLES_DIRECTORY, Codec,
                               load_or_build_tables)
from jdc_jax.evaluate import evaluate_images
from jdc_jax.integer import calibrate as integer_calibration
from jdc_jax.models.losses import rate_distortion_loss, rate_lambda
from jdc_jax.models.registry import (GAUSSIAN_CONDITIONAL_KINDS, init_params,
                                     model_from_config, restore_model, restore_params,
                                     takes_noise_level)
from jdc_jax.sharding import global_batch, local_copy, make_mesh, replicate

def learning_rate_schedule(config) -> optax.Schedule:
    """The learning rate before plateau reductions, by step.

    A linear warm-up from 0 over `warmup_steps`, then `lr_schedule`: "constant" keeps
    `learning_rate`; "cosine" decays it to `learning_rate * final_lr_fraction` at
    `num_train_steps` (Loshchilov & Hutter 2017), the usual choice for a fixed step budget.

    The argument is the optimizer's own step count, which equals the global step except in a
    warm restart (`init_step` > 0: the run continues from parameters that already had
    init_step steps, with a fresh optimizer), where it is the global step - init_step.
    """
    peak = config.learning_rate
    kind = config.get("lr_schedule", "constant")
    warmup = config.get("warmup_steps", 0)
    if kind == "constant":
        main = optax.constant_schedule(peak)
    elif kind == "cosine":
        main = optax.cosine_decay_schedule(
            peak, max(config.num_train_steps - warmup, 1), alpha=config.final_lr_fraction)
    else:
        raise ValueError(f"unknown lr_schedule {kind!r}; expected 'constant' or 'cosine'")
    if warmup:
        main = optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])
    init_step = config.get("init_step", 0)
    if not init_step:
        return main
    # A warm restart (`init_step`): the optimizer starts afresh at global step init_step; its
    # count c follows the schedule from there, ramped up again over restart_warmup_steps while
    # Adam's moments refill.
    rewarm = max(config.get("restart_warmup_steps", 100), 1)
    return lambda count: main(count + init_step) * jnp.minimum(1.0, (count + 1) / rewarm)


def with_module_update_scales(inner: optax.GradientTransformationExtraArgs,
                              scales: dict[str, float]) -> optax.GradientTransformationExtraArgs:
    """`inner`, with the updates of each named top-level module multiplied by its factor.

    Adam's step is invariant to the scale of a gradient, so a module whose loss term is weighted
    down (JICD's noisy-reconstruction synthesis, weight w = 0.05) still moves by about the
    learning rate per step, on a gradient signal 1/w times weaker. Scaling its updates restores
    the proportion the loss weights intend. A factor of 0 freezes the module: its gradient is
    zeroed before `inner` sees it (so it takes no part in the global-norm clipping, and a
    non-finite gradient there cannot reach the other modules' updates), and its update is
    exactly zero (also when restored optimizer moments would move it). The state is `inner`'s
    own, so checkpoints restore whatever the factors."""
    if not scales:
        return inner
    frozen = frozen_modules(scales)

    def zero(tree):
        return jax.tree_util.tree_map(jnp.zeros_like, tree)

    def update(updates, state, params=None, **extra_args):
        unknown = sorted(set(scales) - set(updates))
        if unknown:
            raise ValueError(f"module_lr_scales names {', '.join(unknown)}, not modules of this "
                             f"model ({', '.join(sorted(updates))})")
        updates = {name: zero(tree) if name in frozen else tree for name, tree in updates.items()}
        updates, state = inner.update(updates, state, params, **extra_args)
        return {name: zero(tree) if name in frozen else jax.tree_util.tree_map(
                    lambda u, f=scales.get(name, 1.0): u * f, tree)
                for name, tree in updates.items()}, state
    return optax.GradientTransformationExtraArgs(inner.init, update)


def make_optimizer(config) -> optax.GradientTransformationExtraArgs:
    """Global-norm clipping, Adam on `learning_rate_schedule`, a learning-rate halving when
    the loss plateaus, and per-module update factors (`module_lr_scales`).

    With `config.skip_nonfinite_updates`, the chain is wrapped in `optax.apply_if_finite`: a
    step whose gradients hold a NaN or an infinity leaves parameters and optimizer state
    unchanged (counted in the `nonfinite_updates` metric); a run of
    `MAX_CONSECUTIVE_NONFINITE` such steps lets the non-finite update through, so the loop
    stops on it rather than skipping forever.
    """
    tx = optax.chain(
        optax.clip_by_global_norm(config.grad_clip_norm),
        optax.adam(learning_rate_schedule(config)),
        optax.contrib.reduce_on_plateau(
            factor=config.plateau_factor, patience=config.plateau_patience,
            cooldown=config.plateau_cooldown, accumulation_size=config.plateau_accumulation_size,
            rtol=config.plateau_rtol),
    )
    tx = with_module_update_scales(tx, module_lr_scales(config))
    if config.get("skip_nonfinite_updates", False):
        tx = optax.apply_if_finite(tx, max_consecutive_errors=MAX_CONSECUTIVE_NONFINITE)
    return tx


MAX_CONSECUTIVE_NONFINITE = 20
PLATEAU_STATE = 2  # position of reduce_on_plateau's state in the chain


def _chain_state(opt_state):
    """The chain's state inside an optional `apply_if_finite` wrapper."""
    return getattr(opt_state, "inner_state", opt_state)


class NonFiniteLoss(FloatingPointError):
    """The training loss or the gradient norm became NaN or infinite."""


class TrainingStopped(Exception):
    """The run was asked to stop (SIGTERM or SIGINT) and saved a checkpoint at the step it had
    reached; the same command resumes from it."""

    def __init__(self, step: int, total_steps: int, workdir: str, signal_name: str):
        self.step, self.signal_name = step, signal_name
        self.exit_status = 128 + signal.Signals[signal_name].value
        super().__init__(
            f"stopped by {signal_name} after step {step} of {total_steps}: checkpoint {step} "
            f"saved in {workdir}; the same command resumes from it")


class StopSignals:
    """Turns SIGTERM and SIGINT into a request to stop at the end of the current step.

    SIGTERM is how schedulers announce a preemption (Slurm before its time limit, Kubernetes,
    preemptible cloud VMs, a few seconds to tens of seconds ahead) and how `kill` and a stopped
    campaign (`results/campaign/campaign.sh`) end a run; SIGINT is Ctrl-C. Either one asks the
    run to finish its step, save a checkpoint there and end (`TrainingStopped`), so that no step
    since the last periodic checkpoint is lost. A second SIGINT while the first is pending
    interrupts at once (KeyboardInterrupt), for a person who will not wait for the save.

    Several processes must stop at the same step, as they save together. There SIGTERM to any
    of them is JAX's preemption notice (`jax.distributed` installs the handler): the processes
    agree on a step (`multihost_utils.reached_preemption_sync_point`, asked at every step), and
    all save at it. The service counts steps from 1 at the start of this job (a notice before
    the first step asks to stop at 1), so it is asked with the steps counted from `start_step`,
    where every process resumed. SIGINT keeps its default there (an immediate interrupt), as
    does SIGTERM when JAX's preemption service is switched off. Handlers are installed only
    from the main thread (Python allows no other), and the previous ones come back on exit."""

    def __init__(self, start_step: int = 0):
        self.start_step = start_step
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        signals = (signal.SIGTERM, signal.SIGINT) if jax.process_count() == 1 else ()
        for number in signals:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame) -> None:
        if number == signal.SIGINT and self.received == "SIGINT":
            raise KeyboardInterrupt
        self.received = self.received or signal.Signals(number).name

    def requested(self, step: int) -> str | None:
        """The signal that asks to stop at `step` (None: go on). On several processes every
        process must ask at every step, with the same step numbers."""
        if jax.process_count() > 1:
            if jax_distributed.global_state.preemption_sync_manager is None:
                return None  # the preemption service is off: SIGTERM ends the process
            reached = multihost_utils.reached_preemption_sync_point(step - self.start_step)
            return "SIGTERM" if reached else None
        return self.received


def nonfinite_window(means: dict, *, skipping: bool, skipped: int, steps: int) -> str:
    """What went non-finite in a logging window ("" when the run may go on).

    A skipped step still reports its non-finite loss; only a window in which every step was
    non-finite (or any, without skipping) stops the run. A non-finite gradient norm with a finite
    loss stops it too: clipping by an infinite norm makes the updates zero or NaN, so the run can
    no longer learn (a Testolina run at lr 1e-3 went on for 470 such steps with a finite loss:
    results/campaign/README.md, "The other divergences at lr 1e-3")."""
    if skipping and skipped < steps:
        return ""
    return " and ".join(f"the {label} became {means[name]}"
                        for name, label in (("loss", "training loss"),
                                            ("grad_norm", "gradient norm"))
                        if name in means and not np.isfinite(means[name]))


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def targets_for(model, batch, target: str):
    """{output name: target image in [0, 1]} for a model's outputs."""
    noisy = batch["noisy"].astype(jnp.float32) / 255.0
    clean = batch["clean"].astype(jnp.float32) / 255.0
    if model.kind == "jicd":
        return {"denoised": clean, "noisy_reconstruction": noisy}
    images = {"clean": clean, "noisy": noisy}
    if target == "teacher":
        images["teacher"] = batch["teacher"].astype(jnp.float32)
    return {model.outputs[0]: images[target]}


def loss_fn(params, model, batch, rng, *, lmbda: float, noisy_weight: float, target: str,
            train: bool = True):
    x = batch["noisy"].astype(jnp.float32) / 255.0
    # A denoiser told the noise level (FFDNet) gets each image's, in [0, 1] units.
    told = {"noise_level": batch["noise_level"] / 255.0} if takes_noise_level(model) else {}
    out = model.apply({"params": params}, x, train=train, rngs={"noise": rng}, **told)
    return rate_distortion_loss(out, targets_for(model, batch, target), lmbda=lmbda,
                                noisy_weight=noisy_weight)


def train_step(state: TrainState, batch, rng, *, model, tx, lmbda: float, noisy_weight: float,
               target: str, schedule=None, frozen: frozenset[str] = frozenset()):
    """One optimizer step. Pure: the step's randomness is fold_in(rng, state.step).

    The gradient is taken only with respect to the modules not `frozen`: the frozen modules
    (factor 0 in `module_lr_scales`) enter the loss as constants, so the step computes no
    gradient for them and backpropagates only as far as the trained modules need (fine-tuning
    JICD's noisy-reconstruction synthesis alone skips the backward pass of the analysis, the
    hyperprior and the base synthesis). Their gradient is exactly zero, in the updates and in
    `grad_norm`. `schedule` gives the learning rate at a global step, for the metric."""
    step_rng = jax.random.fold_in(rng, state.step)
    fixed = {name: tree for name, tree in state.params.items() if name in frozen}

    def loss_of_trained(trained):
        return loss_fn({**fixed, **trained}, model, batch, step_rng, lmbda=lmbda,
                       noisy_weight=noisy_weight, target=target)

    trained = {name: tree for name, tree in state.params.items() if name not in frozen}
    (loss, metrics), grads = jax.value_and_grad(loss_of_trained, has_aux=True)(trained)
    grads = dict(grads, **jax.tree_util.tree_map(jnp.zeros_like, fixed))
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
    metrics["learning_rate"] = _chain_state(opt_state)[PLATEAU_STATE].scale * (
        1.0 if schedule is None else schedule(state.step))
    if hasattr(opt_state, "total_notfinite"):
        metrics["nonfinite_updates"] = opt_state.total_notfinite.astype(jnp.float32)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def compile_train_step(model, tx, config, mesh: Mesh, state: TrainState):
    """jit of `train_step` with explicit shardings and the state donated."""
    replicated = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    state_sharding = jax.tree_util.tree_map(lambda _: replicated, state)
    schedule, init_step = learning_rate_schedule(config), config.get("init_step", 0)
    step = functools.partial(train_step, model=model, tx=tx, lmbda=rate_lambda(config),
                             noisy_weight=config.noisy_weight, target=config.target,
                             # The schedule counts the optimizer's steps (global - init_step).
                             schedule=lambda global_step: schedule(global_step - init_step),
                             frozen=frozen_modules(module_lr_scales(config)))
    return jax.jit(step, in_shardings=(state_sharding, data, replicated),
                   out_shardings=(state_sharding, replicated), donate_argnums=(0,))


def compile_metric_sum(metrics):
    """The compiled `sums + metrics` for metric trees like `metrics` (the step's output).

    The loop compiles it with its first step, so no later step compiles anything (an eager
    `jnp.add` would compile its own program at the second step). Lowering from the metrics'
    own shapes and shardings runs nothing and moves nothing.
    """
    add = jax.jit(lambda a, b: jax.tree_util.tree_map(jnp.add, a, b))
    return add.lower(metrics, metrics).compile()


def create_train_state(config, model, tx, rng) -> TrainState:
    params = init_params(model, rng, (1, config.crop_size, config.crop_size, 3))
    if config.init_from:
        params = load_init_params(config.init_from, params)
    # A warm restart numbers its steps on from init_step (`learning_rate_schedule`).
    return TrainState(step=jnp.asarray(config.get("init_step", 0), jnp.int32), params=params,
                      opt_state=jax.jit(tx.init)(params))


def load_init_params(path: str, like):
    """Parameters of another model (the lambda ladder's previous rate point), from a checkpoint
    or a shipped model given as zoo:NAME:RATE_POINT (zoo:NAME for a denoiser; its weights as
    shipped); the tree must match this model's exactly."""
    params, _, step = restore_params(path)
    got = jax.tree_util.tree_structure(params)
    want = jax.tree_util.tree_structure(like)
    if got != want:
        raise ValueError(f"init_from {path}: its parameters do not match this model's "
                         "(different model kind or sizes)")
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(like)):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"init_from {path}: parameter shape {np.shape(a)} != {np.shape(b)}")
    logging.info("initialized parameters from %s (step %d)", path, step)
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, b.dtype), params, like)


# ----------------------------------------------------------------------------- loop

class MetricWindow:
    """The training metrics of the steps since the last logging step, summed on the devices.

    `add` sums a step's metrics with one compiled program (compiled with the first step, so no
    later step compiles anything; an eager `jnp.add` would compile its own program at the
    second step) and reads nothing from the devices; `means` reads the sums once, divides by the
    steps, adds the throughput and the share of the time spent waiting for input, and starts a
    new window. `nonfinite_updates` (a running total of skipped steps) is reported as the
    total; `skipped` is how many of the window's steps were skipped."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self._add = None
        self._nonfinite_total = 0
        self._reset()

    def _reset(self) -> None:
        self._sums = None
        self._last = None
        self.steps = 0
        self.skipped = 0
        self.input_wait = 0.0
        self._start = time.perf_counter()

    def add(self, metrics, input_wait: float) -> None:
        if self._add is None:
            self._add = compile_metric_sum(metrics)
        self._sums = metrics if self._sums is None else self._add(self._sums, metrics)
        self._last = metrics
        self.steps += 1
        self.input_wait += input_wait

    def means(self) -> dict:
        elapsed = time.perf_counter() - self._start
        means = {k: float(v) / self.steps for k, v in jax.device_get(self._sums).items()}
        skipped = 0
        if "nonfinite_updates" in means:
            total = int(jax.device_get(self._last["nonfinite_updates"]))
            skipped, self._nonfinite_total = total - self._nonfinite_total, total
            means["nonfinite_updates"] = float(total)
        means["steps_per_second"] = self.steps / elapsed
        means["images_per_second"] = self.steps * self.batch_size / elapsed
        means["input_wait_fraction"] = self.input_wait / elapsed
        if "bpp_base" in means:
            means["bpp_denoised_stream"] = means["bpp_base"] + means.get("bpp_side", 0.0)
        steps = self.steps
        self._reset()
        self.steps_read, self.skipped = steps, skipped
        return means


def _summary_writer(workdir: str):
    return tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))


def _write_summaries(writer, step: int, metrics: dict, prefix: str = "train") -> None:
    with writer.as_default(step=step):
        for k, v in metrics.items():
            tf.summary.scalar(f"{prefix}/{k}", v)
    writer.flush()


def _data_state_path(workdir: str, step: int) -> str:
    """The tf.data iterator state of this process; it holds only this process's shard, so it is
    named after the process count too (a job resumed on another count restarts the data order)."""
    return os.path.join(workdir, "data_state", str(step),
                        f"process_{jax.process_index()}_of_{jax.process_count()}")


def _prune_data_states(workdir: str, kept_steps) -> None:
    """Removes the iterator states of checkpoints the manager no longer keeps (process 0)."""
    root = os.path.join(workdir, "data_state")
    if not tf.io.gfile.isdir(root):
        return
    kept = {str(step) for step in kept_steps}
    for name in tf.io.gfile.listdir(root):
        name = name.rstrip("/")
        if name.isdigit() and name not in kept:
            tf.io.gfile.rmtree(os.path.join(root, name))


def _teacher_fn(config, mesh: Mesh):
    """The JDC teacher: a trained denoiser checkpoint as a jitted function from the global noisy
    uint8 batch to its denoised image in [0, 1], sharded like the batch. It runs on the devices,
    so the loop never waits for it on the host."""
    teacher, params, _ = restore_model(config.teacher_checkpoint, kinds=("denoiser",))

    @functools.partial(jax.jit, out_shardings=NamedSharding(mesh, P("data")))
    def run(params, noisy_uint8):
        x = noisy_uint8.astype(jnp.float32) / 255.0
        return jnp.clip(teacher.apply({"params": params}, x)["denoised"], 0.0, 1.0)
    return functools.partial(run, replicate(params, mesh))


class _Reporter:
    """Progress for a person: lines on stdout (process 0 only), or a tqdm bar when stdout is a
    terminal, with the same lines printed above it."""

    def __init__(self, is_chief: bool, start_step: int, total_steps: int):
        self.is_chief = is_chief
        self.bar = None
        if is_chief and sys.stdout.isatty():
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step",
                            dynamic_ncols=True, file=sys.stdout)

    def line(self, text: str) -> None:
        if not self.is_chief:
            return
        logging.info("%s", text)
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def summarize(self, metrics: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(_progress_line(metrics, short=True), refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def keep_warm_restart(config: ml_collections.ConfigDict, workdir: str) -> None:
    """A run resumed from its own checkpoints stays the warm restart it began as.

    A warm restart (`init_step` > 0) counts its learning-rate schedule from init_step, and its
    restored optimizer counts from there; resumed without it, the schedule would restart from
    its peak. So when `workdir` holds checkpoints of a run whose saved config.json has an
    init_step, a config without one takes it (and its init_from) from there; a different
    init_step is refused."""
    saved_path = os.path.join(workdir, "config.json")
    if not (tf.io.gfile.exists(saved_path) and tf.io.gfile.glob(
            os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR, "[0-9]*"))):
        return
    with tf.io.gfile.GFile(saved_path) as file:
        saved = json.loads(file.read())
    saved_step, given_step = saved.get("init_step", 0), config.get("init_step", 0)
    if not saved_step or given_step == saved_step:
        return
    if given_step:
        raise ValueError(f"{workdir} holds a warm restart from step {saved_step}; "
                         f"init_step {given_step} would count its schedule from another step "
                         f"(resume it without init_step, or train in another workdir)")
    config.init_step, config.init_from = saved_step, saved["init_from"]


def _finished_run_metrics(workdir: str, start_step: int, total_steps: int) -> dict | None:
    """The saved final metrics of a run resumed at or past its last step (None when it has
    steps left or none were saved), with "checkpoint" pointing into `workdir` as it is now."""
    path = os.path.join(workdir, "final_metrics.json")
    if start_step < total_steps or not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as file:
        metrics = json.loads(file.read())
    metrics["checkpoint"] = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR, str(start_step))
    if "integer_entropy" in metrics:
        metrics["integer_entropy"] = os.path.join(metrics["checkpoint"], INTEGER_ENTROPY_FILE)
    return metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the configured model in `workdir`; returns the last logged metrics (plus
    `checkpoint` and, when configured, `eval_*` / `val_*` metrics)."""
    keep_warm_restart(config, str(checkpoints.local_or_remote_path(workdir)))
    validate_config(config)
    # A source that cannot be read here (TFDS data neither prepared nor downloadable) fails
    # now, in seconds, before the work directory is created or written to.
    input_pipeline.check_source_available(config.data_source, config.data_dir or None)
    workdir = str(checkpoints.local_or_remote_path(workdir))  # local, or gs://... on clouds
    tf.io.gfile.makedirs(workdir)
    is_chief = jax.process_index() == 0
    if is_chief:
        checkpoints.write_json_atomic(os.path.join(workdir, "config.json"), config.to_dict())

    model = model_from_config(config)
    tx = make_optimizer(config)
    mesh = make_mesh()
    num_devices = mesh.devices.size
    if config.batch_size % num_devices:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{num_devices} devices")
    if config.batch_size % jax.process_count():
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{jax.process_count()} processes")
    local_batch = config.batch_size // jax.process_count()
    topology = (f"{config.model} model on {num_devices} {jax.devices()[0].platform} device(s), "
                f"{jax.process_count()} process(es); batch {config.batch_size} of "
                f"{config.crop_size}x{config.crop_size} ({local_batch} per process)")

    rng = jax.random.key(config.seed)
    init_rng, step_rng = jax.random.split(rng)
    state = replicate(create_train_state(config, model, tx, init_rng), mesh)
    step_rng = replicate(step_rng, mesh)
    manager = checkpoints.checkpoint_manager(
        os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR),
        max_to_keep=config.keep_checkpoints, remove_partial_steps=True)

    dataset = input_pipeline.create_train_dataset(
        config.data_source, config.noise, batch_size=local_batch, crop_size=config.crop_size,
        seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), clean_fraction=config.clean_fraction,
        msssim_min=config.msssim_min or None, shuffle_buffer=config.shuffle_buffer,
        data_dir=config.data_dir or None, with_noise_level=takes_noise_level(model))
    iterator = iter(dataset)
    data_checkpoint = tf.train.Checkpoint(iterator=iterator)

    notes = []
    latest = manager.latest_step()
    if latest is not None:
        state = checkpoints.restore_state(manager, latest, state)
        data_path = _data_state_path(workdir, latest)
        if tf.io.gfile.exists(data_path + ".index"):
            data_checkpoint.read(data_path).assert_consumed()
            notes.append(f"resumed from step {latest} in {workdir}")
        else:
            notes.append(f"resumed from step {latest} in {workdir}; no input pipeline state "
                         f"for {jax.process_count()} process(es): the data order restarts")
    elif config.init_from:
        notes.append(f"initialized from {config.init_from}")

    start_step = int(jax.device_get(state.step))
    reporter = _Reporter(is_chief, start_step, config.num_train_steps)
    reporter.line(topology)
    for note in notes:
        reporter.line(note)
    finished = _finished_run_metrics(workdir, start_step, config.num_train_steps)
    if finished is not None:
        # Resumed with all its steps done (a queue started again): nothing trains, nothing is
        # loaded for evaluation or summaries, and the final metrics of the run that trained
        # them stay as they were.
        manager.close()
        reporter.line(f"the run has all its {config.num_train_steps} steps; its final metrics "
                      f"are kept")
        reporter.close()
        return finished

    compiled_step = compile_train_step(model, tx, config, mesh, state)
    teacher = _teacher_fn(config, mesh) if config.target == "teacher" else None
    # (prefix, images): the held-out evaluation set, and the validation set choices are made on.
    # Only process 0 evaluates (on its local copy of the parameters).
    eval_sets = []
    for prefix, folder in (("eval", config.eval_folder),
                           ("val", config.get("validation_folder", ""))):
        if is_chief and folder and os.path.isdir(folder):
            eval_sets.append((prefix, images.load_folder(folder, config.eval_max_images)))

    writer = _summary_writer(workdir) if is_chief else None
    last_metrics: dict = {}
    window = MetricWindow(config.batch_size)

    def save(step: int) -> None:
        try:
            manager.save(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeSave(state), config=ocp.args.JsonSave(config.to_dict())),
                force=True)
            data_checkpoint.write(_data_state_path(workdir, step))
        except (OSError, ValueError, RuntimeError, tf.errors.OpError) as error:
            reporter.close()
            latest = manager.latest_step()
            try:  # let orbax's writer threads end before the process does
                manager.close()
            except Exception:  # noqa: BLE001 - the write error is the one to report
                pass
            raise checkpoints.CheckpointWriteError(step, workdir, latest, error) from error
        if is_chief:
            _prune_data_states(workdir, manager.all_steps())

    # SIGTERM (a preemption notice) or SIGINT: the step ends, is saved, and the run stops. One
    # that comes after the last step changes nothing: the run ends as it would have (its final
    # checkpoint, calibration and metrics), not cut short between them.
    with StopSignals(start_step) as stop:
        for step in range(start_step + 1, config.num_train_steps + 1):
            first = step == start_step + 1
            if first:
                reporter.line(f"step {step}: compiling the training step...")
                compile_start = time.perf_counter()
            # No implicit transfer outside logging, evaluation and checkpoint steps: the batch
            # goes to the devices explicitly, and the metrics stay there until a logging step
            # reads them.
            with jax.transfer_guard("disallow"):
                t0 = time.perf_counter()
                batch = {k: v.numpy() for k, v in next(iterator).items()}
                input_wait = time.perf_counter() - t0
                inputs = global_batch(batch, mesh)
                if teacher is not None:
                    inputs["teacher"] = teacher(inputs["noisy"])
                state, metrics = compiled_step(state, inputs, step_rng)
                window.add(metrics, input_wait)
            if first:
                # The one read outside the logging steps: a person sees the run work at once.
                first_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                reporter.line(f"step {step}: compiled and ran in "
                              f"{time.perf_counter() - compile_start:.1f} s; "
                              f"{_progress_line(first_metrics)}")
            reporter.advance()
            if step % config.log_every_steps == 0 or step == config.num_train_steps:
                # The window ends when its last step has finished: the metrics can be read before
                # the step's parameter update is done (XLA:CPU readies outputs one by one), which
                # made a short window's steps/s and input-wait share look many times too good.
                jax.block_until_ready(state)
                means = window.means()
                diverged = nonfinite_window(means, skipping=config.get("skip_nonfinite_updates",
                                                                        False),
                                            skipped=window.skipped, steps=window.steps_read)
                if diverged:
                    reporter.close()
                    raise NonFiniteLoss(
                        f"{diverged} between steps {step - window.steps_read + 1} and {step}; the "
                        f"checkpoints in {workdir} hold the last finite state. Lower learning_rate "
                        f"or grad_clip_norm, or set skip_nonfinite_updates=True")
                last_metrics = means
                reporter.line(f"step {step}/{config.num_train_steps} {_progress_line(means)}")
                reporter.summarize(means)
                if is_chief:
                    _write_summaries(writer, step, means)
            if step % config.eval_every_steps == 0 or step == config.num_train_steps:
                for prefix, held_out in eval_sets:
                    eval_metrics = evaluate_images(model, local_copy(state.params), held_out,
                                                   config.eval_noise or config.noise, config.seed,
                                                   config.target)
                    last_metrics.update({f"{prefix}_{k}": v for k, v in eval_metrics.items()})
                    reporter.line(f"{prefix} step {step}: {_progress_line(eval_metrics)}")
                    _write_summaries(writer, step, eval_metrics, prefix=prefix)
            if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
                save(step)
            signal_name = stop.requested(step)
            if signal_name and step < config.num_train_steps:
                if manager.latest_step() != step:
                    save(step)
                manager.wait_until_finished()
                manager.close()
                if writer is not None:
                    writer.flush()
                stopped = TrainingStopped(step, config.num_train_steps, workdir, signal_name)
                reporter.line(str(stopped))
                reporter.close()
                raise stopped
        if manager.latest_step() is None or manager.latest_step() < config.num_train_steps:
            save(int(jax.device_get(state.step)))
        manager.wait_until_finished()
        manager.close()
        last_metrics["checkpoint"] = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR,
                                                  str(manager.latest_step()))
        if is_chief and config.get("integer_calibration", ""):
            last_metrics.update(_calibrate_integer_entropy(
                config, model, local_copy(state.params), last_metrics["checkpoint"], reporter))
        reporter.close()
        if is_chief:
            checkpoints.write_json_atomic(os.path.join(workdir, "final_metrics.json"),
                                          last_metrics)
    return last_metrics


def _calibrate_integer_entropy(config, model, params, step_directory: str,
                               reporter: _Reporter) -> dict:
    """Gives the final checkpoint (`params`, saved in `step_directory`) its integer entropy
    network (`jdc_jax.integer`), so that its codec writes files any platform decodes, and
    returns {"integer_entropy": file} (a model without a Gaussian conditional: {}). A network
    already there (a finished run started again) is kept. The calibration reads the parameters
    in memory, on this process alone (reading the checkpoint back would be a collective restore
    on several processes); a local checkpoint also gets its coding tables stored. A calibration
    that fails leaves the checkpoint as it is (it writes the float path): the error and the
    command that retries it are printed and returned under "integer_entropy_error"."""
    if config.model not in GAUSSIAN_CONDITIONAL_KINDS:
        return {}
    target = os.path.join(step_directory, INTEGER_ENTROPY_FILE)
    if tf.io.gfile.exists(target):
        return {"integer_entropy": target}
    started = time.perf_counter()
    try:
        tables = (None, None) if checkpoints.is_remote(step_directory) else \
            load_or_build_tables(os.path.join(step_directory, TABLES_DIRECTORY), model, params)
        codec = Codec(model, params, side_tables=tables[0], latent_tables=tables[1],
                      model_kind=config.model, config=config.to_dict())
        integer = integer_calibration.calibrate_codec(codec, config.integer_calibration,
                                                      config.noise or None)
        checkpoints.write_file_atomic(target, integer.to_bytes())
    except (ValueError, OSError, integer_calibration.AccumulatorOverflow) as error:
        message = (f"the integer entropy network could not be calibrated "
                   f"({' '.join(str(error).split())}); the checkpoint writes the float path "
                   f"until `python -m jdc_jax.integer calibrate --checkpoint {step_directory}` "
                   f"succeeds")
        reporter.line(f"warning: {message}")
        logging.warning("%s", message)
        return {"integer_entropy_error": message}
    reporter.line(f"integer entropy network calibrated on {config.integer_calibration} in "
                  f"{time.perf_counter() - started:.1f} s: {target}")
    return {"integer_entropy": target}


def _progress_line(metrics: dict, short: bool = False) -> str:
    order = ("loss", "bpp", "bpp_denoised_stream", "bpp_side", "bpp_base", "bpp_enhancement",
             "psnr_denoised", "psnr_noisy_reconstruction", "psnr_reconstruction",
             "psnr_noisy_input", "learning_rate", "grad_norm", "steps_per_second",
             "images_per_second", "input_wait_fraction", "nonfinite_updates")
    if short:
        order = ("loss", "bpp", "psnr_denoised", "psnr_reconstruction")
    parts = [f"{k}={metrics[k]:.4g}" for k in order if k in metrics]
    return " ".join(parts)
