"""Command line of the ``.jdc`` codec.

    python -m jdc_jax compress   (--checkpoint CKPT | --model NAME [--rate-point K])
                                 INPUT OUTPUT.jdc [--layers full|base]
                                 [--entropy-path integer|float]
    python -m jdc_jax decompress [--checkpoint CKPT | --model NAME [--rate-point K]]
                                 INPUT.jdc OUTPUT.png [--output denoised|noisy]
                                 [--max-pixels N]
    python -m jdc_jax info INPUT.jdc
    python -m jdc_jax models

compress: INPUT is an image file (PNG, JPEG, BMP, PPM; grey and alpha are converted with a note)
or a folder, whose images (recursively) are written to OUTPUT as a folder of .jdc files with the
same relative paths. decompress writes a PNG. info prints the header fields and the bytes and
bits per pixel of each stream as JSON, without loading a model. CKPT is a work directory, its
checkpoints/ directory or one step directory (see `jdc_jax.codec.api.Codec.from_checkpoint`).
NAME is a model shipped in the package (`jdc_jax.zoo`; `models` lists them with their rate
points; the highest rate point unless --rate-point is given). decompress without a model finds
the shipped model whose identifier the file's header names. decompress refuses a file that
declares more than --max-pixels pixels (default 100 megapixels, `codec.pixel_cap`), before it
loads a model or allocates anything of that size.

Outputs are written atomically (temporary file, then rename). Errors (missing or foreign files,
damaged chunks, a file written with another model, a missing checkpoint, an output the file
cannot give) print one line, ``jdc_jax: error: ...``, and exit with status 1; usage errors exit
with status 2. This path imports neither TensorFlow nor, for `info`, JAX.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from jdc_jax.codec import file_format, pixel_cap
from jdc_jax.codec.file_info import file_info
from jdc_jax.atomic_write import write_bytes_atomic

def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        print(f"jdc_jax: error: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jdc_jax", description="Compress images to scalable .jdc files "
        "(a denoised base layer and a noise enhancement layer) and decode them.")
    commands = parser.add_subparsers(dest="command", required=True)

    compress = commands.add_parser("compress", help="image (or folder of images) -> .jdc")
    _add_model_arguments(compress)
    compress.add_argument("input", help="image file or folder of images")
    compress.add_argument("output", help=".jdc file (or folder, for a folder input)")
    compress.add_argument("--layers", choices=("full", "base"), default="full",
                          help="full: side, base and enhancement layers; base: no enhancement "
                               "layer (denoised output only)")
    compress.add_argument("--entropy-path", choices=("integer", "float"), default=None,
                          help="how the coding-table indexes are derived: integer (the default "
                               "for a model with an integer entropy network: decodes on every "
                               "platform) or float")
    compress.set_defaults(run=_compress)

    decompress = commands.add_parser("decompress", help=".jdc -> PNG")
    _add_model_arguments(decompress, required=False)
    decompress.add_argument("input", help=".jdc file")
    decompress.add_argument("output", help="PNG file to write")
    decompress.add_argument("--output", dest="product", default="denoised",
                            choices=("denoised", "noisy", "reconstruction"),
                            help="denoised (base layer), noisy (JICD: needs the enhancement "
                                 "layer) or reconstruction (single-output models)")
    decompress.add_argument("--max-pixels", type=_positive_int,
                            default=pixel_cap.DEFAULT_MAX_PIXELS,
                            help="refuse files that declare more pixels than this (default "
                                 f"{pixel_cap.DEFAULT_MAX_PIXELS}: a guard against "
                                 "decompression bombs)")
    decompress.set_defaults(run=_decompress)

    info = commands.add_parser("info", help="header fields and stream sizes of a .jdc file")
    info.add_argument("input", help=".jdc file")
    info.set_defaults(run=_info)

    models = commands.add_parser("models", help="the models shipped in the package")
    models.set_defaults(run=_models)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--checkpoint", help="training work directory or checkpoint directory")
    source.add_argument("--model", help="name of a shipped model (see `python -m jdc_jax models`)")
    parser.add_argument("--rate-point", type=int, default=None,
                        help="rate point of --model (default: its highest)")


def _load_codec(args, header: file_format.Header | None = None):
    from jdc_jax import zoo  # JAX is imported only by the commands that need it

    if args.rate_point is not None and args.model is None:
        raise ValueError("--rate-point selects a rate point of --model; give --model NAME")
    if args.model is not None:
        return zoo.load(args.model, args.rate_point)
    if args.checkpoint is not None:
        from jdc_jax.codec.api import Codec

        return Codec.from_checkpoint(args.checkpoint)
    name, rate_point = _shipped_model_of(header)
    return zoo.load(name, rate_point)


def _shipped_model_of(header: file_format.Header) -> tuple[str, int]:
    from jdc_jax import zoo

    wanted = header.model_id.hex()
    for name, points in zoo.available().items():
        for rate_point in points:
            card = zoo.card(name, rate_point)
            if wanted in (card.get("model_id"), card.get("integer_model_id")):
                return name, rate_point
    raise ValueError(f"the file was written by model {wanted[:16]}..., which is not shipped "
                     f"in the package; give --checkpoint")


def _compress(args) -> None:
    from jdc_jax import images

    if os.path.isdir(args.input):
        sources = images.list_images(args.input)
        targets = [Path(args.output) / Path(os.path.relpath(source, args.input)).with_suffix(
            ".jdc") for source in sources]
    else:
        if not os.path.isfile(args.input):
            raise FileNotFoundError(f"input image not found: {args.input}")
        sources, targets = [args.input], [Path(args.output)]
    codec = _load_codec(args)
    progress = _progress(len(sources), "compress")
    total_bits = total_pixels = 0
    for source, target in zip(sources, targets):
        data = codec.compress(images.read_image(source), layers=args.layers,
                              entropy_path=args.entropy_path)
        write_bytes_atomic(target, data)
        info = file_info(data)
        total_bits += 8 * len(data)
        total_pixels += info["num_pixels"]
        if progress is None:
            print(f"{target}: {len(data)} bytes, {info['bits_per_pixel']['total']:.4f} bpp "
                  f"(denoised product {info['bits_per_pixel']['base_only']:.4f} bpp)")
        else:
            progress.update(1)
    if progress is not None:
        progress.close()
        print(f"{args.output}: {len(sources)} files, {total_bits / total_pixels:.4f} bpp")


def _decompress(args) -> None:
    from jdc_jax import images

    data = _read(args.input)
    # A damaged or foreign file fails before a model is loaded.
    header = file_format.parse_file(data).header
    pixel_cap.check_pixels(header.height, header.width, args.max_pixels)
    image = _load_codec(args, header).decompress(data, output=args.product,
                                                 max_pixels=args.max_pixels)
    images.write_png(args.output, image)
    print(f"{args.output}: {image.shape[0]}x{image.shape[1]} {args.product}")


def _info(args) -> None:
    print(json.dumps(file_info(_read(args.input)), indent=2))


def _models(args) -> None:
    from jdc_jax import zoo

    shipped, denoisers = zoo.available(), zoo.denoisers()
    if not shipped and not denoisers:
        print("no models are shipped in this installation")

    def trained_on(card: dict) -> str:
        """How the entry was trained: its noise and, where the card says, its steps (an entry
        exported while its run goes on has fewer than the run plans), the entry it was
        fine-tuned from, and a later fine-tune of some modules with the rest frozen."""
        noise = card["noise"]
        text = "trained without noise" if noise == "none" else f"trained on {noise} noise"
        steps = card.get("training_steps")
        if steps is not None:
            text += f" for {int(steps):,} steps"
        donor = card.get("init_from")
        if isinstance(donor, dict) and donor.get("name"):
            text += f" from {donor['name']}" + (
                "" if donor.get("rate_point") is None else f" rate point {donor['rate_point']}")
        partial = card.get("partial_fine_tune")
        if isinstance(partial, dict) and partial.get("trained_modules"):
            text += (f", then {', '.join(partial['trained_modules'])} alone for "
                     f"{int(partial['steps']):,} more steps")
        return text

    for name, points in shipped.items():
        for rate_point in points:
            card = zoo.card(name, rate_point)
            print(f"{name} --rate-point {rate_point}: {card['model']} "
                  f"({card['context_model']} context), lambda {card['lambda']}, "
                  f"{trained_on(card)}; {card['description']}")
    for name in denoisers:
        card = zoo.denoiser_card(name)
        print(f"{name} (denoiser, zoo:{name}): {card['model']}, {trained_on(card)}; "
              f"{card['description']}")


def _progress(count: int, what: str):
    """A tqdm bar on stderr for several files, None for one."""
    if count < 2:
        return None
    from tqdm import tqdm

    return tqdm(total=count, desc=what, unit="image", file=sys.stderr)


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
