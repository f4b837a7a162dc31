"""Splits the CBSD432 training photographs into a training and a validation folder (symlinks).

Learning-rate, width and step-budget choices are made on the validation images, never on Kodak,
which stays the test set. The split is fixed: sorted by file name, every 18th image (24 of 432)
is held out.

    python results/campaign/split_cbsd432.py ../shared/datasets/cbsd432 runs/data
"""

from __future__ import annotations

import argparse
import os
import sys

VALIDATION_EVERY = 18


def split(source: str, destination: str) -> tuple[int, int]:
    names = sorted(n for n in os.listdir(source) if n.lower().endswith((".jpg", ".png")))
    if len(names) < VALIDATION_EVERY:
        raise SystemExit(f"{source}: only {len(names)} images; expected the 432 of CBSD432")
    counts = {"train": 0, "val": 0}
    for index, name in enumerate(names):
        part = "val" if index % VALIDATION_EVERY == VALIDATION_EVERY - 1 else "train"
        folder = os.path.join(destination, f"cbsd432_{part}")
        os.makedirs(folder, exist_ok=True)
        link = os.path.join(folder, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(source, name)), link)
        counts[part] += 1
    return counts["train"], counts["val"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the cbsd432 folder")
    parser.add_argument("destination", help="where cbsd432_train/ and cbsd432_val/ go")
    args = parser.parse_args(argv)
    train, val = split(args.source, args.destination)
    print(f"{train} training and {val} validation images in {args.destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
