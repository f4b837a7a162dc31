"""Fault injection: thousands of mutated and forged .jdc files, garbage payloads with valid CRCs,
kill -9 at several moments of training, full disks during compress and checkpoint writes, and
bad images to the command line.

The tests that need a small tmpfs mount it in a private mount namespace (`unshare -m`, root);
without that capability they are skipped with the reason, never passed."""

import collections
import faulthandler
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import FUZZ_CODECS, REPO, generated_image, save_checkpoint, tiny_model
from conftest import fuzz_targets as build_fuzz_targets
from jdc_jax import atomic_write, checkpoints, images
from jdc_jax.__main__ import main
from jdc_jax.codec import Codec, file_format, fuzz

# ------------------------------------------------------------------------------ decoder fuzz

FUZZ_CASES_PER_CODEC = 600  # 2400 decodes in all
HANG_SECONDS = 600  # a decode that never returns ends the test run with every thread's stack


@pytest.fixture(scope="module")
def fuzz_targets():
    return build_fuzz_targets()


def test_every_mutated_file_decodes_to_its_declared_size_or_is_refused_with_a_format_error(
        fuzz_targets, capsys):
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.__stderr__)
    start = time.perf_counter()
    try:
        tallies = {name: fuzz.run(codec, files, FUZZ_CASES_PER_CODEC, seed=13, outputs=outputs)
                   for name, (codec, files, outputs) in fuzz_targets.items()}
    finally:
        faulthandler.cancel_dump_traceback_later()
    seconds = time.perf_counter() - start
    total = collections.Counter()
    for tally in tallies.values():
        total.update(tally.counts)
    with capsys.disabled():
        print(f"\ndecoder fuzz: {sum(total.values())} mutated files in {seconds:.1f} s")
        for outcome, count in total.most_common():
            print(f"  {outcome}: {count}")
    assert [case for tally in tallies.values() for case in tally.unexpected] == []
    assert sum(total.values()) == len(FUZZ_CODECS) * FUZZ_CASES_PER_CODEC >= 2000
    assert all(outcome == "decoded" or outcome.startswith(("refused: ", "usage: "))
               for outcome in total)
    # The sweep reached every kind of check, and some mutations decode (cut-off enhancement
    # chunks, header sizes inside the padding).
    assert {"decoded", "usage: ValueError", "refused: NotAJdcFile", "refused: InvalidHeader",
            "refused: CorruptChunk", "refused: TruncatedFile", "refused: WrongModel",
            "refused: SymbolsMismatch"} <= set(total)
    assert max(tally.slowest[0] for tally in tallies.values()) < 10.0


def _decode_peak(codec, data: bytes, output: str) -> tuple[str, int]:
    """(outcome, peak bytes numpy and Python allocated) of one decode."""
    tracemalloc.start()
    try:
        codec.decode(data, output)
        outcome = "decoded"
    except file_format.JdcFormatError as error:
        outcome = f"refused: {type(error).__name__}"
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return outcome, peak


def test_garbage_payloads_with_valid_crcs_are_refused_within_the_declared_sizes(fuzz_targets):
    rng = np.random.default_rng(7)
    for name, (codec, files, outputs) in fuzz_targets.items():
        data, output = files[0], outputs[-1]  # every chunk is read
        codec.decode(data, output)  # compiled, tables built
        _, valid_peak = _decode_peak(codec, data, output)
        for layer in file_format.parse_file(data).chunks:
            outcomes = collections.Counter()
            for _ in range(40):
                garbage = fuzz.with_garbage_payload(data, rng, layer)
                outcome, peak = _decode_peak(codec, garbage, output)
                outcomes[outcome] += 1
                # A garbage payload makes the decoder allocate what a valid file of the
                # declared size does, no more.
                assert peak <= 2 * valid_peak + 2**18, (name, layer, peak, valid_peak)
            assert set(outcomes) <= {"decoded", "refused: SymbolsMismatch"}, (name, outcomes)
            assert outcomes["refused: SymbolsMismatch"] >= 20, (name, layer, outcomes)


def test_a_garbage_enhancement_payload_leaves_the_denoised_image_identical(fuzz_targets):
    codec, files, _ = fuzz_targets["jicd-serial"]
    garbage = fuzz.with_garbage_payload(files[0], np.random.default_rng(3), "enhancement")
    np.testing.assert_array_equal(codec.decompress(garbage, "denoised"),
                                  codec.decompress(files[0], "denoised"))
    with pytest.raises(file_format.CorruptChunk, match="enhancement chunk"):
        codec.decompress(garbage, "noisy")


# ------------------------------------------------------------------------------ kill -9 in training

# `python -m jdc_jax.main` that SIGKILLs itself at a moment of a checkpoint write named by
# JDC_TEST_KILL_AT=WHERE:STEP (WHERE: item, finalize or data_state).
KILLABLE_MAIN = textwrap.dedent("""
    import os, runpy, signal, sys

    where, _, step = os.environ.get("JDC_TEST_KILL_AT", "").partition(":")

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "item":  # in the middle of the step's files: as its config item is written
        import orbax.checkpoint as ocp
        save = ocp.JsonCheckpointHandler.async_save

        async def killing_save(self, directory, *args, **kwargs):
            if directory.parent.name.startswith(step + "."):
                die()
            return await save(self, directory, *args, **kwargs)
        ocp.JsonCheckpointHandler.async_save = killing_save
    elif where == "finalize":  # every file written, the step not yet renamed into place
        from orbax.checkpoint._src.path import atomicity
        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def killing_finalize(self):
            if self.get_final().name == step:
                die()
            return await finalize(self)
        atomicity.AtomicRenameTemporaryPath.finalize = killing_finalize
    elif where == "data_state":  # the step committed, its input pipeline state not written
        import tensorflow as tf
        write = tf.train.Checkpoint.write

        def killing_write(self, file_prefix, *args, **kwargs):
            if f"/data_state/{step}/" in str(file_prefix):
                die()
            return write(self, file_prefix, *args, **kwargs)
        tf.train.Checkpoint.write = killing_write
    sys.argv[0] = "jdc_jax.main"
    runpy.run_module("jdc_jax.main", run_name="__main__", alter_sys=True)
""")
TRAINING_FLAGS = ("--config=configs/jicd.py:smoke", "--config.channels=8",
                  "--config.latent_channels=8", "--config.base_channels=6",
                  "--config.eval_folder=", "--config.batch_size=2", "--config.log_every_steps=1",
                  "--config.integer_calibration=")
CHECKPOINT_INTERVAL = 2


@pytest.fixture(scope="module")
def training_environment(tmp_path_factory):
    """The environment of training subprocesses: a compilation cache shared by this session's
    runs, over pytest-xdist workers too (each restart then takes seconds, not a minute), and no
    TF C++ chatter."""
    session = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        session = session.parent  # the session's folder, above each worker's own
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                       JAX_COMPILATION_CACHE_DIR=str(session / "jax_compilation_cache"),
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                       JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    environment.pop("JDC_TEST_KILL_AT", None)
    return environment


def _train(workdir, environment, steps: int, kill_at: str = "", kill_after_line: str = "",
           signal_after_line: tuple[str, int] | None = None,
           checkpoint_every: int = CHECKPOINT_INTERVAL):
    """Runs training in `workdir` to `steps`; returns (exit status, stdout lines). kill_at
    makes it SIGKILL itself (KILLABLE_MAIN); kill_after_line SIGKILLs it from here as soon as
    a stdout line starts with that text; signal_after_line (text, signal) sends it that signal
    then, once, and reads on to the end. Its stderr goes to WORKDIR.stderr.N, N the run."""
    command = [sys.executable, "-c", KILLABLE_MAIN, *TRAINING_FLAGS, f"--workdir={workdir}",
               f"--config.num_train_steps={steps}", "--config.keep_checkpoints=50",
               f"--config.checkpoint_every_steps={checkpoint_every}"]
    run = len(list(workdir.parent.glob(f"{workdir.name}.stderr.*")))
    with open(workdir.parent / f"{workdir.name}.stderr.{run}", "w") as stderr:
        process = subprocess.Popen(command, cwd=REPO, text=True, stdout=subprocess.PIPE,
                                   stderr=stderr, env=dict(environment, JDC_TEST_KILL_AT=kill_at))
    lines = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if kill_after_line and line.startswith(kill_after_line):
                process.send_signal(signal.SIGKILL)
                break
            if signal_after_line and line.startswith(signal_after_line[0]):
                process.send_signal(signal_after_line[1])
                signal_after_line = None
        return process.wait(timeout=600), lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _complete_steps(workdir) -> list[int]:
    """Steps whose directory orbax renamed into place (complete checkpoints)."""
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
        if folder.is_dir() else []


def _partial_steps(workdir) -> list[str]:
    folder = workdir / "checkpoints"
    return sorted(p.name for p in folder.iterdir() if not p.name.isdigit()) \
        if folder.is_dir() else []


@pytest.mark.slow
def test_kill_9_at_any_moment_resumes_from_the_newest_complete_checkpoint(
        tmp_path, training_environment):
    work, env, total = tmp_path / "work", training_environment, 16

    # Killed after step 4's files are written but before the step is renamed into place.
    status, _ = _train(work, env, total, kill_at="finalize:4")
    assert status == -signal.SIGKILL
    assert _complete_steps(work) == [2]
    assert [name.split(".")[0] for name in _partial_steps(work)] == ["4"]

    # The partial step 4 is never loaded (and is removed); killed in the middle of step 6.
    status, lines = _train(work, env, total, kill_at="item:6")
    assert status == -signal.SIGKILL
    assert f"resumed from step 2 in {work}" in lines
    assert _complete_steps(work) == [2, 4]

    # Killed after step 8 is committed, before its input pipeline state is written.
    status, lines = _train(work, env, total, kill_at="data_state:8")
    assert status == -signal.SIGKILL
    assert f"resumed from step 4 in {work}" in lines
    assert _complete_steps(work) == [2, 4, 6, 8]
    assert not (work / "data_state" / "8").exists()

    # Killed from outside at an arbitrary step.
    status, lines = _train(work, env, total, kill_after_line="step 13/")
    assert status == -signal.SIGKILL
    assert (f"resumed from step 8 in {work}; no input pipeline state for 1 process(es): the "
            f"data order restarts") in lines
    newest = _complete_steps(work)[-1]
    assert newest >= 13 - CHECKPOINT_INTERVAL  # at most one interval lost

    status, lines = _train(work, env, total)
    assert status == 0
    assert lines[1] == f"resumed from step {newest} in {work}"
    assert lines[-1] == f"checkpoint: {work / 'checkpoints' / str(total)}"
    assert _partial_steps(work) == []  # every cut-short step was removed


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_and_the_same_command_resumes_there(
        tmp_path, training_environment):
    """A preemption notice (SIGTERM) between periodic checkpoints: the run ends its step, saves
    it (parameters, optimizer and input position), says so and exits with 143 (128 + 15);
    resumed, it ends exactly where an uninterrupted run does. (SIGINT takes the same path:
    `test_train`.)"""
    work, reference, env, total = tmp_path / "work", tmp_path / "reference", \
        training_environment, 40
    status, lines = _train(work, env, total, checkpoint_every=100,
                           signal_after_line=("step 4/", signal.SIGTERM))
    name = "SIGTERM"
    assert status == 143
    stopped = _complete_steps(work)
    assert len(stopped) == 1 and 4 <= stopped[0] < total  # no periodic checkpoint before it
    step = stopped[0]
    assert lines[-1] == (f"stopped by {name} after step {step} of {total}: checkpoint {step} "
                         f"saved in {work}; the same command resumes from it")
    assert lines[-2].startswith(f"step {step}/{total} ")  # the last step done is the one saved
    assert (work / "data_state" / str(step) / "process_0_of_1.index").is_file()
    assert not (work / "final_metrics.json").exists()

    status, lines = _train(work, env, total, checkpoint_every=100)
    assert status == 0
    assert lines[1] == f"resumed from step {step} in {work}"
    assert lines[3].startswith(f"step {step + 1}: compiled and ran")
    assert _train(reference, env, total, checkpoint_every=100)[0] == 0
    resumed, _, _ = checkpoints.restore_params(work, step=total)
    uninterrupted, _, _ = checkpoints.restore_params(reference, step=total)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(resumed),
                                                     jax.tree_util.tree_leaves(uninterrupted)))


# ------------------------------------------------------------------------------ full disks

def _in_tmpfs(script: str, size: str, timeout: int = 600) -> str:
    """Runs a shell script with $MNT a fresh tmpfs of `size` in a private mount namespace (the
    mount vanishes with it); returns its stdout. Skips (with the reason) where the machine
    cannot mount one."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and unshare")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    wrapped = f'set -u\nMNT=$(mktemp -d)\nmount -t tmpfs -o size={size} tmpfs "$MNT"\n{script}'
    out = subprocess.run(["unshare", "-m", "sh", "-c", wrapped], capture_output=True, text=True,
                         cwd=REPO, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny JICD checkpoint with its coding tables stored, and its codec."""
    _, params = tiny_model("jicd")
    checkpoint = save_checkpoint(tmp_path_factory.mktemp("run") / "tiny", "jicd", params)
    return checkpoint, Codec.from_checkpoint(checkpoint)


def test_compress_onto_a_full_disk_fails_with_one_line_and_leaves_no_file(
        tiny_checkpoint, tmp_path, monkeypatch, capsys):
    checkpoint, _ = tiny_checkpoint
    images.write_png(tmp_path / "in.png", generated_image(64, 64))
    out = tmp_path / "out"
    out.mkdir()

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(atomic_write.os, "fsync", disk_full)
    assert main(["compress", "--checkpoint", checkpoint, str(tmp_path / "in.png"),
                 str(out / "in.jdc")]) == 1
    assert capsys.readouterr().err == \
        f"jdc_jax: error: {out / 'in.jdc'}: No space left on device\n"
    assert os.listdir(out) == []  # neither the file nor its temporary


@pytest.mark.slow
def test_compress_onto_a_full_tmpfs_fails_with_one_line_and_leaves_no_file(tiny_checkpoint,
                                                                           tmp_path):
    checkpoint, codec = tiny_checkpoint
    image = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    images.write_png(tmp_path / "noise.png", image)
    free = 4 * 1024  # one page: a 64 KiB tmpfs less a 60 KiB filler
    assert len(codec.compress(image)) > free  # so the write fails part way
    stdout = _in_tmpfs(textwrap.dedent(f"""
        head -c {64 * 1024 - free} /dev/zero > "$MNT/filler"
        {sys.executable} -m jdc_jax compress --checkpoint {checkpoint} {tmp_path / 'noise.png'} \\
            "$MNT/noise.jdc" 2> {tmp_path / 'stderr'}
        echo "status $?"
        ls -A "$MNT"
    """), size="64k")
    assert stdout.splitlines() == ["status 1", "filler"]
    error = (tmp_path / "stderr").read_text()
    assert error.endswith("/noise.jdc: No space left on device\n")
    assert error.splitlines()[-1].startswith("jdc_jax: error: ")
    assert len([line for line in error.splitlines() if "error" in line]) == 1


@pytest.mark.slow
def test_a_checkpoint_write_onto_a_full_disk_fails_clearly_and_training_resumes_after(
        tmp_path, training_environment):
    train = (f"{sys.executable} -m jdc_jax.main {' '.join(TRAINING_FLAGS)} "
             f'--workdir="$MNT/work" --config.checkpoint_every_steps={CHECKPOINT_INTERVAL}')
    env = " ".join(f"{name}={training_environment[name]}" for name in
                   ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "TF_CPP_MIN_LOG_LEVEL"))
    # Step 2's checkpoint is written with room to spare; then the disk is shrunk to what it
    # uses plus 512 KiB: room for the logs of steps 3-4, not for a checkpoint (1.3-1.7 MiB with
    # its input state, which varies with what is prefetched), so step 4's write fails.
    stdout = _in_tmpfs(textwrap.dedent(f"""
        env {env} {train} --config.num_train_steps=2 > /dev/null 2> /dev/null
        echo "status $?"
        ls "$MNT/work/checkpoints"
        used=$(df -k "$MNT" | awk 'NR == 2 {{print $3}}')
        mount -o remount,size=$((used + 512))k "$MNT"
        env {env} {train} --config.num_train_steps=6 > {tmp_path / 'first.out'} \\
            2> {tmp_path / 'first.err'}
        echo "status $?"
        ls "$MNT/work/checkpoints"
        mount -o remount,size=32m "$MNT"
        env {env} {train} --config.num_train_steps=6 > {tmp_path / 'second.out'} 2> /dev/null
        echo "status $?"
        ls "$MNT/work/checkpoints"
    """), size="32m")
    prepared, failed, resumed = stdout.split("status ")[1:]
    assert prepared.splitlines() == ["0", "2"]
    listing = failed.splitlines()
    assert listing[0] == "1"
    assert listing[1] == "2" and listing[2].startswith("4.orbax-checkpoint-tmp")
    last_line = (tmp_path / "first.err").read_text().splitlines()[-1]
    assert last_line.startswith("error: checkpoint step 4 could not be written completely in ")
    assert "No space left on device" in last_line
    assert last_line.endswith("the newest complete checkpoint, step 2, is intact: training "
                              "resumes from it once the cause is fixed (a partial step is never "
                              "loaded)")
    assert resumed.splitlines() == ["0", "4", "6"]  # partial step 4 removed and rewritten; 2 kept
    second = (tmp_path / "second.out").read_text().splitlines()
    assert second[1].startswith("resumed from step 2 in ")


# ------------------------------------------------------------------------------ bad images

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares width x height 8-bit RGB."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data)))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _write_bad_image(kind: str, path) -> None:
    if kind == "16-bit PNG":
        Image.fromarray(np.full((40, 50), 1000, np.uint16)).save(path)
    elif kind == "CMYK JPEG":
        Image.new("CMYK", (50, 40), (155, 55, 0, 0)).save(path, quality=95)
    elif kind == "animated GIF":
        frames = [Image.new("RGB", (40, 30), (value, value, value)) for value in (10, 200, 90)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    elif kind == "0-byte file":
        path.write_bytes(b"")
    elif kind == "text named .png":
        path.write_text("hello, not a picture\n")
    elif kind == "1x1 image":
        Image.new("RGB", (1, 1), (77, 120, 200)).save(path)
    elif kind == "PNG bomb":
        path.write_bytes(_png_header_only(100_000, 100_000))
    elif kind == "PNG bomb within the side limit":
        path.write_bytes(_png_header_only(20_000, 10_000))  # 200 megapixels


# kind -> (file name, exit status, the one stderr line or the notes of a written file)
BAD_IMAGES = {
    "16-bit PNG": ("deep.png", 1, "16-bit images are not supported: {path} (mode I;16); "
                                  "convert it to 8 bits per channel"),
    "CMYK JPEG": ("cmyk.jpg", 0, "note: {path}: converted CMYK to RGB"),
    "animated GIF": ("moving.gif", 0, "note: {path}: animated image of 3 frames; read its "
                                      "first frame\nnote: {path}: converted P to RGB"),
    "0-byte file": ("empty.png", 1, "not an image file: {path}"),
    "text named .png": ("text.png", 1, "not an image file: {path}"),
    "1x1 image": ("one.png", 0, ""),
    "PNG bomb": ("bomb.png", 1, "image too large: {path} declares more pixels than Pillow "
                                "decodes safely (Image size (10000000000 pixels) exceeds limit "
                                "of 178956970 pixels, could be decompression bomb DOS attack.)"),
    "PNG bomb within the side limit": (
        "bomb2.png", 1, "image too large: {path} declares more pixels than Pillow decodes "
                        "safely (Image size (200000000 pixels) exceeds limit of 178956970 "
                        "pixels, could be decompression bomb DOS attack.)"),
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_bad_images_to_compress_give_one_line_errors_or_correct_files(kind, tiny_checkpoint,
                                                                      tmp_path, capsys):
    checkpoint, codec = tiny_checkpoint
    name, status, message = BAD_IMAGES[kind]
    path = tmp_path / name
    _write_bad_image(kind, path)
    capsys.readouterr()
    assert main(["compress", "--checkpoint", checkpoint, str(path),
                 str(tmp_path / "out.jdc")]) == status
    captured = capsys.readouterr()
    expected = message.format(path=path)
    if status:
        assert captured.err == f"jdc_jax: error: {expected}\n"
        assert not (tmp_path / "out.jdc").exists()
        return
    assert captured.err == (expected + "\n" if expected else "")
    data = (tmp_path / "out.jdc").read_bytes()
    pixels = images.read_image(path)
    assert data == codec.compress(pixels)  # the file of the pixels as read
    height, width = {"CMYK JPEG": (40, 50), "animated GIF": (30, 40), "1x1 image": (1, 1)}[kind]
    assert codec.decompress(data).shape == (height, width, 3)
    if kind == "animated GIF":
        np.testing.assert_array_equal(pixels, 10)  # the first frame
    if kind == "1x1 image":
        np.testing.assert_array_equal(pixels, [[[77, 120, 200]]])
