"""The README's list of the files one default training step runs (fused EKSFT) is true: a traced step of
``EKSFTTrainer.training_step`` (forward and backward) runs exactly the eksft files the README names, at most nine,
each of them exists, and none is named twice."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import eksft
from eksft.train import build_trainer

ROOT = Path(eksft.__file__).resolve().parent.parent
README = ROOT / "README.md"


def readme_files() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- step-files[^>]*-->(.*?)<!-- /step-files -->", text, re.S)
    assert block, "README.md lost its step-files block"
    return re.findall(r"^\d+\. `(eksft/[\w/]+\.py)`", block.group(1), re.M)


def traced_files(trainer, inputs) -> set[str]:
    seen: set[str] = set()
    package = str(ROOT / "eksft")

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(package):
            seen.add(str(Path(frame.f_code.co_filename).relative_to(ROOT)))

    sys.setprofile(profile)
    threading.setprofile(profile)  # autograd may run backward nodes in its own thread
    try:
        trainer.training_step(trainer.model, inputs)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return seen


def test_readme_names_the_files_of_one_default_step(make_config):
    named = readme_files()
    assert len(named) == len(set(named)) and 1 <= len(named) <= 9, named
    for path in named:
        assert (ROOT / path).is_file(), f"README names {path}, which does not exist"
    trainer = build_trainer(make_config(max_steps=1))
    assert (trainer.args.loss_type, trainer.loss_implementation) == ("eksft", "fused")  # the defaults
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by transformers' training loop, which this skips
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    traced_files(trainer, inputs)  # a first step: lazy set-up (workspaces, TRL's first-call paths) out of the way
    ran = traced_files(trainer, inputs)
    assert ran == set(named), (
        f"runs but not named: {sorted(ran - set(named))}; named but not run: {sorted(set(named) - ran)}"
    )
