"""The field tables of docs/training.md and docs/rl.md are exactly what ``eksft.docgen`` renders from ``EKSFTConfig``
and ``RLConfig`` (so the docs, ``--help`` and YAML keys share one text). CPU, no model, about a second."""

import dataclasses
import os
import re

import pytest

from eksft.docgen import field_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("command, doc", [("train", "training.md"), ("rl", "rl.md")])
def test_docs_field_table_is_generated(command, doc):
    with open(os.path.join(ROOT, "docs", doc), encoding="utf-8") as f:
        text = f.read()
    assert field_table(command) in text, f"regenerate the table: python -m eksft.docgen {command} (see docs/{doc})"


def test_field_table_lists_the_shared_and_own_fields_once():
    """Each table names every field eksft declares (its own and RunConfig's) once, and no TRL field it inherits
    unchanged: a field is eksft's where its dataclass Field is not the TRL config's own object."""
    from trl import GRPOConfig, SFTConfig

    from eksft.rl import RLConfig
    from eksft.train import EKSFTConfig

    for command, cls, trl_cls in (("train", EKSFTConfig, SFTConfig), ("rl", RLConfig, GRPOConfig)):
        trl_fields = {f.name: f for f in dataclasses.fields(trl_cls)}
        declared = [f.name for f in dataclasses.fields(cls) if trl_fields.get(f.name) is not f]
        rows = re.findall(r"^\| `(\w+)` \|", field_table(command), flags=re.M)
        assert rows == declared and len(rows) == len(set(rows)), command
        assert {"model_name_or_path", "train_file", "bf16", "overwrite_output_dir"} <= set(rows)
        assert "learning_rate" not in rows and "max_length" not in rows


def test_config_docstring_names_every_eksft_field():
    """EKSFTConfig's class docstring (TRL-style "Parameters") names each field eksft adds to SFTConfig."""
    from trl import SFTConfig

    from eksft.train import EKSFTConfig

    inherited = {f.name for f in dataclasses.fields(SFTConfig)} - {"loss_type", "bf16"}
    named = set(re.findall(r"\b([a-z][a-z0-9_]+)\b", EKSFTConfig.__doc__))
    missing = [f.name for f in dataclasses.fields(EKSFTConfig) if f.name not in inherited and f.name not in named]
    assert not missing, f"add to EKSFTConfig's docstring: {missing}"


def test_config_docstring_defaults_are_the_fields_defaults():
    """Each "defaults to `X`" in EKSFTConfig's docstring is that field's default (RHO, LAMBDA_* ... are written once,
    in eksft.losses.eksft; the docstring repeats them for readers and this keeps it true)."""
    import ast

    from eksft.train import EKSFTConfig

    stated = re.findall(r"(\w+) \(`\w+`, \*optional\*,\s+defaults to `([^`]+)`\)", EKSFTConfig.__doc__)
    defaults = {f.name: f.default for f in dataclasses.fields(EKSFTConfig)}
    assert {"rho", "lambda_entropy", "lambda_kl", "loss_type"} <= {name for name, _ in stated}
    for name, text in stated:
        assert ast.literal_eval(text) == defaults[name], f"EKSFTConfig docstring: {name} defaults to {defaults[name]!r}"
