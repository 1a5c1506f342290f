"""Stability check of test_multiprocess.py's 2-process launch (issue 11, item 7): run the launch N times, each in a
fresh folder, optionally beside a CPU burner, and count clean exits. Not a test module (pytest collects
``test_*.py`` only); run from the repository root:

    .venv/bin/python -m tests.train.multiprocess_stability 20 --burner

It prints one line per launch (exit code, seconds, and the crash signature when there is one) and the count.
``--code-root DIR`` runs another checkout's code and worker (e.g. ``git archive COMMIT eksft tests | tar -x -C DIR``),
for a before/after comparison.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

from tests.train import test_multiprocess
from tests.train.test_multiprocess import launch, prepare


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("runs", type=int, nargs="?", default=20)
    p.add_argument("--burner", action="store_true", help="a busy-looping python process beside the launches")
    p.add_argument("--code-root", default=None, help="run this checkout's eksft and worker instead")
    args = p.parse_args()
    if args.code_root:
        test_multiprocess.ROOT = args.code_root
        test_multiprocess.WORKER = str(pathlib.Path(args.code_root) / "tests" / "train" / "multiprocess_worker.py")
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.burner else None
    ok = 0
    try:
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="eksft-mp-") as tmp:
                root = pathlib.Path(tmp)
                prepare(root)
                start = time.time()
                proc = launch(root)
                crash = [
                    line
                    for line in (proc.stderr or "").splitlines()
                    if "terminate called" in line or "Signal" in line or "SIGABRT" in line
                ]
                ok += proc.returncode == 0
                print(
                    f"launch {i + 1}/{args.runs}: rc {proc.returncode} in {time.time() - start:.1f} s"
                    + (f"  {crash[:2]}" if crash else ""),
                    flush=True,
                )
                if proc.returncode != 0 and not crash:
                    print(proc.stderr[-2000:], flush=True)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    print(f"{ok}/{args.runs} launches exited cleanly", flush=True)
    return 0 if ok == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
