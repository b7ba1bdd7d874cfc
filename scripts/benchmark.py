"""Speed of the harness against plain PyTorch (see docs/performance.md).

    python scripts/benchmark.py                 # steady-state training images/s of one run, harness vs plain loop
    python scripts/benchmark.py --quick         # tiny sizes: checks the code paths, the figures mean nothing
    python scripts/benchmark.py --devices gpu -o trainer.precision=bf16-mixed -o channels_last=true
    python scripts/benchmark.py --sweep         # whole-sweep wall time: scripts/train.py -m experiment=bn_lr seed=0 vs a plain script
    python scripts/benchmark.py --sweep --ways harness plain harness-2x1 plain-2x1   # and two 1-thread jobs at a time
    python scripts/benchmark.py --profile experiment=bn_lr seed=0    # where a sweep's time goes, item by item

The benchmarks live in ``benchmarks/`` (a checkout, not the installed package).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    if "--sweep" in argv:
        from benchmarks import sweep

        return sweep.main([a for a in argv if a != "--sweep"])
    if "--profile" in argv:
        from benchmarks import job_profile

        return job_profile.main([a for a in argv if a != "--profile"])
    from benchmarks import throughput

    return throughput.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
