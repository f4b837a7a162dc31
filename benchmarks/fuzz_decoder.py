"""Decoder fuzz at scale: tens of thousands of mutated ``.jdc`` files (`jdc_jax.codec.fuzz`).

The CI test (tests/test_faults.py) decodes 2,400 mutated files; this script runs as many as asked
(default 12,000: 3,000 for each of four tiny randomly initialised codecs: JICD with the serial and
the checkerboard context, the mean-scale hyperprior and the factorized prior), prints the count
of every outcome and exits 1 if any case ended otherwise than in a decoded image of the declared
size, a `JdcFormatError` or a plain usage ValueError. A case that hangs for --hang-seconds ends
the run with every thread's stack.

    .venv/bin/python benchmarks/fuzz_decoder.py [--cases 12000] [--seed 0]

Models are the tests' tiny random ones (`tests/conftest.py`: no training, no download): the
decoder's robustness does not depend on the weights, and tiny models decode in milliseconds.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' tiny models

from jdc_jax.codec import fuzz  # noqa: E402
from tests.conftest import fuzz_targets  # noqa: E402

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=12_000, help="mutated files in all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)

    targets = fuzz_targets()
    per_codec = -(-args.cases // len(targets))
    total = collections.Counter()
    unexpected = []
    faulthandler.dump_traceback_later(args.hang_seconds, exit=True)
    start = time.perf_counter()
    for name, (codec, files, outputs) in targets.items():
        tally = fuzz.run(codec, files, per_codec, seed=args.seed, outputs=outputs)
        total.update(tally.counts)
        unexpected += [(name, *case) for case in tally.unexpected]
        print(f"{name}: {tally.total} files, slowest decode {tally.slowest[0] * 1e3:.1f} ms "
              f"({tally.slowest[1]}); " + ", ".join(tally.lines()), flush=True)
    faulthandler.cancel_dump_traceback_later()
    print(f"\n{sum(total.values())} mutated files in {time.perf_counter() - start:.1f} s "
          f"(seed {args.seed}):")
    for outcome, count in total.most_common():
        print(f"  {outcome}: {count}")
    for case in unexpected[:20]:
        print(f"UNEXPECTED {case}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
