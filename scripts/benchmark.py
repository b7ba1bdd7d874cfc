"""Training throughput and peak memory of the harness vs a plain PyTorch loop.

    python scripts/benchmark.py            # LeNet/MNIST-5k and ResNet-20/synthetic, CPU (+ GPU if present)
    python scripts/benchmark.py --quick    # tiny sizes: checks the code paths, the figures mean nothing
    python scripts/benchmark.py --devices gpu -o trainer.precision=bf16-mixed -o channels_last=true

See ``bnres.benchmark`` for what is measured and how.
"""

import sys

from bnres.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
