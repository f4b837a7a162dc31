"""The stock pipelines (a classical denoiser and WebP / JPEG, in either order) at matched rates."""

import numpy as np
import pytest
from PIL import Image

from conftest import generated_image
from jdc_jax import baselines, evaluate, metrics, noise, results


def noisy_pair(seed=0, sigma=25):
    clean = generated_image(96, 128, seed=seed)
    rng = np.random.default_rng(seed)
    noisy = np.clip(np.round(clean + rng.normal(0, sigma, clean.shape)), 0, 255)
    return clean, noisy.astype(np.uint8)


@pytest.mark.parametrize("codec", baselines.CODECS)
def test_code_at_rate_picks_the_largest_quality_not_above_the_target(codec):
    _, noisy = noisy_pair()
    pixels = noisy.shape[0] * noisy.shape[1]
    for target in (0.5, 1.5):
        data, quality = baselines.code_at_rate(noisy, codec, target)
        assert 8 * len(data) / pixels <= target
        assert quality < 100
        assert 8 * len(baselines.encode(noisy, codec, quality + 1)) / pixels > target
    tiny_budget, quality = baselines.code_at_rate(noisy, codec, 1e-4)
    assert quality == 0 and tiny_budget == baselines.encode(noisy, codec, 0)


def test_wavelet_denoiser_removes_most_of_awgn_without_being_told_sigma():
    clean, noisy = noisy_pair(sigma=25)
    denoised = baselines.denoise(noisy, "wavelet")
    assert denoised.dtype == np.uint8 and denoised.shape == clean.shape
    assert metrics.psnr(denoised, clean) > metrics.psnr(noisy, clean) + 4.0


@pytest.mark.parametrize("name, stages", [("wavelet+webp", ("wavelet", "webp")),
                                          ("webp+wavelet", ("webp", "wavelet")),
                                          ("jpeg+bm3d", ("jpeg", "bm3d")), ("bm3d", ("bm3d",))])
def test_pipeline_names_parse_in_either_order(name, stages):
    pipeline = baselines.parse_pipeline(name)
    assert pipeline.stages == stages and pipeline.name == name


@pytest.mark.parametrize("name", ["webp+jpeg", "wavelet+bm3d", "wavelet+webp+jpeg", "png", ""])
def test_pipeline_names_that_are_not_a_denoiser_and_a_codec_are_refused(name):
    with pytest.raises(ValueError, match="expected a denoiser"):
        baselines.parse_pipeline(name)


def test_denoise_then_code_and_code_then_denoise_report_their_real_file_rates():
    clean, noisy = noisy_pair(seed=3)
    pixels = clean.shape[0] * clean.shape[1]
    first, size_first = baselines.run_pipeline(baselines.parse_pipeline("wavelet+webp"), noisy, 0.8)
    second, size_second = baselines.run_pipeline(baselines.parse_pipeline("webp+wavelet"), noisy,
                                                 0.8)
    assert 0 < 8 * size_first / pixels <= 0.8 and 0 < 8 * size_second / pixels <= 0.8
    # A denoised image compresses better: at the same budget its file is coded at a higher
    # quality, and the pipeline's output is closer to the clean image than the noisy input.
    assert metrics.psnr(first, clean) > metrics.psnr(noisy, clean)
    assert first.shape == second.shape == clean.shape


@pytest.mark.slow
def test_evaluation_tool_writes_rate_points_for_a_stock_pipeline(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(generated_image(64, 96, seed=i)).save(folder / f"im{i}.png")
    out = tmp_path / "stock.json"
    assert evaluate.main(["--method", "wavelet+webp", "--target-bpp", "0.5", "1.0",
                          "--dataset", f"folder:{folder}", "--noise", "awgn:25", "--name",
                          "wavelet then WebP", "--out", str(out)]) == 0
    document = results.read_results(out)
    assert document["kind"] == results.RATE_DISTORTION
    bpp = document["results"]["bpp"]
    assert len(bpp) == 2 and bpp[0] <= 0.5 and 0.5 < bpp[1] <= 1.0
    # Denoised before coding: better than the noisy input at either rate (a higher rate keeps
    # more of the remaining noise, so PSNR need not rise with it).
    for point in range(2):
        assert document["results"]["psnr"][point] > document["results"]["psnr_noisy_input"][point]
    # The same noisy inputs as every other method (the noise seed is the image's name).
    rows = [r for r in document["per_image"] if r["rate_point"] == 0]
    spec = noise.parse_noise_spec("awgn:25")
    clean = np.asarray(Image.open(folder / "im0.png"))
    expected = metrics.psnr(noise.noisy_for_file(clean, "im0.png", spec, 0), clean)
    assert rows[0]["psnr_noisy_input"] == pytest.approx(expected, abs=1e-9)


def test_evaluation_tool_requires_rates_exactly_for_pipelines_that_code(tmp_path, capsys):
    common = ["--dataset", f"folder:{tmp_path}", "--noise", "awgn:25", "--name", "x", "--out",
              str(tmp_path / "x.json")]
    Image.fromarray(generated_image(64, 64)).save(tmp_path / "a.png")
    assert evaluate.main(["--method", "wavelet+webp", *common]) == 2
    assert "give --target-bpp exactly when the pipeline has a codec" in capsys.readouterr().err
    assert evaluate.main(["--method", "wavelet", "--target-bpp", "0.5", *common]) == 2
    assert evaluate.main(["--method", "zip+wavelet", *common]) == 2
    assert "expected a denoiser" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
