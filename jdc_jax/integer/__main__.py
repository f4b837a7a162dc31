"""python -m jdc_jax.integer calibrate --checkpoint CKPT [--images SOURCE] [--noise SPEC]
                                      [--limit N] [--crop PIXELS]
                                      [--weight-bits B] [--activation-bits B]

Converts a codec checkpoint's entropy parameters into integer networks (`calibrate`) and stores
them beside the checkpoint step as `integer_entropy.npz`; from then on `Codec.from_checkpoint`
writes the integer entropy path. SOURCE: "builtin" (default: the photographs shipped in
scikit-image), "folder:PATH" or a folder; SPEC: the noise added to the calibration images
(default: the checkpoint's training noise). Prints a JSON summary (file, integer model
identifier, largest accumulator bound). Errors print one line and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jdc_jax.integer",
                                     description="Integer entropy-parameter networks.")
    commands = parser.add_subparsers(dest="command", required=True)
    calibrate = commands.add_parser("calibrate", help="store a checkpoint's integer network")
    calibrate.add_argument("--checkpoint", required=True, help="work directory or step")
    calibrate.add_argument("--images", default="builtin",
                           help="calibration images: builtin, folder:PATH or a folder")
    calibrate.add_argument("--noise", default=None,
                           help="noise spec (default: the checkpoint's training noise)")
    calibrate.add_argument("--limit", type=int, default=0, help="at most this many images")
    calibrate.add_argument("--crop", type=int, default=256, help="centre crop side, pixels")
    calibrate.add_argument("--weight-bits", type=int, default=None)
    calibrate.add_argument("--activation-bits", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        summary = run_calibrate(args)
    except (ValueError, OSError) as error:
        print(f"jdc_jax.integer: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


def run_calibrate(args) -> dict:
    from jdc_jax.integer import calibrate

    bits = {name: value for name, value in (("weight_bits", args.weight_bits),
                                            ("activation_bits", args.activation_bits))
            if value is not None}
    return calibrate.calibrate_checkpoint(args.checkpoint, args.images, args.noise,
                                          crop=args.crop, limit=args.limit, **bits)


if __name__ == "__main__":
    sys.exit(main())
