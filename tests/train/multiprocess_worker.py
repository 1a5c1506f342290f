"""Worker of test_multiprocess.py, started by ``accelerate launch`` on every process: runs ``eksft train`` (the CLI's
own ``main``) once per argv list in the JSON file given, so several configs share one launch (process start-up and
imports cost most of the time on 2 CPU cores), then shuts the process group down. Not a test module (pytest collects
``test_*.py`` only)."""

from __future__ import annotations

import json
import os
import sys

import torch

torch.set_num_threads(1)  # two processes on a shared 2-core machine

from eksft.cli import main  # noqa: E402

if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        runs = json.load(f)
    for argv in runs:
        rc = main(argv)
        if rc:
            sys.exit(rc)
    # Both processes leave together and tear the gloo group down before interpreter exit: a group left to the
    # interpreter's teardown can abort a process after all runs finished ("terminate called without an active
    # exception"). `eksft train` also registers this at exit (eksft.jobs.command.shut_down_process_group).
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    # Even so, torch's C++ teardown at interpreter exit aborted a rank once on a loaded 2-core machine, after every
    # result was written ("terminate called without an active exception", exit -6, CI 2026-12-07, FSDP2). The test
    # reads the results from files, so the worker ends here without the interpreter's teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
