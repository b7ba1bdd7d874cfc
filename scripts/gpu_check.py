"""Every GPU path of the harness, run and measured in one command (see benchmarks/gpu_check.py, docs/scaling.md).

    python scripts/gpu_check.py                        # on a GPU machine
    python scripts/gpu_check.py --only fast_path,ddp   # some parts
    python scripts/gpu_check.py --dry                  # CPU stand-ins at tiny sizes
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
