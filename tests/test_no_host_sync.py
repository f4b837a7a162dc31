"""Between logging steps, training never waits on the host for a device value and moves nothing
implicitly between host and devices.

Two probes. `jax.transfer_guard("disallow")` refuses implicit transfers; on XLA:CPU, though, a
device-to-host read is zero-copy and unguarded (only host-to-device is refused), so host reads
are also counted directly: every float()/int()/bool()/str()/.tolist()/jax.device_get of a
jax.Array goes through `ArrayImpl._value`, and np.asarray/np.array of one (which on CPU reads
the buffer without `_value`) are wrapped. The models inside the step are pure jitted functions,
so the tiny denoiser exercises the same step and loop code as every codec.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax._src.array import ArrayImpl
from jax.sharding import NamedSharding, PartitionSpec as P

from jdc_jax.models import registry
from jdc_jax import sharding, train
from jdc_jax.default_config import apply_smoke, get_config

HOST_TO_DEVICE_REFUSED = "Disallowed host-to-device transfer"


class HostReads:
    """Records, for every host read of a jax.Array, how many train steps had run before it."""

    def __init__(self, monkeypatch):
        self.steps_run = 0
        self.at_steps: list[int] = []
        value = ArrayImpl._value
        monkeypatch.setattr(ArrayImpl, "_value", property(self._recorded(value.fget)))
        for name in ("asarray", "array"):
            monkeypatch.setattr(np, name, self._recorded(getattr(np, name), only_jax=True))

    def _recorded(self, read, only_jax=False):
        def recorded(obj, *args, **kwargs):
            if not only_jax or isinstance(obj, jax.Array):
                self.at_steps.append(self.steps_run)
            return read(obj, *args, **kwargs)
        return recorded

    def count_steps(self, step_fn):
        def counted(*args):
            outputs = step_fn(*args)
            self.steps_run += 1
            return outputs
        return counted


def tiny_denoiser_config(**overrides):
    config = apply_smoke(get_config())
    config.model = "denoiser"
    config.lmbda = 1.0 / 255.0 ** 2
    config.denoiser_depth, config.denoiser_features = 3, 4
    config.crop_size, config.batch_size, config.shuffle_buffer = 64, 2, 4
    config.eval_folder = ""
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def host_batch(config):
    rng = np.random.default_rng(0)
    shape = (config.batch_size, config.crop_size, config.crop_size, 3)
    clean = rng.integers(0, 256, shape, dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 25, shape), 0, 255).astype(np.uint8)
    return {"noisy": noisy, "clean": clean}


def test_compiled_steps_transfer_and_read_nothing_until_the_metrics_are_fetched(monkeypatch):
    config = tiny_denoiser_config()
    model, tx, mesh = registry.model_from_config(config), train.make_optimizer(config), \
        sharding.make_mesh()
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(train.create_train_state(config, model, tx, jax.random.key(0)),
                           replicated)
    rng = jax.device_put(jax.random.key(1), replicated)
    step = train.compile_train_step(model, tx, config, mesh, state)
    batch = sharding.global_batch(host_batch(config), mesh)
    state, metrics = step(state, batch, rng)  # compiles outside the probes

    reads = HostReads(monkeypatch)
    with jax.transfer_guard("disallow"):
        metric_sums = metrics
        for _ in range(3):
            state, metrics = step(state, batch, rng)
            metric_sums = jax.tree_util.tree_map(jnp.add, metric_sums, metrics)
    assert reads.at_steps == []

    logged = jax.device_get(metric_sums)  # what a logging step does
    assert len(reads.at_steps) == len(logged) > 0
    assert int(state.step) == 4
    assert np.isfinite(logged["loss"])
    # The probes do see the usual mistakes: a host batch, and reading one metric per step.
    with jax.transfer_guard("disallow"), pytest.raises(Exception, match=HOST_TO_DEVICE_REFUSED):
        step(state, host_batch(config), rng)
    before = len(reads.at_steps)
    float(metrics["loss"])
    assert len(reads.at_steps) == before + 1


@pytest.mark.slow
def test_training_loop_reads_device_values_only_at_logging_steps(monkeypatch, tmp_path):
    reads = HostReads(monkeypatch)
    compile_train_step = train.compile_train_step
    monkeypatch.setattr(train, "compile_train_step",
                        lambda *args: reads.count_steps(compile_train_step(*args)))
    config = tiny_denoiser_config(num_train_steps=6, log_every_steps=3,
                                  checkpoint_every_steps=6, eval_every_steps=6)
    metrics = train.train_and_evaluate(config, str(tmp_path / "work"))
    assert reads.steps_run == 6
    # Set-up reads the start step (0); the first step's metrics are printed once (1); then only
    # the logging steps 3 and 6 (6 also saves).
    assert sorted(set(reads.at_steps)) == [0, 1, 3, 6]
    assert np.isfinite(metrics["loss"])


@pytest.mark.slow
def test_training_loop_refuses_an_implicit_transfer_between_logging_steps(monkeypatch,
                                                                          tmp_path):
    # A batch left on the host would be copied implicitly by every step call.
    monkeypatch.setattr(train, "global_batch", lambda local_batch, mesh: local_batch)
    config = tiny_denoiser_config(num_train_steps=2, log_every_steps=2)
    with pytest.raises(Exception, match=HOST_TO_DEVICE_REFUSED):
        train.train_and_evaluate(config, str(tmp_path / "work"))
