"""`python -m jdc_jax`: round trips equal to the API in a fresh process, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import generated_image, perturbed, save_checkpoint, tiny_model
from jdc_jax import images
from jdc_jax.__main__ import main
from jdc_jax.codec import Codec, file_format

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny JICD checkpoint, an input image, and the API's file and decoded images."""
    folder = tmp_path_factory.mktemp("cli")
    _, params = tiny_model("jicd")
    checkpoint = save_checkpoint(folder / "run", "jicd", params)
    other_checkpoint = save_checkpoint(folder / "other", "jicd", perturbed(params))
    image = generated_image(70, 100, seed=7)
    images.write_png(folder / "input.png", image)
    codec = Codec.from_checkpoint(checkpoint)
    data = codec.compress(image)
    (folder / "reference.jdc").write_bytes(data)
    (folder / "base_only.jdc").write_bytes(file_format.truncate_to_base(data))
    decoded = {output: codec.decompress(data, output) for output in ("denoised", "noisy")}
    return dict(folder=folder, checkpoint=checkpoint, other_checkpoint=other_checkpoint,
                data=data, decoded=decoded)


def _python(*args, **kwargs):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300, **kwargs)


@pytest.mark.slow
def test_fresh_process_compresses_identical_bytes_and_decodes_identical_pixels(setup):
    folder, checkpoint = setup["folder"], setup["checkpoint"]
    script = f"""
import sys
from jdc_jax.__main__ import main
assert main(["compress", "--checkpoint", {checkpoint!r}, {str(folder / "input.png")!r},
             {str(folder / "fresh.jdc")!r}]) == 0
assert main(["decompress", "--checkpoint", {checkpoint!r}, {str(folder / "reference.jdc")!r},
             {str(folder / "noisy.png")!r}, "--output", "noisy"]) == 0
assert main(["decompress", "--checkpoint", {checkpoint!r}, {str(folder / "base_only.jdc")!r},
             {str(folder / "denoised.png")!r}]) == 0
assert "tensorflow" not in sys.modules, "the codec command line imported TensorFlow"
"""
    result = _python("-c", script)
    assert result.returncode == 0, result.stderr
    assert (folder / "fresh.jdc").read_bytes() == setup["data"]
    np.testing.assert_array_equal(images.read_image(folder / "noisy.png"),
                                  setup["decoded"]["noisy"])
    np.testing.assert_array_equal(images.read_image(folder / "denoised.png"),
                                  setup["decoded"]["denoised"])


@pytest.mark.slow
def test_module_entry_point_prints_info_and_exits_nonzero_on_errors(setup):
    folder = setup["folder"]
    result = _python("-m", "jdc_jax", "info", str(folder / "base_only.jdc"))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["enhancement_layer"] == "truncated off"
    assert info["bytes"]["total"] == len(file_format.truncate_to_base(setup["data"]))
    result = _python("-m", "jdc_jax", "info", str(folder / "input.png"))
    assert result.returncode == 1
    assert result.stderr.startswith("jdc_jax: error: not a .jdc file")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
def test_importing_the_command_line_loads_neither_tensorflow_nor_jax():
    result = _python("-c", "import sys, jdc_jax.__main__; "
                           "print(sorted({'tensorflow', 'jax'} & set(sys.modules)))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _damaged(data, what):
    parsed = file_format.parse_file(data)
    offset, size = parsed.spans["base"]
    if what == "corrupt":
        damaged = bytearray(data)
        damaged[offset + 20] ^= 0xFF  # a payload byte of the base chunk
        return bytes(damaged)
    return data[: offset + size - 3]  # truncated inside the base chunk


ERRORS = [
    ("unknown file", "decompress", "input.png", {}, "not a .jdc file"),
    ("corrupt chunk", "decompress", "corrupt", {}, "base chunk payload is corrupt"),
    ("truncated base", "decompress", "truncated", {}, "base chunk truncated"),
    ("wrong checkpoint", "decompress", "reference.jdc", {"checkpoint": "other_checkpoint"},
     "file was written with model"),
    ("missing checkpoint", "decompress", "reference.jdc", {"checkpoint": "missing"},
     "checkpoint not found"),
    ("noisy from base only", "decompress", "base_only.jdc", {"output": "noisy"},
     "enhancement chunk was cut off"),
    ("missing input", "compress", "nothing.png", {}, "input image not found"),
    ("missing .jdc", "decompress", "nothing.jdc", {}, "No such file or directory"),
    ("unknown model", "compress", "input.png", {"model": "kodak-best"},
     "unknown zoo model 'kodak-best'; available: "),
]


@pytest.mark.parametrize("name,command,source,options,message", ERRORS,
                         ids=[e[0] for e in ERRORS])
def test_errors_exit_1_with_one_line_message(setup, capsys, name, command, source, options,
                                             message):
    folder = setup["folder"]
    if source in ("corrupt", "truncated"):
        (folder / f"{source}.jdc").write_bytes(_damaged(setup["data"], source))
        source = f"{source}.jdc"
    checkpoint = {"other_checkpoint": setup["other_checkpoint"],
                  "missing": str(folder / "missing")}.get(options.get("checkpoint"),
                                                          setup["checkpoint"])
    argv = [command, str(folder / source), str(folder / "out.file")]
    argv += ["--model", options["model"]] if "model" in options else ["--checkpoint", checkpoint]
    if "output" in options:
        argv += ["--output", options["output"]]
    capsys.readouterr()
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("jdc_jax: error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (folder / "out.file").exists()


def test_folder_input_writes_one_file_per_image(setup, capsys):
    folder = setup["folder"]
    inputs = folder / "many" / "nested"
    inputs.mkdir(parents=True)
    images.write_png(inputs / "a.png", generated_image(64, 64, seed=8))
    images.write_png(inputs / "b.png", generated_image(70, 100, seed=9))
    output = folder / "coded"
    assert main(["compress", "--checkpoint", setup["checkpoint"], "--layers", "base",
                 str(folder / "many"), str(output)]) == 0
    written = sorted(str(p.relative_to(output)) for p in output.rglob("*"))
    assert written == ["nested", "nested/a.jdc", "nested/b.jdc"]
    info = json.loads(json.dumps(Codec.from_checkpoint(setup["checkpoint"]).info(
        (output / "nested" / "b.jdc").read_bytes())))
    assert (info["height"], info["width"]) == (70, 100)
    assert info["enhancement_layer"] == "not written (base-only file)"
    assert f"{output}: 2 files" in capsys.readouterr().out
