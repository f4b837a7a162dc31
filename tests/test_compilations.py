"""XLA compilations: the counter sees exactly the compilations made inside its block; the
training step and the codec compile once per input shape and never again for a repeated one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from conftest import generated_image, tiny_model
from jdc_jax.models import registry
from jdc_jax import sharding, train
from jdc_jax.codec import Codec
from jdc_jax.compilation_count import count_compilations
from jdc_jax.default_config import apply_smoke, get_config


@jax.jit
def doubled(x):
    return 2.0 * x


def test_counter_counts_one_compilation_per_new_input_shape():
    # Host arrays: moving them to the device compiles nothing.
    three, five = np.ones(3, np.float32), np.ones(5, np.float32)
    with count_compilations() as compiled:
        doubled(three)
        doubled(three)
        doubled(five)
        doubled(three)
    assert compiled.names == ["jit(doubled)", "jit(doubled)"]
    assert compiled.count == 2
    assert compiled.by_name() == {"jit(doubled)": 2}


def test_counter_sees_only_compilations_inside_its_block():
    x = np.ones(7, np.float32)
    with count_compilations() as outer:
        with count_compilations() as inner:
            doubled(x)
        doubled(np.ones(8, np.float32))
    doubled(np.ones(9, np.float32))
    assert (inner.count, outer.count) == (1, 2)


@pytest.mark.slow
def test_executable_loaded_from_persistent_cache_is_not_counted(tmp_path):
    # In a fresh process: a persistent cache stays attached to the process that opened it.
    script = textwrap.dedent(f"""
        import json
        import jax, numpy as np
        from jdc_jax.compilation_count import count_compilations
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path)!r})
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

        def tripled(x):
            return 3.0 * x

        x = np.ones(4, np.float32)
        with count_compilations() as compiled:
            jax.jit(tripled)(x)
        jax.clear_caches()  # the in-memory caches; the next call reads the file
        with count_compilations() as loaded:
            jax.jit(tripled)(x)
        print(json.dumps([compiled.names, loaded.names, loaded.loaded_from_disk]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=120)
    compiled, loaded, from_disk = json.loads(result.stdout.strip().splitlines()[-1])
    assert compiled == ["jit(tripled)"]
    assert loaded == []
    assert from_disk == ["jit(tripled)"]


class TinyTraining:
    """The training loop's step for a tiny denoiser, built as `train.train_and_evaluate` builds
    it (a codec model's step takes ~25 s to compile here; the jit, shardings, donation and
    optimizer are the same)."""

    def __init__(self):
        config = apply_smoke(get_config())
        config.model = "denoiser"
        config.denoiser_depth, config.denoiser_features = 3, 8
        config.crop_size, config.batch_size = 64, 2
        self.config = config
        self.mesh = sharding.make_mesh()
        model = registry.model_from_config(config)
        tx = train.make_optimizer(config)
        init_rng, step_rng = jax.random.split(jax.random.key(0))
        self.state = sharding.replicate(train.create_train_state(config, model, tx, init_rng),
                                     self.mesh)
        self.step_rng = sharding.replicate(step_rng, self.mesh)
        self.compiled_step = train.compile_train_step(model, tx, config, self.mesh, self.state)
        self.rng = np.random.default_rng(0)

    def random_batch(self, crop: int) -> dict:
        shape = (self.config.batch_size, crop, crop, 3)
        return {name: self.rng.integers(0, 256, shape, dtype=np.uint8)
                for name in ("noisy", "clean")}

    def step(self, local_batch: dict) -> None:
        with jax.transfer_guard("disallow"):
            inputs = sharding.global_batch(local_batch, self.mesh)
            self.state, _ = self.compiled_step(self.state, inputs, self.step_rng)


@pytest.fixture(scope="module")
def training():
    return TinyTraining()


def test_training_step_compiles_once_over_steps_of_one_batch_shape(training):
    batches = [training.random_batch(64) for _ in range(4)]
    with count_compilations() as compiled:
        for batch in batches:
            training.step(batch)
    assert compiled.names == ["jit(train_step)"]
    assert int(jax.device_get(training.state.step)) >= 4


def test_new_batch_shape_compiles_the_training_step_once_more(training):
    training.step(training.random_batch(64))
    batches = [training.random_batch(128), training.random_batch(128), training.random_batch(64)]
    with count_compilations() as compiled:
        for batch in batches:
            training.step(batch)
    assert compiled.names == ["jit(train_step)"]


def test_codec_compiles_nothing_for_a_second_image_of_the_same_size():
    jax.clear_caches()  # another test of this process may have compiled these pieces already
    model, params = tiny_model("hyperprior")
    codec = Codec(model, params)
    with count_compilations() as first_compress:
        first_data = codec.compress(generated_image(40, 56, seed=1))
    with count_compilations() as first_decompress:
        codec.decompress(first_data)
    with count_compilations() as same_size:
        data = codec.compress(generated_image(40, 56, seed=2))
        decoded = codec.decompress(data)
    with count_compilations() as other_size:
        codec.compress(generated_image(70, 56, seed=3))
    assert first_compress.count > 0 and first_decompress.count > 0
    assert same_size.count == 0
    assert decoded.shape == (40, 56, 3)
    # 40x56 pads to 64x64 and 70x56 to 128x64: each compress piece compiles once for the new
    # shape.
    assert other_size.names == first_compress.names


def test_wavefront_codec_compiles_one_front_program_per_bucket_and_no_more():
    model, params = tiny_model("jicd")
    codec = Codec(model, params)
    front_programs = ("jit(base_parameters_front)", "jit(enhancement_parameters_front)")
    # 150 x 230 pads to 192 x 256, a 12 x 16 latent: fronts of at most 6 positions, bucket 8.
    with count_compilations() as first:
        data = codec.compress(generated_image(150, 230, seed=1))
        codec.decompress(data, "noisy")
    with count_compilations() as same_size:
        codec.decompress(codec.compress(generated_image(150, 230, seed=2)), "noisy")
    # 150 x 450 pads to 192 x 512, a 12 x 32 latent: fronts of up to 11 positions, buckets 8
    # (reused) and 16 (new).
    with count_compilations() as wider:
        codec.decompress(codec.compress(generated_image(150, 450, seed=3)), "noisy")
    assert [first.by_name().get(name, 0) for name in front_programs] == [1, 1]
    assert same_size.count == 0
    assert [wider.by_name().get(name, 0) for name in front_programs] == [1, 1]
