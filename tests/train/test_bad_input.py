"""Bad input and faults, as a new user meets them (issue 11), through the CLI's own ``main`` in this process (tiny
random Llama, CPU, 1 thread, offline).

``CASES`` is one table: each row runs ``eksft COMMAND ...`` against an output folder that already holds an earlier
run (or, for the pipeline, a stage folder holding one), and asserts the exit code, that the one ``eksft COMMAND:``
line names the field / file / line and the fix, that no traceback is printed, and that no file of the earlier run
changed (the data and model cases pass ``--overwrite_output_dir true``: a failed run must not cost the old one).
The fault tests below train for real: a checkpoint cut short by a crash and a torn metrics line do not block
``--resume_from_checkpoint latest``; the first line logged after a resume equals the uninterrupted run's; a run
diverging at a huge learning rate leaves no non-finite checkpoint and names a finite one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time

import pytest
import torch
import yaml

from eksft.cli import main
from eksft.jobs.metrics import read_metrics
from eksft.jobs.output_dir import checkpoints, weights_finite
from eksft.models.tiny import save_tiny
from eksft.train import build_trainer
from tests.helpers import StopAt

from .conftest import arithmetic_records, write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = [
    "--model_name_or_path",
    "tiny-random-llama",
    "--max_steps",
    "1",
    "--per_device_train_batch_size",
    "2",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--max_length",
    "64",
    "--disable_tqdm",
    "true",
    "--gradient_checkpointing",
    "false",
    "--dataloader_pin_memory",
    "false",
    "--seed",
    "0",
]
OVERWRITE = ["--overwrite_output_dir", "true"]


# ----------------------------------------------------------------------------------------------------- helpers
def earlier_run(folder) -> str:
    """A finished run as `eksft train` leaves it: model, metrics.jsonl (10 lines), two complete checkpoints. The
    files are stand-ins (the refusals happen before anything reads them)."""
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps({"step": i, "loss": 4.0 - 0.1 * i}) + "\n" for i in range(1, 11))
    for name in ("model.safetensors", "config.json"):
        with open(os.path.join(folder, name), "w") as f:
            f.write(name)
    for step in (2, 4):
        ckpt = os.path.join(folder, f"checkpoint-{step}")
        os.makedirs(ckpt)
        with open(os.path.join(ckpt, "trainer_state.json"), "w") as f:
            json.dump({"global_step": step}, f)
        with open(os.path.join(ckpt, "model.safetensors"), "w") as f:
            f.write("weights")
    return str(folder)


def snapshot(folder) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def cli(argv, capsys) -> tuple[int, list[str], float]:
    """``eksft ARGV`` in this process: (exit code, its ``eksft ...:`` lines on stderr, seconds)."""
    capsys.readouterr()
    start = time.time()
    rc = main([str(a) for a in argv])
    seconds = time.time() - start
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, [line for line in err.splitlines() if line.startswith("eksft ")], seconds


def user_folder(tmp_path, monkeypatch, records: int):
    """tmp_path as the working folder, offline, with ``records`` arithmetic records in `train.jsonl` and an earlier
    run in `run/`: where a new user types the command."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("EKSFT_DEBUG", raising=False)
    write_jsonl(tmp_path / "train.jsonl", arithmetic_records(records))
    earlier_run(tmp_path / "run")
    return tmp_path


@pytest.fixture
def env(tmp_path, monkeypatch):
    return user_folder(tmp_path, monkeypatch, records=8)


def write_lines(path, lines: list[str], mode="w") -> str:
    with open(path, mode + "b") as f:
        f.write(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return str(path)


def good(i: int) -> str:
    return json.dumps({"prompt": f"What is {i} + 1?", "completion": f"{i + 1}."})


# ------------------------------------------------------------------------------------------------------ setups
def incomplete_checkpoint(tmp):
    os.makedirs(tmp / "run" / "checkpoint-6")
    (tmp / "run" / "checkpoint-6" / "model.safetensors").write_bytes(b"cut")  # killed before trainer_state.json


def only_incomplete(tmp):
    for step in (2, 4):
        os.remove(tmp / "run" / f"checkpoint-{step}" / "trainer_state.json")


def models_folder(tmp):
    os.makedirs(tmp / "models")


def bad_utf8(tmp):
    write_lines(tmp / "train.jsonl", [good(1), good(2), b'{"prompt": "caf\xe9?", "completion": "yes."}'])


def number_completion(tmp):
    write_lines(tmp / "train.jsonl", [good(1), json.dumps({"prompt": "2 + 3?", "completion": 5})])


def null_prompt(tmp):
    write_lines(tmp / "train.jsonl", [good(1), good(2), json.dumps({"prompt": None, "completion": "5."})])


def duplicate_key(tmp):
    (tmp / "c.yaml").write_text(
        "model_name_or_path: tiny-random-llama\nlearning_rate: 1e-3\nmax_steps: 1\nlearning_rate: 1e-2\n"
    )


def malformed_json(tmp):
    write_lines(tmp / "train.jsonl", [good(1), '{"prompt": "2 + 3?", "completion": "5."', good(3)])


def missing_field(tmp):
    write_lines(tmp / "train.jsonl", [good(1), json.dumps({"prompt": "2 + 3?", "answer": "5."})])


def unknown_field(tmp):
    (tmp / "c.yaml").write_text("model_name_or_path: tiny-random-llama\nlearnin_rate: 1e-3\n")


def misspelled_loss_type(tmp):  # as a flag, argparse's choices refuse it (its usage line, exit code 2)
    (tmp / "c.yaml").write_text("model_name_or_path: tiny-random-llama\nloss_type: ekstf\n")


def other_vocabulary(tmp):
    save_tiny(tmp / "ref", vocab_size=150)


def pipeline_over_a_run(tmp):
    from tests.pipeline.test_pipeline import tiny_pipeline

    (tmp / "pipe.yaml").write_text(yaml.safe_dump(tiny_pipeline(str(tmp / "pipe"))))
    os.makedirs(tmp / "pipe" / "sft")
    shutil.move(str(tmp / "run"), str(tmp / "pipe" / "sft" / "sft"))


def read_only_folder(tmp):
    os.makedirs(tmp / "ro")
    os.chmod(tmp / "ro", 0o555)


RO = "/proc/eksft-read-only/run" if os.geteuid() == 0 else "ro/run"  # root writes anywhere but /proc

#: id -> (argv after the command's data/output flags, setup, exit code, fragments the one line must contain).
#: "{tmp}" is the test's folder. Items 1-6 of issue 11, then the cases that worked before it.
CASES = {
    # 1. a used output_dir (train, rl, a pipeline stage)
    "1-used-output-dir": (
        ["train", *FAST],
        None,
        2,
        [
            "output_dir 'run' already holds a run",
            "metrics.jsonl",
            "model.safetensors",
            "checkpoint-4",
            "--resume_from_checkpoint latest",
            "--overwrite_output_dir true",
        ],
    ),
    "1-rl-used-output-dir": (
        ["rl", "--model_name_or_path", "tiny-random-llama", "--use_vllm", "false", "--report_to", "none"],
        None,
        2,
        ["eksft rl: output_dir 'run' already holds a run", "--overwrite_output_dir true"],
    ),
    "1-pipeline-stage": (
        ["pipeline", "pipe.yaml"],
        pipeline_over_a_run,
        2,
        ["eksft pipeline:", "sft/sft", "holds a run this pipeline did not start", "choose another output_dir"],
    ),
    # 3. checkpoints cut short by a crash
    "3-resume-incomplete": (
        ["train", *FAST, "--resume_from_checkpoint", "run/checkpoint-6"],
        incomplete_checkpoint,
        2,
        [
            "run/checkpoint-6",
            "is incomplete",
            "trainer_state.json",
            "--resume_from_checkpoint run/checkpoint-4",
            "latest",
        ],
    ),
    "3-resume-true-none-complete": (
        ["train", *FAST, "--resume_from_checkpoint", "true"],
        only_incomplete,
        2,
        [
            "resume_from_checkpoint=true",
            "only incomplete checkpoints",
            "checkpoint-2, checkpoint-4",
            "drop --resume_from_checkpoint",
        ],
    ),
    # 4. paths that do not exist, near-misses, the hub while offline (each within seconds)
    "4-missing-model-path": (
        ["train", *FAST, *OVERWRITE, "--model_name_or_path", "models/nope"],
        models_folder,
        2,
        ["EKSFTConfig.model_name_or_path='models/nope'", "no such file or folder", "existing model folder"],
    ),
    "4-alias-typo": (
        ["train", *FAST, *OVERWRITE, "--model_name_or_path", "tiny-random-lama"],
        None,
        2,
        ["EKSFTConfig.model_name_or_path='tiny-random-lama'", "did you mean 'tiny-random-llama'?"],
    ),
    "4-missing-ref-model": (
        ["train", *FAST, *OVERWRITE, "--ref_model", "./refs/nope"],
        None,
        2,
        ["EKSFTConfig.ref_model='./refs/nope'", "no such file or folder"],
    ),
    "4-hub-offline": (
        ["train", *FAST, *OVERWRITE, "--model_name_or_path", "some-org/some-model"],
        None,
        2,
        [
            "EKSFTConfig.model_name_or_path='some-org/some-model'",
            "hub",
            "unreachable",
            "HF_HUB_OFFLINE=1",
            "local folder",
        ],
    ),
    "4-eval-missing-model": (
        ["eval", "./models/nope", "--benchmark", "arithmetic-easy", "--output-dir", "ev"],
        None,
        2,
        ["eksft eval: model='./models/nope'", "no such file or folder"],
    ),
    # 6. data and config errors say what and where
    "6-all-truncated": (
        ["train", *FAST, *OVERWRITE, "--max_length", "8"],
        None,
        2,
        ["all 8 train records were dropped", "max_length=8", "tokens long", "set max_length above"],
    ),
    "6-not-utf8": (
        ["train", *FAST, *OVERWRITE],
        bad_utf8,
        2,
        ["train.jsonl line 3 (byte offset", "not valid UTF-8 (byte 0xe9)", "save the file as UTF-8"],
    ),
    "6-number-completion": (
        ["train", *FAST, *OVERWRITE],
        number_completion,
        2,
        ["train.jsonl line 2", "'completion' must be a string", "got int"],
    ),
    "6-null-prompt": (
        ["train", *FAST, *OVERWRITE],
        null_prompt,
        2,
        ["train.jsonl line 3", "'prompt' must be a string", "got null"],
    ),
    "6-duplicate-yaml-key": (
        ["train", "c.yaml"],
        duplicate_key,
        2,
        ["c.yaml line 4", "'learning_rate' is given twice (lines 2 and 4)", "keep one"],
    ),
    "6-read-only-output-dir": (
        ["train", *FAST, "--output_dir", RO],
        read_only_folder,
        2,
        ["EKSFTConfig.output_dir", "cannot write to", "make it writable"],
    ),
    # worked before issue 11 (now one line, exit code 2)
    "ok-malformed-json": (["train", *FAST, *OVERWRITE], malformed_json, 2, ["train.jsonl line 2: invalid JSON"]),
    "ok-missing-field": (
        ["train", *FAST, *OVERWRITE],
        missing_field,
        2,
        ["train.jsonl line 2", "missing field 'completion'", "completion_column"],
    ),
    "ok-unknown-field": (
        ["train", "c.yaml"],
        unknown_field,
        2,
        ["unknown field(s) ['learnin_rate']", "`eksft train --help` lists every field"],
    ),
    "ok-misspelled-loss-type": (
        ["train", "c.yaml"],
        misspelled_loss_type,
        2,
        ["EKSFTConfig.loss_type: 'ekstf' is not a loss", "choose one of"],
    ),
    "ok-rho-out-of-range": (
        ["train", *FAST, *OVERWRITE, "--rho", "1.5"],
        None,
        2,
        ["EKSFTConfig.rho: must be in [0, 1], got 1.5"],
    ),
    "ok-vocabulary-mismatch": (
        ["train", *FAST, *OVERWRITE, "--ref_model", "ref", "--lambda_kl", "0.1"],
        other_vocabulary,
        2,
        ["EKSFTConfig.ref_model='ref' has vocabulary size 150", "one token space"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_keeps_the_earlier_run(case, env, capsys):
    argv, setup, code, fragments = CASES[case]
    if setup is not None:
        setup(env)
    run = env / "pipe" / "sft" / "sft" if case == "1-pipeline-stage" else env / "run"
    before = snapshot(run)
    command, rest = argv[0], list(argv[1:])
    if command in ("train", "rl") and "c.yaml" not in rest:
        rest = ["--train_file", "train.jsonl", "--output_dir", "run", *rest]  # later flags win
    rc, lines, seconds = cli([command, *rest], capsys)
    assert rc == code, lines
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert lines[0].startswith(f"eksft {command}: ")
    assert snapshot(run) == before  # no file of the earlier run changed (or went)
    assert seconds < 60  # no network retries (they took ~50 s before)


def test_debug_shows_the_traceback(env, monkeypatch):
    argv = ["train", "--train_file", "train.jsonl", "--output_dir", "run", *FAST]
    with pytest.raises(ValueError, match="already holds a run"):
        main(["--debug", *argv])
    monkeypatch.setenv("EKSFT_DEBUG", "1")
    with pytest.raises(ValueError, match="already holds a run"):
        main(argv)


def test_whitespace_completion_in_a_dataset_is_dropped_in_the_one_warning(make_config, caplog):
    """A ``datasets.Dataset`` given in Python (files are refused record by record: CASES) keeps the drop and its one
    warning; all blank is one error, not TRL's StopIteration."""
    from datasets import Dataset

    from eksft.jobs.policy import policy_and_tokenizer
    from eksft.train import EKSFTTrainer

    cfg = make_config()
    model, tokenizer = policy_and_tokenizer(cfg)
    records = arithmetic_records(6)
    records[1]["completion"], records[4]["completion"] = "   ", "\n\t"
    with caplog.at_level(logging.WARNING, logger="eksft.train.trainer"):
        trainer = EKSFTTrainer(model, args=cfg, train_dataset=Dataset.from_list(records), processing_class=tokenizer)
    assert len(trainer.train_dataset) == 4
    warnings = [r.getMessage() for r in caplog.records if "were dropped" in r.getMessage()]
    assert warnings == ["2 of 6 train records were dropped: 2 have an empty or whitespace-only completion."]
    blank = [{**r, "completion": " "} for r in records]
    with pytest.raises(ValueError, match="all 6 train records have an empty or whitespace-only completion"):
        EKSFTTrainer(model, args=cfg, train_dataset=Dataset.from_list(blank), processing_class=tokenizer)


# ------------------------------------------------------------------------------------------------------ faults
def train_options(out, **kw) -> dict:
    return {
        "model_name_or_path": "tiny-random-llama",
        "train_file": "train.jsonl",
        "output_dir": out,
        "max_steps": 6,
        "per_device_train_batch_size": 2,
        "logging_steps": 2,
        "save_strategy": "steps",
        "save_steps": 3,
        "learning_rate": 5e-3,
        "report_to": "none",
        "max_length": 64,
        "seed": 0,
        "disable_tqdm": True,
        "gradient_checkpointing": False,
        "dataloader_pin_memory": False,
        **kw,
    }


def train_argv(out, **kw) -> list[str]:
    flags = [(f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)) for k, v in train_options(out, **kw).items()]
    return ["train", *[x for flag in flags for x in flag]]


def test_resume_latest_past_a_cut_checkpoint_and_a_torn_line_logs_like_one_run(env, capsys):
    """Stopped after step 3 (checkpoint-3; logging every 2 steps, so step 3 is in no logged line yet), then killed
    while writing checkpoint-5 and metrics.jsonl: `latest` resumes from checkpoint-3 and every line logged after
    it (steps 4 and 6: the interval 3-4 spans the stop) equals the uninterrupted run's."""
    assert cli(train_argv("full"), capsys)[0] == 0
    want = {r["step"]: r for r in read_metrics("full") if "loss" in r}

    from eksft.commands.train import config_from

    first = build_trainer(config_from(None, train_options("cut")))
    first.add_callback(StopAt(3))
    first.train()
    assert [os.path.basename(c) for c in checkpoints("cut")] == ["checkpoint-3"]
    os.makedirs("cut/checkpoint-5")  # a crash while saving: weights half-written, no trainer_state.json
    with open("cut/checkpoint-5/model.safetensors", "wb") as f:
        f.write(b"\0" * 100)
    with open("cut/metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 3.8')  # torn last line

    rc, lines, _ = cli(train_argv("cut", resume_from_checkpoint="latest"), capsys)
    assert rc == 0, lines
    got = {r["step"]: r for r in read_metrics("cut") if "loss" in r}
    assert sorted(got) == sorted(want) == [2, 4, 6]
    for step in (2, 4, 6):
        for key in ("loss", "num_targets", "masked_fraction", "ce", "grad_norm"):
            assert got[step][key] == pytest.approx(want[step][key], rel=1e-5, abs=1e-6), (step, key)


def test_divergence_names_a_finite_checkpoint_and_saves_no_nan(env, capsys):
    # lr 1e30: one AdamW step moves every weight by ~1e30, so the next forward overflows fp32 on any release (at 1e6,
    # transformers 5.25 saturates the tiny model to a uniform distribution with zero gradient instead of diverging)
    rc, lines, _ = cli(train_argv("div", learning_rate=1e30, save_steps=1, logging_steps=1, max_steps=8), capsys)
    assert rc == 1 and len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("eksft train: training diverged at optimiser step ") and "non-finite" in line
    saved = checkpoints("div")
    assert saved, "the first steps are finite and were saved"
    assert all(weights_finite(c) for c in saved)  # no checkpoint with a NaN weight
    assert f"Last checkpoint with finite weights (checked): {saved[0]}." in line
    assert "lower learning_rate (now 1e+30)" in line and "--overwrite_output_dir true" in line
    assert not os.path.exists("div/model.safetensors")  # no final model either
    step = int(line.split("optimiser step ")[1].split(":")[0])
    assert os.path.basename(saved[0]) == f"checkpoint-{step - 1}"  # stopped before the step that went non-finite
    assert torch.isfinite(torch.tensor([r["loss"] for r in read_metrics("div") if "loss" in r])).all()
