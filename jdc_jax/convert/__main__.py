"""Command line: python -m jdc_jax.convert compressai --arch ARCH --weights FILE --out DIR."""

from __future__ import annotations

import argparse
import sys

from jdc_jax.convert import compressai


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jdc_jax.convert",
                                     description="Convert other libraries' weights into a "
                                                 "jdc_jax checkpoint directory.")
    sources = parser.add_subparsers(dest="source", required=True)
    from_compressai = sources.add_parser(
        "compressai", help="a CompressAI state dict (.pth / .pth.tar with PyTorch, or .npz)")
    from_compressai.add_argument("--arch", required=True, choices=sorted(compressai.ARCHITECTURES))
    from_compressai.add_argument("--weights", required=True, help="the state dict file")
    from_compressai.add_argument("--out", required=True,
                                 help="new checkpoint directory (must not exist or be empty)")
    args = parser.parse_args(argv)
    try:
        out = compressai.convert_file(args.arch, args.weights, args.out)
    except (compressai.ConversionError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.arch}); use it as --checkpoint {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
