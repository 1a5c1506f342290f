"""Data formats (CPU; mostly no model): prompt-completion, messages and ShareGPT records (with system prompts and
column mapping) from JSONL / JSON / Parquet; max_samples; eval splits; malformed records name file, line and field;
records with no response token left after truncation are dropped with ONE warning."""

from __future__ import annotations

import json
import logging

import pytest
from datasets import Dataset

from eksft.data.formats import Columns, RecordError, load_records
from eksft.train import build_trainer
from eksft.train.run import load_data

from .conftest import write_jsonl


def test_prompt_completion_text_stays_text(tmp_path):
    ds = load_records(write_jsonl(tmp_path / "a.jsonl", [{"prompt": "1+1?", "completion": "2"}] * 3), max_samples=2)
    assert len(ds) == 2 and ds[0] == {"prompt": "1+1?", "completion": "2"}


def test_messages_become_conversational_prompt_completion(tmp_path):
    rec = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "b"},
        ]
    }
    ds = load_records(write_jsonl(tmp_path / "m.jsonl", [rec]), columns=Columns(system_prompt="Be brief."))
    assert ds[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert ds[0]["prompt"][-1]["content"] == "again" and ds[0]["completion"] == [{"role": "assistant", "content": "b"}]
    kept = load_records(write_jsonl(tmp_path / "m2.jsonl", [rec]), keep_messages=True)
    assert len(kept[0]["messages"]) == 4


def test_sharegpt_with_system_column_and_mapping(tmp_path):
    rows = [{"conv": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}], "sys": "S"}]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(rows))
    ds = load_records(str(path), columns=Columns(conversations="conv", system="sys"))
    assert [m["role"] for m in ds[0]["prompt"]] == ["system", "user"] and ds[0]["completion"][0]["content"] == "r"


def test_parquet_and_column_mapping(tmp_path):
    path = str(tmp_path / "d.parquet")
    Dataset.from_list([{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]).to_parquet(path)
    ds = load_records(path, fmt="prompt_completion", columns=Columns(prompt="question", completion="answer"))
    assert ds["completion"] == ["a1", "a2"]


@pytest.mark.parametrize(
    "lines, match",
    [
        (['{"prompt": "a", "completion": "b"}', "{not json"], r"bad\.jsonl line 2: invalid JSON"),
        (
            ['{"prompt": "a", "completion": "b"}', "", '{"prompt": "a"}'],
            r"bad\.jsonl line 3: missing field 'completion'",
        ),
        (['{"prompt": "a", "completion": 5}'], r"line 1: field 'completion' must be"),
        (['{"messages": [{"role": "user", "content": "x"}]}'], r"line 1: the conversation must end with an assistant"),
        (['{"conversations": [{"from": "bot", "value": "x"}]}'], r"line 1: field 'conversations'\[0\]\.from 'bot'"),
        (
            ['{"messages": [{"role": "user"}]}'],
            r"line 1: field 'messages'\[0\] must be an object with 'role' and 'content'",
        ),
    ],
)
def test_malformed_records_name_file_line_field(tmp_path, lines, match):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=match):
        load_records(str(path))


def test_eval_split_and_eval_file(make_config, tmp_path, data_file):
    train, evaluation = load_data(make_config(eval_split_size=0.25))
    assert (len(train), len(evaluation)) == (18, 6)
    other = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": "x", "completion": "y"}] * 5)
    train, evaluation = load_data(make_config(eval_file=other, max_samples=4))
    assert (len(train), len(evaluation)) == (4, 4)


def test_truncated_records_dropped_with_one_warning(make_config, tmp_path, caplog):
    recs = [{"prompt": "x" * 80, "completion": "y"}] * 3 + [{"prompt": "q", "completion": "ok"}] * 5
    path = write_jsonl(tmp_path / "long.jsonl", recs)
    with caplog.at_level(logging.WARNING, logger="eksft.train.trainer"):
        trainer = build_trainer(make_config(train_file=path, max_length=40))
    assert len(trainer.train_dataset) == 5
    warnings = [r for r in caplog.records if "no response token left" in r.getMessage()]
    assert len(warnings) == 1 and "3 of 8 train records" in warnings[0].getMessage()


def test_conversational_data_trains_on_last_assistant_turn(make_config, tmp_path):
    rec = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [rec] * 4)
    trainer = build_trainer(make_config(train_file=path, max_steps=1))
    row = trainer.train_dataset[0]
    tok = trainer.processing_class
    trained = tok.decode([t for t in row["labels"] if t != -100])
    assert trained == "4<|im_end|>"  # the completion and its end-of-turn token only
    trainer.train()


def hub_repo_folder(root) -> str:
    """A folder laid out like a hub dataset repo (what `huggingface-cli download --repo-type dataset` leaves)."""
    (root / "data").mkdir(parents=True)
    for split, n in (("train", 5), ("test", 2)):
        rows = [{"question": f"{split} {i}?", "answer": f"{i}"} for i in range(n)]
        Dataset.from_list(rows).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return str(root)


def test_dataset_folder_where_a_hub_name_goes(make_config, tmp_path):
    """A hub dataset name and a local folder take the same path (datasets.load_dataset), splits included, and the
    folder trains through build_trainer with column mapping."""
    repo = hub_repo_folder(tmp_path / "org--math")
    cols = Columns(prompt="question", completion="answer")
    ds = load_records(repo, columns=cols)
    assert len(ds) == 5 and ds[0] == {"prompt": "train 0?", "completion": "0"}
    assert load_records(repo, columns=cols, split="test")["prompt"] == ["test 0?", "test 1?"]
    with pytest.raises(ValueError, match=r"eval_file='.*org--math'.*Unknown split .validation.*Set eval_split"):
        load_records(repo, columns=cols, split="validation", field="eval_file")
    cfg = make_config(train_file=repo, eval_split="test", prompt_column="question", completion_column="answer")
    train, evaluation = load_data(cfg)
    assert (len(train), len(evaluation)) == (5, 2)
    with pytest.raises(
        ValueError, match=r"train_file=.*Unknown split .dev.*Set eval_split"
    ):  # the split field is wrong
        load_data(make_config(train_file=repo, eval_split="dev", prompt_column="question", completion_column="answer"))


def test_save_to_disk_folder(tmp_path):
    from datasets import DatasetDict

    rows = [{"prompt": "p", "completion": "c"}] * 3
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))
    splits = DatasetDict({"train": Dataset.from_list(rows), "dev": Dataset.from_list(rows[:1])})
    splits.save_to_disk(str(tmp_path / "dd"))
    assert len(load_records(str(tmp_path / "one"))) == 3
    assert len(load_records(str(tmp_path / "dd"), split="dev")) == 1
    with pytest.raises(ValueError, match=r"train_file=.*Unknown split .test..*\['dev', 'train'\].*Set train_split"):
        load_records(str(tmp_path / "dd"), split="test")


def test_unresolvable_name_names_the_field_and_the_fix(monkeypatch, tmp_path):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # as HF_DATASETS_OFFLINE=1: no network retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        FileNotFoundError,
        match=r"eval_file='no-such-org/no-such-set' is neither a local file or "
        r"folder.*HF_DATASETS_OFFLINE=1",
    ):
        load_records("no-such-org/no-such-set", field="eval_file")
    with pytest.raises(FileNotFoundError, match=r"sed_calibration_data: data file '.*missing\.jsonl' does not exist"):
        load_records(str(tmp_path / "missing.jsonl"), field="sed_calibration_data")
