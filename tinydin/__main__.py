"""Entry point of `python -m tinydin`; the commands live in tinydin.cli."""
import os
import sys

# tinydin's matrix products are small (tens to hundreds of rows and columns), so
# BLAS threads cost more in start-up and waiting than they save. On a 2-core
# machine shared with other jobs, DIN's training step ran at about 12k samples/s
# with one OpenBLAS thread and under 1k samples/s with the default two. Set
# before numpy is imported; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from tinydin.cli import main  # noqa: E402  (after the thread setting)

if __name__ == "__main__":
    sys.exit(main())
