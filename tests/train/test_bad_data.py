"""Bad data files, as a new user meets them (issue 27), through ``eksft train`` / ``eksft rl`` in this process, with
the machinery of ``test_bad_input.py``: exit code 2, one ``eksft COMMAND:`` line naming the file, the record and the
field (or the extensions eksft reads), no traceback, the earlier run's files unchanged. Empty or whitespace-only
prompts and completions (some records, all records, a chat's last turn), a .csv (refused naming the extensions eksft
reads, not read as JSON Lines), a folder named like a file, a folder without data files. CPU, no model loads.
"""

from __future__ import annotations

import json
import os

import pytest

from .test_bad_input import FAST, OVERWRITE, cli, good, snapshot, user_folder, write_lines

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def env(tmp_path, monkeypatch):
    return user_folder(tmp_path, monkeypatch, records=8)


def blank_completion(tmp):  # some records
    write_lines(tmp / "train.jsonl", [good(1), json.dumps({"prompt": "2 + 3?", "completion": " \n"}), good(3)])


def all_blank_completions(tmp):  # ended in a StopIteration inside TRL's _prepare_dataset
    write_lines(tmp / "train.jsonl", [json.dumps({"prompt": f"{i} + 1?", "completion": ""}) for i in range(4)])


def blank_prompt(tmp):  # with gold answers, for eksft rl
    records = [{"prompt": f"What is {i} + 1?", "completion": f"{i + 1}.", "answer": str(i + 1)} for i in (1, 2)]
    records.append({"prompt": "\t", "completion": "5.", "answer": "5"})
    write_lines(tmp / "train.jsonl", [json.dumps(r) for r in records])


def blank_chat_answer(tmp):
    turn = [{"role": "user", "content": "2 + 3?"}, {"role": "assistant", "content": "  "}]
    write_lines(tmp / "train.jsonl", [json.dumps({"messages": turn})] * 2)


def csv_file(tmp):  # was read as JSON Lines ("line 1: invalid JSON")
    (tmp / "train.csv").write_text("prompt,completion\n2 + 3?,5.\n")


def folder_named_jsonl(tmp):
    os.makedirs(tmp / "data.jsonl")


def empty_folder(tmp):
    os.makedirs(tmp / "data")


#: id -> (argv, setup, exit code, fragments the one line must contain), as test_bad_input.CASES
CASES = {
    "27-blank-completion": (
        ["train", *FAST, *OVERWRITE],
        blank_completion,
        2,
        ["train.jsonl line 2: field 'completion' is empty or only whitespace", "(1 of 3 records", "remove the record"],
    ),
    "27-all-blank-completions": (
        ["train", *FAST, *OVERWRITE],
        all_blank_completions,
        2,
        ["train.jsonl line 1: field 'completion' is empty", "(all 4 records are, this is the first)"],
    ),
    "27-blank-prompt": (
        ["train", *FAST, *OVERWRITE],
        blank_prompt,
        2,
        ["train.jsonl line 3: field 'prompt' is empty or only whitespace", "(1 of 3 records"],
    ),
    "27-blank-chat-answer": (
        ["train", *FAST, *OVERWRITE],
        blank_chat_answer,
        2,
        ["train.jsonl line 1: field 'messages' (its last assistant turn) is empty", "(all 2 records"],
    ),
    "27-csv": (
        ["train", *FAST, *OVERWRITE, "--train_file", "train.csv"],
        csv_file,
        2,
        ["train_file='train.csv': a .csv is not a data format eksft reads", ".json, .jsonl, .parquet", "from_csv"],
    ),
    "27-folder-named-jsonl": (
        ["train", *FAST, *OVERWRITE, "--train_file", "data.jsonl"],
        folder_named_jsonl,
        2,
        ["train_file='data.jsonl' is a folder without data files", ".json, .jsonl, .parquet file"],
    ),
    "27-empty-folder": (
        ["train", *FAST, *OVERWRITE, "--train_file", "data"],
        empty_folder,
        2,
        ["train_file='data' is a folder without data files", "dataset folder"],
    ),
    "27-rl-blank-prompt": (
        ["rl", "--model_name_or_path", "tiny-random-llama", "--use_vllm", "false", "--report_to", "none", *OVERWRITE],
        blank_prompt,
        2,
        ["eksft rl: train.jsonl line 3: field 'prompt' holds an empty or whitespace-only prompt", "fill it in"],
    ),
    "27-rl-csv": (
        ["rl", "--model_name_or_path", "tiny-random-llama", "--use_vllm", "false", *OVERWRITE, "--train_file", "t.csv"],
        lambda tmp: (tmp / "t.csv").write_text("prompt,answer\n2 + 3?,5\n"),
        2,
        ["train_file='t.csv': a .csv is not a data format eksft reads"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_one_line_and_keeps_the_earlier_run(case, env, capsys):
    argv, setup, code, fragments = CASES[case]
    setup(env)
    before = snapshot(env / "run")
    command, rest = argv[0], ["--train_file", "train.jsonl", "--output_dir", "run", *argv[1:]]  # later flags win
    rc, lines, _ = cli([command, *rest], capsys)
    assert rc == code and len(lines) == 1, lines
    assert lines[0].startswith(f"eksft {command}: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert snapshot(env / "run") == before
