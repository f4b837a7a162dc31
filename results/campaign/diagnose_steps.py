"""Replays training steps from a checkpoint, one line of diagnostics per step.

    python results/campaign/diagnose_steps.py --workdir runs/diag/lr1e-3 --from_step 1000 \
        --steps 300 [--set learning_rate=3e-4 ...]

The run's own config, state, data order (the tf.data iterator saved with the checkpoint) and
step randomness are restored, so the steps are the ones the run took (with `--set`, the same
batches under changed settings). Per step it prints the loss, rate, PSNRs, the gradient norm of
each top-level module, the largest effective IGDN gamma, the entropy model's largest predicted
mean and scale, smallest scale and share of likelihoods at their bound, and the largest
|activation| at the output of every GDN / IGDN layer and of each analysis and synthesis
transform: enough to see which module a loss spike starts in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tensorflow as tf

from jdc_jax import checkpoints, input_pipeline, sharding, train
from jdc_jax.layers.gdn import GDN, from_reparametrized
from jdc_jax.models.registry import model_from_config


def restore(workdir: str, step: int, config, model, tx):
    state = train.create_train_state(config, model, tx, jax.random.split(
        jax.random.key(config.seed))[0])
    manager = checkpoints.checkpoint_manager(os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR))
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=state, restore_args=ocp.checkpoint_utils.construct_restore_args(state))))
    return restored["state"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--from_step", type=int, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--set", action="append", default=[],
                        help="FIELD=VALUE config override (parsed as JSON when possible)")
    args = parser.parse_args(argv)
    tf.config.set_visible_devices([], "GPU")
    config = ml_collections.ConfigDict(json.load(open(os.path.join(args.workdir,
                                                                   "config.json"))))
    for item in args.set:
        field, _, value = item.partition("=")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        setattr(config, field, value)
    model = model_from_config(config)
    tx = train.make_optimizer(config)
    state = restore(args.workdir, args.from_step, config, model, tx)
    step_rng = jax.random.split(jax.random.key(config.seed))[1]
    dataset = input_pipeline.create_train_dataset(
        config.data_source, config.noise, batch_size=config.batch_size,
        crop_size=config.crop_size, seed=config.seed, clean_fraction=config.clean_fraction,
        shuffle_buffer=config.shuffle_buffer)
    iterator = iter(dataset)
    tf.train.Checkpoint(iterator=iterator).read(os.path.join(
        args.workdir, "data_state", str(args.from_step), "process_0_of_1")).assert_consumed()
    lmbda = train.rate_lambda(config)

    def is_normalization(module, _):
        return isinstance(module, GDN) or type(module).__name__ in (
            "ChengSynthesis", "BalleSynthesis", "ChengAnalysis", "BalleAnalysis")

    def is_entropy_parameters(module, _):
        return type(module).__name__ == "GroupEntropyParameters"

    @jax.jit
    def diagnose(state, batch, rng):
        step_rng_ = jax.random.fold_in(rng, state.step)

        def loss(params):
            x = batch["noisy"].astype(jnp.float32) / 255.0
            out, captured = model.apply(
                {"params": params}, x, train=True, rngs={"noise": step_rng_},
                capture_intermediates=lambda m, n: is_normalization(m, n)
                or is_entropy_parameters(m, n), mutable=["intermediates"])
            value, metrics = train.rate_distortion_loss(
                out, train.targets_for(model, batch, config.target), lmbda=lmbda,
                noisy_weight=config.noisy_weight)
            return value, (metrics, captured["intermediates"], out["likelihoods"])

        (_, (metrics, captured, likelihoods)), grads = jax.value_and_grad(
            loss, has_aux=True)(state.params)
        activations, entropy = {}, {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(captured)[0]:
            name = jax.tree_util.keystr(path)
            if "parameters" in name:  # a latent group's entropy model
                if "'__call__'" not in name:  # (mean, scale) is __call__'s output
                    continue
                kind = "scale" if path[-1].idx == 1 else "mean"
                entropy[f"{kind}_max"] = jnp.maximum(entropy.get(f"{kind}_max", -jnp.inf),
                                                     jnp.max(jnp.abs(leaf)))
                if kind == "scale":
                    entropy["scale_min"] = jnp.minimum(entropy.get("scale_min", jnp.inf),
                                                       jnp.min(leaf))
            else:
                activations[name] = jnp.max(jnp.abs(leaf))
        # Share of latent elements whose likelihood sits at the bound (1e-9): their rate
        # gradient is the bound's straight-through one.
        bound = jnp.concatenate([jnp.ravel(v <= 1.001e-9) for v in
                                 jax.tree_util.tree_leaves(likelihoods)])
        entropy["at_bound"] = jnp.mean(bound)
        module_norms = {name: optax.tree.norm(tree) for name, tree in grads.items()}
        gammas = [jnp.max(from_reparametrized(leaf, 0.0, 2.0 ** -36))
                  for path, leaf in jax.tree_util.tree_flatten_with_path(state.params)[0]
                  if "igdn" in jax.tree_util.keystr(path) and path[-1].key == "gamma"]
        return metrics, activations, entropy, module_norms, jnp.max(jnp.stack(gammas))

    step = train.compile_train_step(model, tx, config, sharding.make_mesh(), state)
    for _ in range(args.steps):
        batch = {k: v.numpy() for k, v in next(iterator).items()}
        metrics, activations, entropy, norms, gamma = jax.device_get(
            diagnose(state, batch, step_rng))
        index = int(state.step) + 1
        state, _ = step(state, batch, step_rng)
        top = sorted(activations.items(), key=lambda kv: -kv[1])[:3]
        print(f"{index} loss={metrics['loss']:.4g} bpp={metrics['bpp']:.4f} "
              f"psnr={metrics.get('psnr_denoised', metrics.get('psnr_reconstruction')):.2f} "
              f"grad={' '.join(f'{k}:{float(v):.3g}' for k, v in norms.items())} "
              f"igdn_gamma_max={float(gamma):.3g} "
              f"entropy={' '.join(f'{k}:{float(v):.3g}' for k, v in entropy.items())} "
              f"act_max={' '.join(f'{k}:{float(v):.3g}' for k, v in top)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
