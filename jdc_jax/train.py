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
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jdc_jax import checkpoints
from jdc_jax.config_validation import validate_config
from jdc_jax.images import pad_to_multiple
from jdc_jax.models.registry import init_params, model_from_config
from jdc_jax.models.losses import psnr_from_mse, rate_distortion_loss, rate_lambda, stream_bits

def learning_rate_schedule(config) -> optax.Schedule:
    """The learning rate before plateau reductions, by step.

    A linear warm-up from 0 over `warmup_steps`, then `lr_schedule`: "constant" keeps
    `learning_rate`; "cosine" decays it to `learning_rate * final_lr_fraction` at
    `num_train_steps` (Loshchilov & Hutter 2017), the usual choice for a fixed step budget.
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
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def parse_module_lr_scales(spec: str) -> dict[str, float]:
    """{top-level module: factor} from "g_s_full=0.1,h_s=0.5" ("" gives {})."""
    scales = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = -1.0
        if not sep or not name or not factor > 0:
            raise ValueError(f"module_lr_scales: expected MODULE=FACTOR with FACTOR > 0, got "
                             f"{item!r}")
        scales[name] = factor
    return scales


def with_module_update_scales(inner: optax.GradientTransformationExtraArgs,
                              scales: dict[str, float]) -> optax.GradientTransformationExtraArgs:
    """`inner`, with the updates of each named top-level module multiplied by its factor.

    Adam's step is invariant to the scale of a gradient, so a module whose loss term is weighted
    down (JICD's noisy-reconstruction synthesis, weight w = 0.05) still moves by about the
    learning rate per step, on a gradient signal 1/w times weaker. Scaling its updates restores
    the proportion the loss weights intend. The state is `inner`'s own, so checkpoints restore
    whatever the factors."""
    if not scales:
        return inner

    def update(updates, state, params=None, **extra_args):
        updates, state = inner.update(updates, state, params, **extra_args)
        unknown = sorted(set(scales) - set(updates))
        if unknown:
            raise ValueError(f"module_lr_scales names {', '.join(unknown)}, not modules of this "
                             f"model ({', '.join(sorted(updates))})")
        return {name: jax.tree_util.tree_map(lambda u, f=scales.get(name, 1.0): u * f, tree)
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
    tx = with_module_update_scales(tx, parse_module_lr_scales(config.get("module_lr_scales", "")))
    if config.get("skip_nonfinite_updates", False):
        tx = optax.apply_if_finite(tx, max_consecutive_errors=MAX_CONSECUTIVE_NONFINITE)
    return tx


MAX_CONSECUTIVE_NONFINITE = 20
PLATEAU_STATE = 2  # position of reduce_on_plateau's state in the chain


def _chain_state(opt_state):
    """The chain's state inside an optional `apply_if_finite` wrapper."""
    return getattr(opt_state, "inner_state", opt_state)


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite."""


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
    out = model.apply({"params": params}, x, train=train, rngs={"noise": rng})
    return rate_distortion_loss(out, targets_for(model, batch, target), lmbda=lmbda,
                                noisy_weight=noisy_weight)


def train_step(state: TrainState, batch, rng, *, model, tx, lmbda: float, noisy_weight: float,
               target: str, schedule=None):
    """One optimizer step. Pure: the step's randomness is fold_in(rng, state.step)."""
    step_rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, metrics), grads = grad_fn(state.params, model, batch, step_rng, lmbda=lmbda,
                                     noisy_weight=noisy_weight, target=target)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
    metrics["learning_rate"] = _chain_state(opt_state)[PLATEAU_STATE].scale * (
        1.0 if schedule is None else schedule(state.step))
    if hasattr(opt_state, "total_notfinite"):
        metrics["nonfinite_updates"] = opt_state.total_notfinite.astype(jnp.float32)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def compile_train_step(model, tx, config, mesh: Mesh, state: TrainState):
    """jit of `train_step` with explicit shardings and the state donated."""
    replicated = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    state_sharding = jax.tree_util.tree_map(lambda _: replicated, state)
    step = functools.partial(train_step, model=model, tx=tx, lmbda=rate_lambda(config),
                             noisy_weight=config.noisy_weight, target=config.target,
                             schedule=learning_rate_schedule(config))
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


def replicate(tree, mesh: Mesh):
    """Global jax.Arrays replicated over `mesh` from this process's values (arrays, typed PRNG
    keys). Every process passes its own, equal copy; nothing is sent between processes."""
    sharding = NamedSharding(mesh, P())

    def put(value):
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(value)),
                                            impl=jax.random.key_impl(value))
        host = np.asarray(value)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree_util.tree_map(put, tree)


def local_copy(tree):
    """This process's first copy of replicated global arrays, as single-device arrays."""
    return jax.tree_util.tree_map(lambda value: value.addressable_data(0), tree)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Builds global jax.Arrays from this process's slice of the batch (an explicit transfer)."""
    sharding = NamedSharding(mesh, P("data"))
    # With several processes, JAX copies the slices through a path that a "disallow" transfer
    # guard counts as implicit; this copy is the intended one.
    with jax.transfer_guard_host_to_device("allow"):
        return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
                for k, v in local_batch.items()}


def create_train_state(config, model, tx, rng) -> TrainState:
    params = init_params(model, rng, (1, config.crop_size, config.crop_size, 3))
    if config.init_from:
        params = load_init_params(config.init_from, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=jax.jit(tx.init)(params))


def load_init_params(path: str, like):
    """Parameters of another model (the lambda ladder's previous rate point); the tree must
    match this model's exactly."""
    params, _, step = checkpoints.restore_params(path)
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


# ----------------------------------------------------------------------------- evaluation

def evaluate_folder(model, params, images, noise_spec: str, seed: int,
                    target: str = "clean") -> dict:
    """Mean metrics over held-out images with rounding quantization (estimated rates).

    `images`: list of (name, uint8 HWC clean image). Noise is synthesized per image from a
    seed derived from its file name, so every evaluation sees the same noisy inputs."""
    from jdc_jax import noise as noise_lib

    spec = noise_lib.parse_noise_spec(noise_spec)
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
    sums: dict[str, float] = {}
    for name, clean in images:
        noisy = noise_lib.noisy_for_file(clean, name, spec, seed)
        h, w = clean.shape[:2]
        x = pad_to_multiple(noisy, 64)[None].astype(np.float32) / 255.0
        out = jax.device_get(apply(params, x))
        values = {}
        for stream, bits in stream_bits(out.get("likelihoods", {})).items():
            values[f"bpp_{stream}"] = float(bits[0]) / (h * w)
        if values:
            values["bpp"] = sum(values.values())
        refs = {"denoised": clean, "noisy_reconstruction": noisy,
                "reconstruction": noisy if target == "noisy" else clean}
        for key in model.outputs:
            img = np.clip(np.round(out[key][0, :h, :w] * 255.0), 0, 255)
            err = np.mean((img - refs[key].astype(np.float64)) ** 2)
            values[f"psnr_{key}"] = float(psnr_from_mse(err, 255.0))
        values["psnr_noisy_input"] = float(psnr_from_mse(
            np.mean((noisy.astype(np.float64) - clean) ** 2), 255.0))
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: v / max(len(images), 1) for k, v in sums.items()}


# ----------------------------------------------------------------------------- loop

def _summary_writer(workdir: str):
    import tensorflow as tf
    return tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))


def _write_summaries(writer, step: int, metrics: dict, prefix: str = "train") -> None:
    import tensorflow as tf
    with writer.as_default(step=step):
        for k, v in metrics.items():
            tf.summary.scalar(f"{prefix}/{k}", v)
    writer.flush()


def _data_state_path(workdir: str, step: int) -> str:
    """The tf.data iterator state of this process; it holds only this process's shard, so it is
    named after the process count too (a job resumed on another count restarts the data order)."""
    return os.path.join(workdir, "data_state", str(step),
                        f"process_{jax.process_index()}_of_{jax.process_count()}")


def _teacher_fn(config, mesh: Mesh):
    """The JDC teacher: a trained denoiser checkpoint as a jitted function from the global noisy
    uint8 batch to its denoised image in [0, 1], sharded like the batch. It runs on the devices,
    so the loop never waits for it on the host."""
    params, teacher_config, _ = checkpoints.restore_params(config.teacher_checkpoint)
    teacher = model_from_config(teacher_config)
    if teacher.kind != "denoiser":
        raise ValueError(f"teacher_checkpoint {config.teacher_checkpoint} holds a "
                         f"{teacher.kind!r} model, not a denoiser")

    @functools.partial(jax.jit, out_shardings=NamedSharding(mesh, P("data")))
    def run(params, noisy_uint8):
        x = noisy_uint8.astype(jnp.float32) / 255.0
        return jnp.clip(teacher.apply({"params": params}, x)["denoised"], 0.0, 1.0)
    return functools.partial(run, replicate(params, mesh))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the configured model in `workdir`; returns the last logged metrics (plus
    `checkpoint` and, when configured, `eval_*` metrics)."""
    import tensorflow as tf
    from jdc_jax import input_pipeline

    tf.config.set_visible_devices([], "GPU")
    validate_config(config)
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

    rng = jax.random.key(config.seed)
    init_rng, step_rng = jax.random.split(rng)
    state = replicate(create_train_state(config, model, tx, init_rng), mesh)
    step_rng = replicate(step_rng, mesh)
    manager = checkpoints.checkpoint_manager(
        os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR),
        max_to_keep=config.keep_checkpoints)

    dataset = input_pipeline.create_train_dataset(
        config.data_source, config.noise, batch_size=local_batch, crop_size=config.crop_size,
        seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), clean_fraction=config.clean_fraction,
        msssim_min=config.msssim_min or None, shuffle_buffer=config.shuffle_buffer,
        data_dir=config.data_dir or None)
    iterator = iter(dataset)
    data_checkpoint = tf.train.Checkpoint(iterator=iterator)

    latest = manager.latest_step()
    if latest is not None:
        restored = manager.restore(latest, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=state, restore_args=ocp.checkpoint_utils.construct_restore_args(state)),
            config=ocp.args.JsonRestore()))
        state = restored["state"]
        data_path = _data_state_path(workdir, latest)
        if tf.io.gfile.exists(data_path + ".index"):
            data_checkpoint.read(data_path).assert_consumed()
        else:
            logging.warning("no input pipeline state for step %d with %d processes: the data "
                            "order restarts", latest, jax.process_count())
        logging.info("resumed from step %d", latest)

    compiled_step = compile_train_step(model, tx, config, mesh, state)
    teacher = _teacher_fn(config, mesh) if config.target == "teacher" else None
    # (prefix, images): the held-out evaluation set, and the validation set choices are made on.
    eval_sets = []
    for prefix, folder in (("eval", config.eval_folder),
                           ("val", config.get("validation_folder", ""))):
        if folder and os.path.isdir(folder):
            images = input_pipeline.create_eval_images(folder)
            eval_sets.append((prefix, images[:config.eval_max_images]
                              if config.eval_max_images else images))

    writer = _summary_writer(workdir) if is_chief else None
    start_step = int(jax.device_get(state.step))
    last_metrics: dict = {}
    metric_sums = add_metrics = None
    nonfinite_total = 0
    window_start, window_steps, wait_time = time.perf_counter(), 0, 0.0

    def save(step: int) -> None:
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeSave(state), config=ocp.args.JsonSave(config.to_dict())),
            force=True)
        data_checkpoint.write(_data_state_path(workdir, step))

    for step in range(start_step + 1, config.num_train_steps + 1):
        # No implicit transfer outside logging, evaluation and checkpoint steps: the batch goes
        # to the devices explicitly, and the metrics stay there until a logging step reads them.
        with jax.transfer_guard("disallow"):
            t0 = time.perf_counter()
            batch = {k: v.numpy() for k, v in next(iterator).items()}
            wait_time += time.perf_counter() - t0
            inputs = global_batch(batch, mesh)
            if teacher is not None:
                inputs["teacher"] = teacher(inputs["noisy"])
            state, metrics = compiled_step(state, inputs, step_rng)
            if add_metrics is None:
                add_metrics = compile_metric_sum(metrics)
            metric_sums = metrics if metric_sums is None else add_metrics(metric_sums, metrics)
        window_steps += 1
        if step % config.log_every_steps == 0 or step == config.num_train_steps:
            means = {k: float(v) / window_steps for k, v in jax.device_get(metric_sums).items()}
            elapsed = time.perf_counter() - window_start
            skipped_in_window = 0
            if "nonfinite_updates" in means:  # a running total: its window mean is not wanted
                total = int(jax.device_get(metrics["nonfinite_updates"]))
                skipped_in_window, nonfinite_total = total - nonfinite_total, total
                means["nonfinite_updates"] = float(total)
            # A skipped step still reports its non-finite loss; only a window in which every
            # step was non-finite (or any, without skipping) stops the run.
            if not np.isfinite(means["loss"]) and (
                    not config.get("skip_nonfinite_updates", False)
                    or skipped_in_window >= window_steps):
                raise NonFiniteLoss(
                    f"the training loss became {means['loss']} between steps "
                    f"{step - window_steps + 1} and {step}; the checkpoints in {workdir} hold "
                    f"the last finite state. Lower learning_rate or grad_clip_norm, or set "
                    f"skip_nonfinite_updates=True")
            means["steps_per_second"] = window_steps / elapsed
            means["images_per_second"] = window_steps * config.batch_size / elapsed
            means["input_wait_fraction"] = wait_time / elapsed
            if "bpp_base" in means:
                means["bpp_denoised_stream"] = means["bpp_base"] + means.get("bpp_side", 0.0)
            last_metrics = means
            if is_chief:
                logging.info("step %d: %s", step, _progress_line(means))
                print(f"step {step}/{config.num_train_steps} {_progress_line(means)}",
                      flush=True)
                _write_summaries(writer, step, means)
            metric_sums, window_steps, wait_time = None, 0, 0.0
            window_start = time.perf_counter()
        if step % config.eval_every_steps == 0 or step == config.num_train_steps:
            for prefix, images in eval_sets:
                eval_metrics = evaluate_folder(model, local_copy(state.params), images,
                                               config.eval_noise or config.noise, config.seed,
                                               config.target)
                last_metrics.update({f"{prefix}_{k}": v for k, v in eval_metrics.items()})
                if is_chief:
                    print(f"{prefix} step {step}: {_progress_line(eval_metrics)}", flush=True)
                    _write_summaries(writer, step, eval_metrics, prefix=prefix)
        if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
            save(step)
    if manager.latest_step() is None or manager.latest_step() < config.num_train_steps:
        save(int(jax.device_get(state.step)))
    manager.wait_until_finished()
    manager.close()
    last_metrics["checkpoint"] = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR,
                                              str(manager.latest_step()))
    if is_chief:
        checkpoints.write_json_atomic(os.path.join(workdir, "final_metrics.json"), last_metrics)
    return last_metrics


def _progress_line(metrics: dict) -> str:
    order = ("loss", "bpp", "bpp_denoised_stream", "bpp_side", "bpp_base", "bpp_enhancement",
             "psnr_denoised", "psnr_noisy_reconstruction", "psnr_reconstruction",
             "psnr_noisy_input", "learning_rate", "grad_norm", "steps_per_second",
             "images_per_second", "input_wait_fraction",
             "nonfinite_updates")
    parts = [f"{k}={metrics[k]:.4g}" for k in order if k in metrics]
    return " ".join(parts)
