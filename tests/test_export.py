"""Exported inference packages: byte-identical files from a fresh process without model code,
and refusal of missing or altered package files."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jaxlib
import numpy as np
import pytest

from conftest import generated_image, save_checkpoint, tiny_model, write_images
import jdc_jax
from jdc_jax import export, exported
from jdc_jax.codec import Codec, file_format
from jdc_jax.integer import __main__ as integer_cli

ROOT = Path(__file__).resolve().parents[1]
# Serial context with two layers (calibrated: its package holds the integer entropy path);
# hyperprior-only parameters; no side stream.
KINDS = ("jicd", "hyperprior", "factorized")
FORBIDDEN_MODULES = ("flax", "orbax", "tensorflow", "optax", "jdc_jax.models", "jdc_jax.train",
                     "jdc_jax.codec.api", "jdc_jax.checkpoints")


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Per kind: its checkpoint, exported package, the native codec, an image, the native file
    (full and base-only) and the native decoded outputs."""
    folder = tmp_path_factory.mktemp("export")
    result = {}
    for kind in KINDS:
        _, params = tiny_model(kind)
        checkpoint = save_checkpoint(folder / f"{kind}_run", kind, params)
        if kind == "jicd":
            images = write_images(folder / "calibration", [(64, 64), (80, 96)])
            assert integer_cli.main(["calibrate", "--checkpoint", checkpoint, "--images",
                                     str(images)]) == 0
        package = folder / f"{kind}_package"
        assert export.main(["--checkpoint", checkpoint, "--out", str(package)]) == 0
        codec = Codec.from_checkpoint(checkpoint)
        image = generated_image(70, 100, seed=11)
        files = {"full": codec.compress(image), "base": codec.compress(image, layers="base")}
        decoded = {output: codec.decompress(files["full"], output) for output in codec.outputs}
        result[kind] = dict(checkpoint=checkpoint, package=package, codec=codec, image=image,
                            files=files, decoded=decoded, folder=folder)
    return result


@pytest.mark.slow
def test_fresh_process_codes_identical_bytes_and_pixels_without_model_code(packages):
    folder = packages["jicd"]["folder"]
    for kind, setup in packages.items():
        np.save(folder / f"{kind}_image.npy", setup["image"])
        (folder / f"{kind}_reference.jdc").write_bytes(setup["files"]["full"])
    script = f"""
import json, sys
from pathlib import Path
import numpy as np
from jdc_jax.exported import Codec
folder = Path({str(folder)!r})
for kind in {KINDS!r}:
    codec = Codec.load(folder / f"{{kind}}_package")
    image = np.load(folder / f"{{kind}}_image.npy")
    (folder / f"{{kind}}_fresh_full.jdc").write_bytes(codec.compress(image))
    (folder / f"{{kind}}_fresh_base.jdc").write_bytes(codec.compress(image, layers="base"))
    reference = (folder / f"{{kind}}_reference.jdc").read_bytes()
    for output in codec.outputs:
        np.save(folder / f"{{kind}}_fresh_{{output}}.npy", codec.decompress(reference, output))
loaded = sorted(name for name in sys.modules
                if any(name == m or name.startswith(m + ".") for m in {FORBIDDEN_MODULES!r}))
print(json.dumps(loaded))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    for kind, setup in packages.items():
        for layers in ("full", "base"):
            assert (folder / f"{kind}_fresh_{layers}.jdc").read_bytes() == setup["files"][layers]
        for output, pixels in setup["decoded"].items():
            np.testing.assert_array_equal(np.load(folder / f"{kind}_fresh_{output}.npy"), pixels)
    header = file_format.parse_file(packages["jicd"]["files"]["full"]).header
    assert header.entropy_path == "integer"
    assert header.model_id == packages["jicd"]["codec"].integer_model_id


def test_manifest_hashes_every_file_and_names_the_native_model_id(packages):
    setup = packages["jicd"]
    package, codec = setup["package"], setup["codec"]
    manifest = json.loads((package / "manifest.json").read_text())
    on_disk = {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    for path, digest in manifest["files"].items():
        assert hashlib.sha256((package / path).read_bytes()).hexdigest() == digest
    assert manifest["model_id"] == codec.model_id.hex()
    assert manifest["integer_model_id"] == codec.integer_model_id.hex()
    assert "integer_model_id" not in json.loads(
        (packages["hyperprior"]["package"] / "manifest.json").read_text())
    assert manifest["versions"] == {"jdc_jax": jdc_jax.__version__, "jax": jax.__version__,
                                    "jaxlib": jaxlib.__version__, "file_format": 2}
    tables = Path(setup["checkpoint"]) / "checkpoints" / "1" / "coding_tables"
    assert (package / "side_tables.bin").read_bytes() == (tables / "side.bin").read_bytes()
    assert (package / "latent_tables.bin").read_bytes() == (tables / "latent.bin").read_bytes()
    assert json.loads((package / "config.json").read_text())["base_channels"] == 12
    functions = json.loads((package / "codec.json").read_text())["functions"]
    assert sorted(functions) == sorted(
        ["analysis", "hyper_analysis", "hyper_synthesis", "synthesize_denoised",
         "synthesize_noisy", "base_context_matrix", "base_parameters_at",
         "base_parameters_front", "enhancement_context_matrix", "enhancement_parameters_at",
         "enhancement_parameters_front"])
    analysis = jax.export.deserialize(
        bytearray((package / functions["analysis"]["file"]).read_bytes()))
    assert str(analysis.in_avals[-1].shape) == "(1, 16*h, 16*w, 3)"
    assert analysis.platforms == ("cpu", "cuda", "tpu")
    front = jax.export.deserialize(
        bytearray((package / functions["enhancement_parameters_front"]["file"]).read_bytes()))
    # psi (2M = 32), taps (12 of the 4 enhancement channels), matrix, bias, the base latent.
    assert [str(aval.shape) for aval in front.in_avals[-5:]] == [
        "(b, 32)", "(b, 12, 4)", "(48, 8)", "(8,)", "(b, 12)"]
    assert str(front.out_avals[0].shape) == "(b, 2, 4)"


def _copy(package: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(package, target)
    return target


def test_missing_package_file_is_refused_by_name(packages, tmp_path):
    package = _copy(packages["jicd"]["package"], tmp_path / "package")
    (package / "functions" / "base_parameters_at.jax_exported").unlink()
    with pytest.raises(exported.MissingPackageFile,
                       match=r"package file .*base_parameters_at\.jax_exported is missing"):
        exported.Codec.load(package)
    (package / "manifest.json").unlink()
    with pytest.raises(exported.MissingPackageFile, match="manifest.json is missing"):
        exported.Codec.load(package)


@pytest.mark.parametrize("name", ["weights.bin", "functions/analysis.jax_exported",
                                  "codec.json", "side_tables.bin"])
def test_one_flipped_byte_is_refused_as_a_hash_mismatch(packages, tmp_path, name):
    package = _copy(packages["jicd"]["package"], tmp_path / "package")
    data = bytearray((package / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (package / name).write_bytes(bytes(data))
    with pytest.raises(exported.PackageHashMismatch,
                       match=rf"package file .*{name}: sha256 mismatch"):
        exported.Codec.load(package)


def test_forged_model_id_in_the_manifest_is_refused(packages, tmp_path):
    package = _copy(packages["hyperprior"]["package"], tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["model_id"] = "0" * 64
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(exported.PackageHashMismatch, match="manifest.json: model id 00000000"):
        exported.Codec.load(package)


def test_forged_integer_model_id_in_the_manifest_is_refused(packages, tmp_path):
    package = _copy(packages["jicd"]["package"], tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["integer_model_id"] = "0" * 64
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(exported.PackageHashMismatch,
                       match="manifest.json: integer model id 00000000 does not match"):
        exported.Codec.load(package)


@pytest.mark.slow
def test_existing_package_is_replaced_only_when_asked(packages, capsys):
    setup = packages["hyperprior"]
    package = setup["package"]
    (package / "marker").write_bytes(b"old package")
    assert export.main(["--checkpoint", setup["checkpoint"], "--out", str(package)]) == 1
    assert "exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert (package / "marker").exists()
    export.write_package(setup["codec"], package, overwrite=True)
    assert not (package / "marker").exists()
    assert exported.Codec.load(package).model_id == setup["codec"].model_id
    leftovers = [p.name for p in package.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
