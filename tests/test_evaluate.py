"""The evaluation tool end to end on tiny generated images with tiny models."""


import jax
import numpy as np
import pytest
from PIL import Image

from jdc_jax import evaluate, metrics, noise, results
from jdc_jax.codec import Codec, file_format
from jdc_jax.models import build_model, init_params
from conftest import generated_image, perturbed, save_checkpoint, tiny_model


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dataset")
    for i, (h, w) in enumerate([(70, 90), (64, 64)]):
        Image.fromarray(generated_image(h, w, seed=i)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    _, jicd = tiny_model("jicd")
    _, codec = tiny_model("codec")
    denoiser = build_model("denoiser", depth=3, features=8)
    denoiser_params = jax.tree.map(np.asarray, init_params(denoiser, jax.random.key(0),
                                                           (1, 64, 64, 3)))
    return {
        "jicd": [save_checkpoint(root / "jicd1", "jicd", jicd),
                 save_checkpoint(root / "jicd2", "jicd", perturbed(jicd, 2e-3))],
        "codec": [save_checkpoint(root / "codec1", "codec", codec)],
        "denoiser": save_denoiser(root / "denoiser", denoiser_params),
    }


def save_denoiser(workdir, params):
    import orbax.checkpoint as ocp

    from jdc_jax import checkpoints as checkpoint_lib
    from jdc_jax.default_config import get_config

    config = get_config()
    config.model, config.denoiser_depth, config.denoiser_features = "denoiser", 3, 8
    manager = checkpoint_lib.checkpoint_manager(workdir / checkpoint_lib.CHECKPOINT_SUBDIR)
    manager.save(1, args=ocp.args.Composite(state=ocp.args.PyTreeSave({"params": params}),
                                            config=ocp.args.JsonSave(config.to_dict())))
    manager.close()
    return str(workdir)


def run(argv):
    return evaluate.main([str(a) for a in argv])


@pytest.mark.slow
def test_jicd_evaluation_writes_real_file_rates_and_both_tasks(tmp_path, dataset_dir,
                                                               checkpoints):
    out = tmp_path / "jicd.json"
    assert run(["--checkpoints", *checkpoints["jicd"], "--dataset", f"folder:{dataset_dir}",
                "--noise", "awgn:25", "--seed", 3, "--name", "JICD", "--out", out]) == 0
    document = results.read_results(out)
    values = document["results"]
    for key in ("bpp", "bpp_full", "psnr", "ssim", "ms-ssim", "psnr_noisy_reconstruction",
                "ssim_noisy_reconstruction", "ms-ssim_noisy_reconstruction",
                "psnr_base_vs_noisy", "psnr_noisy_input", "encoding_time", "decoding_time"):
        assert len(values[key]) == 2 and all(np.isfinite(values[key])), key
    assert all(b < f for b, f in zip(values["bpp"], values["bpp_full"]))
    # The rate is the size of the real base-only file: recompute it for one image.
    first = document["per_image"][0]
    codec = Codec.from_checkpoint(checkpoints["jicd"][first["rate_point"]])
    clean = np.asarray(Image.open(dataset_dir / first["image"]).convert("RGB"))
    noisy = noise.noisy_for_file(clean, first["image"], noise.parse_noise_spec("awgn:25"), 3)
    data = codec.compress(noisy)
    pixels = clean.shape[0] * clean.shape[1]
    assert first["bpp_full"] == pytest.approx(8 * len(data) / pixels, abs=1e-12)
    base_only = file_format.truncate_to_base(data)
    assert first["bpp"] == pytest.approx(8 * len(base_only) / pixels, abs=1e-12)
    assert first["psnr_base_vs_noisy"] == pytest.approx(
        metrics.psnr(codec.decompress(base_only, output="denoised"), noisy), abs=1e-9)
    assert document["meta"]["noise"] == "awgn:25" and document["meta"]["images"] == 2


@pytest.mark.slow
def test_cascade_and_reference_baselines(tmp_path, dataset_dir, checkpoints):
    common = ["--dataset", f"folder:{dataset_dir}", "--noise", "awgn:50", "--seed", 0]
    cascade = tmp_path / "cascade.json"
    assert run(["--checkpoints", *checkpoints["codec"], "--denoiser", checkpoints["denoiser"],
                "--name", "cascade", "--out", cascade, *common]) == 0
    values = results.read_results(cascade)["results"]
    assert values["bpp"] == values["bpp_full"]
    assert "psnr_noisy_reconstruction" in values and len(values["psnr"]) == 1
    for method, extra in (("denoiser", ["--denoiser", checkpoints["denoiser"]]), ("bm3d", [])):
        out = tmp_path / f"{method}.json"
        assert run(["--method", method, *extra, "--name", method, "--out", out, *common]) == 0
        document = results.read_results(out)
        assert document["kind"] == results.REFERENCE
        assert 0 < document["results"]["psnr"] < 60
        assert not any(k.startswith("bpp") for k in document["results"])
    # CBM3D is a real denoiser: it must beat the noisy input at sigma = 50.
    bm3d_doc = results.read_results(tmp_path / "bm3d.json")["results"]
    assert bm3d_doc["psnr"] > bm3d_doc["psnr_noisy_input"] + 3.0


def test_every_method_sees_identical_noisy_inputs(dataset_dir):
    spec = noise.parse_noise_spec("practical")
    clean = np.asarray(Image.open(dataset_dir / "img0.png").convert("RGB"))
    a = noise.noisy_for_file(clean, "img0.png", spec, 7)
    b = noise.noisy_for_file(clean, "img0.png", spec, 7)
    c = noise.noisy_for_file(clean, "img0.png", spec, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.slow
def test_bad_arguments_exit_with_a_message(tmp_path, capsys, checkpoints, dataset_dir):
    assert run(["--checkpoints", *checkpoints["codec"], "--dataset", f"folder:{tmp_path}/none",
                "--noise", "awgn:25", "--name", "x", "--out", tmp_path / "x.json"]) == 2
    assert "image folder does not exist" in capsys.readouterr().err
    assert run(["--checkpoints", *checkpoints["codec"], "--dataset", f"folder:{tmp_path}",
                "--noise", "awgn:25", "--name", "x", "--out", tmp_path / "x.json"]) == 2
    assert "no images" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
    for spec, message in (("zoo:nothing-here:1", "unknown zoo model 'nothing-here'"),
                          ("zoo:jicd-sigma25", "expected zoo:NAME:RATE_POINT")):
        assert run(["--checkpoints", spec, "--dataset", f"folder:{dataset_dir}",
                    "--noise", "awgn:25", "--name", "x", "--out", tmp_path / "x.json"]) == 2
        assert message in capsys.readouterr().err
