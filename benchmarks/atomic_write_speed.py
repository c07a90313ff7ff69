"""What one atomic write (`pipeline.atomic.atomic_path`) costs in a folder that already holds many
files, as a prediction folder does after thousands of images (three outputs each).

    python benchmarks/atomic_write_speed.py [--files 0 3000 30000] [--writes 50]

Temporaries live in the folder's own ``.atomic`` subfolder, so a write lists only the writes in
progress; when they lay beside the outputs, each write listed the whole folder twice (48 ms at
30,000 files on a 2-core machine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pipeline.atomic import atomic_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[0, 3000, 30000])
    parser.add_argument("--writes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        there = 0
        for files in sorted(args.files):
            for i in range(there, files):
                (Path(folder) / f"f{i:06d}_labels.tif").touch()
            there = max(there, files)
            start = time.perf_counter()
            for i in range(args.writes):
                with atomic_path(Path(folder) / f"new{i}_objects.csv") as tmp:
                    tmp.write_text("label,area_px\n")
            each = (time.perf_counter() - start) / args.writes
            print(f"folder of {files} files: {each * 1e3:.2f} ms per atomic write")


if __name__ == "__main__":
    main()
