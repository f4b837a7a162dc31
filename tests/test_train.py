"""The training job: every config trains end to end, resumption is exact, data parallelism is
exact, and bad configs fail at start with a clear message."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, generated_image, load_config, tiny, tiny_model, write_images
from jdc_jax import checkpoints, config_validation, train
from jdc_jax.codec import Codec
from jdc_jax.codec.api import INTEGER_ENTROPY_FILE
from jdc_jax.integer import calibrate as integer_calibration
from jdc_jax.config_validation import (ConfigError, frozen_modules, module_lr_scales,
                                       validate_config)
from jdc_jax.default_config import get_config
from jdc_jax.models import registry


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["configs/jicd.py:smoke", "configs/testolina.py:smoke",
                                  "configs/jdc.py:smoke", "configs/codec.py:smoke",
                                  "configs/denoiser.py:smoke"])
def test_every_config_trains_end_to_end(spec, tmp_path):
    config = tiny(load_config(spec), tmp_path)
    metrics = train.train_and_evaluate(config, str(tmp_path / "work"))
    assert np.isfinite(metrics["loss"])
    assert metrics["checkpoint"].endswith(os.path.join("checkpoints", "3"))
    assert 0.0 < metrics["eval_psnr_noisy_input"] < 40.0
    if config.model != "denoiser":
        assert metrics["bpp"] > 0.0 and metrics["eval_bpp"] > 0.0
    saved = json.loads((tmp_path / "work" / "config.json").read_text())
    assert saved["model"] == config.model
    params, restored_config, step = checkpoints.restore_params(tmp_path / "work")
    assert step == 3 and restored_config["model"] == config.model


@pytest.mark.slow
def test_jdc_paired_and_teacher_variants_train(tmp_path):
    clean = write_images(tmp_path / "clean", [(80, 80), (96, 72)], seed=1)
    noisy = write_images(tmp_path / "noisy", [(80, 80), (96, 72)], seed=2)
    paired = tiny(load_config("configs/jdc.py:paired"), tmp_path, msssim_min=0.0,
                  data_source=f"paired:{noisy},{clean}", num_train_steps=2, eval_folder="")
    assert np.isfinite(train.train_and_evaluate(paired, str(tmp_path / "paired"))["loss"])
    denoiser = tiny(load_config("configs/denoiser.py:smoke"), tmp_path, num_train_steps=1,
                    eval_folder="")
    train.train_and_evaluate(denoiser, str(tmp_path / "teacher_run"))
    teacher = tiny(load_config("configs/jdc.py:teacher"), tmp_path, data_source="builtin",
                   teacher_checkpoint=str(tmp_path / "teacher_run"), num_train_steps=2,
                   eval_folder="")
    assert np.isfinite(train.train_and_evaluate(teacher, str(tmp_path / "student"))["loss"])


@pytest.mark.slow
def test_resume_continues_from_the_saved_step_with_identical_state(tmp_path):
    base = dict(num_train_steps=4, checkpoint_every_steps=2, eval_folder="")
    straight = tiny(load_config("configs/jicd.py:smoke"), tmp_path, **base)
    train.train_and_evaluate(straight, str(tmp_path / "straight"))
    first = tiny(load_config("configs/jicd.py:smoke"), tmp_path, **dict(base, num_train_steps=2))
    train.train_and_evaluate(first, str(tmp_path / "resumed"))
    second = tiny(load_config("configs/jicd.py:smoke"), tmp_path, **base)
    train.train_and_evaluate(second, str(tmp_path / "resumed"))
    a, _, step_a = checkpoints.restore_params(tmp_path / "straight")
    b, _, step_b = checkpoints.restore_params(tmp_path / "resumed")
    assert step_a == step_b == 4
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_init_from_starts_from_another_models_parameters(tmp_path):
    donor = tiny(load_config("configs/denoiser.py:smoke"), tmp_path, num_train_steps=1,
                 eval_folder="")
    train.train_and_evaluate(donor, str(tmp_path / "donor"))
    wrong = tiny(load_config("configs/jicd.py:smoke"), tmp_path,
                 init_from=str(tmp_path / "donor"), num_train_steps=1, eval_folder="")
    with pytest.raises(ValueError, match="do not match"):
        train.train_and_evaluate(wrong, str(tmp_path / "wrong"))
    # The same kind and sizes: the new run starts from exactly the donor's parameters.
    fine_tune = tiny(load_config("configs/denoiser.py:smoke"), tmp_path, num_train_steps=1,
                     eval_folder="", init_from=str(tmp_path / "donor"), learning_rate=1e-3)
    model = registry.model_from_config(fine_tune)
    state = train.create_train_state(fine_tune, model, train.make_optimizer(fine_tune),
                                     jax.random.key(123))
    donor_params, _, _ = checkpoints.restore_params(tmp_path / "donor")
    leaves = jax.tree_util.tree_leaves(state.params)
    assert len(leaves) == len(jax.tree_util.tree_leaves(donor_params)) > 0
    for ours, theirs in zip(leaves, jax.tree_util.tree_leaves(donor_params)):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_a_finished_run_started_again_trains_nothing_and_keeps_its_final_metrics(tmp_path):
    """A queue started again runs each finished run once more: it must not train, and must not
    replace the run's final metrics (its loss and evaluation) by an empty record."""
    config = tiny(load_config("configs/denoiser.py:smoke"), tmp_path, num_train_steps=2)
    workdir = tmp_path / "work"
    first = train.train_and_evaluate(config, str(workdir))
    saved = (workdir / "final_metrics.json").read_text()
    assert {"loss", "eval_psnr_denoised"} <= set(json.loads(saved))
    again = train.train_and_evaluate(config, str(workdir))
    assert again == first
    assert (workdir / "final_metrics.json").read_text() == saved
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2"]


MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import os, sys, json
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=4")
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from tests.conftest import load_config
    from jdc_jax import sharding, train
    from jdc_jax.models import registry
    config = load_config("configs/jicd.py:smoke")
    config.channels = config.latent_channels = 8
    config.base_channels = 6
    config.batch_size, config.crop_size = 4, 64
    model = registry.model_from_config(config)
    tx = train.make_optimizer(config)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = sharding.make_mesh(devices)
        state = train.create_train_state(config, model, tx, jax.random.key(0))
        step = train.compile_train_step(model, tx, config, mesh, state)
        batch = sharding.global_batch({"noisy": noisy, "clean": clean}, mesh)
        for _ in range(2):
            state, metrics = step(state, batch, jax.random.key(1))
        leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)]
        results.append((float(metrics["loss"]), leaves, len(batch["noisy"].sharding.device_set)))
    (loss1, p1, n1), (loss4, p4, n4) = results
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(p1, p4))
    print(json.dumps({"loss1": loss1, "loss4": loss4, "param_diff": diff, "devices": [n1, n4]}))
""")


@pytest.mark.slow
def test_four_devices_give_the_same_loss_and_parameters_as_one(tmp_path):
    script = tmp_path / "multi_device.py"
    script.write_text(MULTI_DEVICE_SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(REPO)], capture_output=True,
                         text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == [1, 4]
    assert abs(result["loss1"] - result["loss4"]) <= 1e-5 * max(1.0, abs(result["loss1"]))
    assert result["param_diff"] <= 1e-5


@pytest.mark.parametrize("field,value,message", [
    ("base_channels", 16, "base_channels"),
    ("data_source", "ftp:somewhere", "unknown data source"),
    ("data_source", "folder:/nonexistent/folder", "does not exist"),
    ("rate_point", 7, "rate_point"),
    ("context_model", "diagonal", "context_model"),
])
def test_bad_configs_fail_with_a_clear_message(field, value, message):
    config = load_config("configs/jicd.py:smoke")
    setattr(config, field, value)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_empty_folder_and_crop_larger_than_every_image_are_refused(tmp_path):
    config = load_config("configs/jicd.py:smoke")
    (tmp_path / "empty").mkdir()
    config.data_source = f"folder:{tmp_path / 'empty'}"
    with pytest.raises(ConfigError, match="data_source: no images"):
        validate_config(config)
    config.data_source = f"folder:{write_images(tmp_path / 'small', [(40, 50), (60, 30)])}"
    with pytest.raises(ConfigError, match="larger than every image"):
        validate_config(config)


def test_a_failed_calibration_leaves_a_float_path_checkpoint_and_says_how_to_retry(
        tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise integer_calibration.AccumulatorOverflow("hyper layer 0: bound 3e9 > int32")
    monkeypatch.setattr(integer_calibration, "calibrate_codec", refuse)
    config = get_config()
    config.model, config.integer_calibration = "jicd", "builtin"
    model, params = tiny_model("jicd")
    step = tmp_path / "checkpoints" / "1"
    reporter = train._Reporter(is_chief=True, start_step=0, total_steps=1)
    result = train._calibrate_integer_entropy(config, model, params, str(step), reporter)
    assert list(result) == ["integer_entropy_error"]
    assert not (step / INTEGER_ENTROPY_FILE).exists()
    assert f"python -m jdc_jax.integer calibrate --checkpoint {step}" in \
        result["integer_entropy_error"]
    assert "bound 3e9 > int32" in result["integer_entropy_error"]
    assert "warning: the integer entropy network could not be calibrated" in \
        capsys.readouterr().out


def test_models_without_a_gaussian_conditional_are_not_calibrated(tmp_path):
    for kind in ("denoiser", "ffdnet", "factorized"):
        config = get_config()
        config.model, config.integer_calibration = kind, "builtin"
        assert train._calibrate_integer_entropy(config, None, None, str(tmp_path / "missing"),
                                                None) == {}


@pytest.mark.parametrize("value,message", [
    ("tfds:clic", "integer_calibration: calibration reads image files"),
    ("folder:/nonexistent/folder", "integer_calibration: .*does not exist"),
    ("ftp:somewhere", "integer_calibration: unknown data source"),
])
def test_an_unusable_calibration_source_is_refused_before_training(value, message):
    config = load_config("configs/jicd.py:smoke")
    config.integer_calibration = value
    with pytest.raises(ConfigError, match=message):
        validate_config(config)
    config.model = "denoiser"  # nothing to calibrate: the field is not read
    validate_config(config)


@pytest.mark.slow
def test_main_runs_the_smoke_job_from_the_command_line(tmp_path, capsys):
    out = subprocess.run(
        [sys.executable, "-m", "jdc_jax.main", "--config=configs/jicd.py:smoke",
         f"--workdir={tmp_path / 'work'}", "--config.num_train_steps=2",
         "--config.log_every_steps=1", "--config.channels=8", "--config.latent_channels=8",
         "--config.base_channels=6", "--config.eval_folder="],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "final metrics:" in out.stdout
    assert f"checkpoint: {tmp_path / 'work' / 'checkpoints' / '2'}" in out.stdout
    # The job's final checkpoint comes with its integer entropy network (default: built-in
    # images) and its coding tables: its codec writes integer-path files at once.
    stored = tmp_path / "work" / "checkpoints" / "2" / INTEGER_ENTROPY_FILE
    assert "integer entropy network calibrated on builtin in" in out.stdout
    assert stored.is_file()
    final = json.loads((tmp_path / "work" / "final_metrics.json").read_text())
    assert final["integer_entropy"] == str(stored)
    capsys.readouterr()
    codec = Codec.from_checkpoint(tmp_path / "work")
    assert "coding tables" not in capsys.readouterr().err  # stored beside it, not rebuilt
    assert codec.default_entropy_path == "integer"
    encoding = codec.encode(generated_image(48, 80, seed=3))
    assert codec.info(encoding.data)["entropy_path"] == "integer"
    decoded = codec.decode(encoding.data, "noisy")  # every stream
    assert decoded.symbols.keys() == encoding.symbols.keys()
    assert all(np.array_equal(decoded.symbols[s], encoding.symbols[s]) for s in encoding.symbols)
    # A finished run started again keeps its network (byte for byte) instead of recalibrating.
    before = stored.read_bytes()
    config = load_config("configs/jicd.py:smoke")
    again = train._calibrate_integer_entropy(config, None, None, str(stored.parent), None)
    assert again == {"integer_entropy": str(stored)} and stored.read_bytes() == before


@pytest.mark.slow
def test_training_loop_compiles_nothing_after_its_first_step(tmp_path):
    from jdc_jax.compilation_count import count_compilations

    counts = {}
    for steps in (1, 6):
        config = tiny(load_config("configs/denoiser.py:smoke"), tmp_path, num_train_steps=steps,
                      log_every_steps=2, checkpoint_every_steps=100, eval_folder="")
        jax.clear_caches()  # each run compiles everything it uses, in this process too
        with count_compilations() as compiled:
            train.train_and_evaluate(config, str(tmp_path / f"run{steps}"))
        counts[steps] = compiled.by_name()
    # Five more steps and three logging windows: not one more program.
    assert counts[6] == counts[1]
    assert counts[1]["jit(train_step)"] == 1


@pytest.mark.slow
def test_a_diverging_run_stops_with_a_message_naming_the_steps(tmp_path):
    config = tiny(load_config("configs/denoiser.py:smoke"), tmp_path, learning_rate=1e30,
                  num_train_steps=4, log_every_steps=2, eval_folder="")
    with pytest.raises(train.NonFiniteLoss, match=r"the training loss became nan (and the "
                                                  r"gradient norm became nan )?between steps "
                                                  r"\d and \d; the checkpoints in"):
        train.train_and_evaluate(config, str(tmp_path / "diverging"))


def test_a_nonfinite_gradient_norm_stops_a_run_whose_loss_is_still_finite():
    window = {"loss": 44.2, "grad_norm": float("inf"), "bpp": 7.94}
    assert (train.nonfinite_window(window, skipping=False, skipped=0, steps=10)
            == "the gradient norm became inf")
    both = {"loss": float("nan"), "grad_norm": float("nan")}
    assert (train.nonfinite_window(both, skipping=False, skipped=0, steps=10)
            == "the training loss became nan and the gradient norm became nan")
    assert train.nonfinite_window({"loss": 3.1, "grad_norm": 7.9}, skipping=False, skipped=0,
                                  steps=10) == ""
    # Skipping: a window with some finite steps goes on; one skipped throughout stops.
    assert train.nonfinite_window(window, skipping=True, skipped=9, steps=10) == ""
    assert (train.nonfinite_window(window, skipping=True, skipped=10, steps=10)
            == "the gradient norm became inf")


def test_skipping_nonfinite_updates_leaves_parameters_and_state_unchanged():
    config = get_config()
    config.skip_nonfinite_updates = True
    tx = train.make_optimizer(config)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    finite_updates, state = tx.update({"w": jnp.full(3, 0.5)}, state, params, value=1.0)
    skipped_updates, skipped_state = tx.update({"w": jnp.array([0.5, jnp.nan, 0.5])}, state,
                                               params, value=1.0)
    np.testing.assert_array_equal(np.asarray(skipped_updates["w"]), np.zeros(3))
    assert int(skipped_state.total_notfinite) == 1
    np.testing.assert_array_equal(np.asarray(skipped_state.inner_state[1][0].mu["w"]),
                                  np.asarray(state.inner_state[1][0].mu["w"]))
    assert float(np.abs(np.asarray(finite_updates["w"])).min()) > 0


def test_cosine_schedule_warms_up_linearly_then_decays_to_the_final_fraction():
    config = load_config("configs/jicd.py:campaign_sigma25")
    config.learning_rate, config.warmup_steps, config.num_train_steps = 1e-3, 100, 1100
    schedule = train.learning_rate_schedule(config)
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(float(schedule(50)), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(100)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(600)), 1e-3 * (0.01 + 0.99 * 0.5), rtol=1e-5)
    np.testing.assert_allclose(float(schedule(1100)), 1e-5, rtol=1e-5)


def test_warm_restart_continues_the_schedule_from_init_step_after_a_ramp():
    config = load_config("configs/jicd.py:campaign_sigma25")
    config.learning_rate, config.warmup_steps, config.num_train_steps = 1e-3, 100, 1100
    base = train.learning_rate_schedule(config)
    config.init_from, config.init_step, config.restart_warmup_steps = "zoo:x:1", 600, 100
    # The campaign's folders (runs/data) exist only where the campaign ran.
    config.data_source, config.validation_folder = "builtin", ""
    validate_config(config)
    restart = train.learning_rate_schedule(config)
    # The optimizer's count c is the global step - 600; ramp (c + 1) / 100 over 100 steps.
    np.testing.assert_allclose(float(restart(0)), float(base(600)) * 0.01, rtol=1e-6)
    np.testing.assert_allclose(float(restart(49)), float(base(649)) * 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(restart(99)), float(base(699)), rtol=1e-6)
    np.testing.assert_allclose(float(restart(500)), 1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (dict(init_step=5), "give init_from"),
    (dict(init_step=3, init_from="zoo:x:1"), "init_step must be in"),
    (dict(init_step=1, init_from="zoo:x:1", restart_warmup_steps=0), "restart_warmup_steps"),
])
def test_warm_restart_settings_are_checked(overrides, message):
    config = load_config("configs/jicd.py:smoke")
    config.num_train_steps = 3
    for field, value in overrides.items():
        setattr(config, field, value)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_module_lr_scales_multiply_that_modules_updates_only():
    config = load_config("configs/jicd.py:smoke")
    params = {"g_s_full": {"w": jnp.ones(3)}, "g_a": {"w": jnp.ones(3)}}
    grads = {"g_s_full": {"w": jnp.array([1.0, -2.0, 3.0])},
             "g_a": {"w": jnp.array([0.5, 0.5, -1.0])}}

    def first_update(spec):
        config.module_lr_scales = spec
        tx = train.make_optimizer(config)
        updates, _ = tx.update(grads, tx.init(params), params, value=jnp.float32(1.0))
        return updates

    plain, scaled = first_update(""), first_update("g_s_full=0.1")
    np.testing.assert_allclose(scaled["g_s_full"]["w"], 0.1 * plain["g_s_full"]["w"], rtol=1e-6)
    np.testing.assert_array_equal(scaled["g_a"]["w"], plain["g_a"]["w"])
    # A frozen module's update is zero, and its gradient takes no part in the clipping: with a
    # large or a non-finite gradient there, the other modules' updates are those of a model
    # without it.
    config.module_lr_scales = ""
    tx = train.make_optimizer(config)
    only = {"g_s_full": params["g_s_full"]}
    alone, _ = tx.update({"g_s_full": grads["g_s_full"]}, tx.init(only), only,
                         value=jnp.float32(1.0))
    config.module_lr_scales = "g_a=0"
    tx = train.make_optimizer(config)
    # (Counted in the clipping, the 1e6 gradient would shrink g_s_full's by 1e-6, and Adam's
    # epsilon would then change its update by about 1 %.)
    for g_a in (jnp.array([1e6, 1e6, 1e6]), jnp.array([jnp.nan, jnp.inf, 1.0])):
        updates, _ = tx.update({"g_s_full": grads["g_s_full"], "g_a": {"w": g_a}},
                               tx.init(params), params, value=jnp.float32(1.0))
        np.testing.assert_array_equal(updates["g_a"]["w"], np.zeros(3))
        np.testing.assert_allclose(updates["g_s_full"]["w"], alone["g_s_full"]["w"], rtol=1e-6)
    # The optimizer state is the same tree, so checkpoints restore whatever the factors.
    config.module_lr_scales = "g_s_full=0.1"
    with_scales = jax.tree_util.tree_structure(train.make_optimizer(config).init(params))
    config.module_lr_scales = ""
    assert with_scales == jax.tree_util.tree_structure(train.make_optimizer(config).init(params))


def test_frozen_modules_get_no_gradient_and_no_backward_pass():
    """Freezing every module but g_s_full gives the step that zeroes their gradients afterwards,
    exactly, and the compiled step holds only g_s_full's backward convolutions."""
    config = load_config("configs/jicd.py:smoke")
    config.channels = config.latent_channels = 8
    config.base_channels = 6
    model = registry.model_from_config(config)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    batch = {"noisy": jnp.asarray(noisy), "clean": jnp.asarray(clean)}
    frozen = frozenset({"g_a", "h_a", "side_prior", "h_s", "base_parameters", "g_s_base"})
    config.module_lr_scales = ",".join(f"{name}=0" for name in sorted(frozen))
    assert frozen_modules(module_lr_scales(config)) == frozen
    tx = train.make_optimizer(config)
    state = train.create_train_state(config, model, tx, jax.random.key(0))
    assert frozen | {"g_s_full", "enhancement_parameters"} == set(state.params)

    def lowered_step(frozen_set):
        return jax.jit(lambda s, b: train.train_step(
            s, b, jax.random.key(1), model=model, tx=tx, lmbda=0.01, noisy_weight=0.05,
            target="clean", frozen=frozen_set)).lower(state, batch)

    lowered = {"g_s_full": lowered_step(frozen), "all": lowered_step(frozenset())}
    # (Default compiler options: lower optimization levels set LLVM options for the whole
    # process, which changed the numerics of later tests.)
    (new, metrics), (old, old_metrics) = (lowered[k].compile()(state, batch)
                                          for k in ("g_s_full", "all"))
    for name in state.params:
        for a, b, before in zip(*(jax.tree_util.tree_leaves(t.params[name])
                                  for t in (new, old, state))):
            if name in frozen:
                np.testing.assert_array_equal(a, before)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(metrics["loss"]), float(old_metrics["loss"]), rtol=1e-6)
    # The gradient norm counts the trained modules only (the full step's includes the frozen).
    assert 0.0 < float(metrics["grad_norm"]) < float(old_metrics["grad_norm"])
    # The lowered step's convolutions: the forward pass's 71 in both, then the backward pass's
    # (input and weight gradients): 42 for g_s_full alone, 140 when everything trains.
    convolutions = {k: v.as_text().count("stablehlo.convolution") for k, v in lowered.items()}
    assert convolutions == {"g_s_full": 71 + 2 * 21, "all": 71 + 2 * 70}


@pytest.mark.parametrize("spec, message", [("g_s_full", "expected MODULE=FACTOR"),
                                           ("g_s_full=-1", "expected MODULE=FACTOR"),
                                           ("g_s_full=fast", "expected MODULE=FACTOR"),
                                           ("g_s_full=inf", "expected MODULE=FACTOR"),
                                           ("g_s_full=nan", "expected MODULE=FACTOR")])
def test_module_lr_scales_refuse_malformed_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        config_validation.parse_module_lr_scales(spec)


def test_module_lr_scales_refuse_a_module_the_model_lacks():
    config = load_config("configs/jicd.py:smoke")
    config.module_lr_scales = "g_s_ful=0.1"
    tx = train.make_optimizer(config)
    params = {"g_s_full": {"w": jnp.ones(2)}}
    with pytest.raises(ValueError, match="names g_s_ful, not modules of this model"):
        tx.update(params, tx.init(params), params, value=jnp.float32(1.0))


@pytest.mark.slow
def test_validation_folder_is_evaluated_beside_the_eval_folder(tmp_path):
    config = tiny(load_config("configs/jicd.py:smoke"), tmp_path, num_train_steps=1,
                  eval_every_steps=1,
                  validation_folder=str(write_images(tmp_path / "val", [(64, 80)], seed=3)))
    metrics = train.train_and_evaluate(config, str(tmp_path / "work"))
    assert 0.0 < metrics["val_psnr_noisy_input"] < 40.0
    assert metrics["val_psnr_noisy_input"] != metrics["eval_psnr_noisy_input"]
    assert metrics["val_bpp"] > 0.0


@pytest.mark.slow
def test_ffdnet_trains_told_each_images_noise_level(tmp_path):
    config = tiny(load_config("configs/denoiser.py:campaign_ffdnet"), tmp_path,
                  data_source="builtin", validation_folder="", num_train_steps=2,
                  eval_every_steps=2, warmup_steps=0)
    assert config.model == "ffdnet" and config.noise == "awgn:0-75"
    metrics = train.train_and_evaluate(config, str(tmp_path / "ffdnet"))
    assert np.isfinite(metrics["loss"]) and 0.0 < metrics["eval_psnr_denoised"] < 60.0


def test_ffdnet_refuses_to_run_without_a_noise_level():
    model = registry.build_model("ffdnet", depth=3, features=8)
    x = jnp.zeros((1, 16, 16, 3))
    params = registry.init_params(model, jax.random.key(0), (1, 16, 16, 3))
    with pytest.raises(ValueError, match="needs the noise level"):
        model.apply({"params": params}, x)
    quiet = model.apply({"params": params}, x, noise_level=jnp.array([0.1]))["denoised"]
    loud = model.apply({"params": params}, x, noise_level=jnp.array([0.3]))["denoised"]
    assert quiet.shape == (1, 16, 16, 3)
    assert float(jnp.max(jnp.abs(quiet - loud))) > 0.0  # the level reaches the output


# Runs `python -m jdc_jax.main ARGS` in a process whose every TCP connection fails, as on a
# machine without a network (whatever this machine's own network).
OFFLINE_MAIN = textwrap.dedent("""
    import runpy, socket, sys

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")
    socket.socket.connect = socket.create_connection = socket.getaddrinfo = unreachable
    sys.argv[0] = "jdc_jax.main"
    runpy.run_module("jdc_jax.main", run_name="__main__", alter_sys=True)
""")


@pytest.mark.slow
def test_main_offline_without_tfds_data_fails_in_seconds_with_one_message(tmp_path):
    (tmp_path / "tfds").mkdir()
    environment = {name: value for name, value in os.environ.items()
                   if "proxy" not in name.lower()}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", OFFLINE_MAIN, "--config=configs/jicd.py",
         f"--workdir={tmp_path / 'work'}", f"--config.data_dir={tmp_path / 'tfds'}"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=environment)
    seconds = time.perf_counter() - start
    assert out.returncode == 1, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: tfds:clic is not in the TFDS data directory {tmp_path / 'tfds'} and cannot be "
        f"downloaded (data.vision.ee.ethz.ch:443 unreachable: [Errno 101] Network is "
        f"unreachable); give --config.data_dir=DIR, a TFDS data directory that holds clic, or "
        f"download its files by hand and prepare them with TFDS's manual_dir (README, "
        f"\"Training data offline\"), or train on image files with "
        f"--config.data_source=folder:PATH"]
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not (tmp_path / "work").exists()  # nothing written, not even config.json
    assert os.listdir(tmp_path / "tfds") == []
    assert seconds < 60.0  # imports and the one probe; TFDS's own retries take minutes


def _raise(number: int) -> None:
    """Sends `number` to this process and gives its Python handler the chance to run."""
    os.kill(os.getpid(), number)
    time.sleep(0.05)


def test_sigterm_and_sigint_ask_the_loop_to_stop_and_the_handlers_come_back_after():
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    with train.StopSignals() as stop:
        assert stop.requested(1) is None
        _raise(signal.SIGTERM)
        assert stop.requested(2) == "SIGTERM"
        _raise(signal.SIGINT)  # the first signal is the one reported
        assert stop.requested(3) == "SIGTERM"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before

    with train.StopSignals() as stop:
        _raise(signal.SIGINT)
        assert stop.requested(1) == "SIGINT"
        # A second Ctrl-C does not wait for the save.
        with pytest.raises(KeyboardInterrupt):
            _raise(signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before

    stopped = train.TrainingStopped(7, 20, "/runs/a", "SIGINT")
    assert stopped.exit_status == 130
    assert str(stopped) == ("stopped by SIGINT after step 7 of 20: checkpoint 7 saved in "
                            "/runs/a; the same command resumes from it")
    assert train.TrainingStopped(7, 20, "/runs/a", "SIGTERM").exit_status == 143
