"""SFT and RL side by side: ``EKSFTConfig`` (``eksft train``) and ``RLConfig`` (``eksft rl``) inherit the fields they
share from one ``eksft.jobs.config.RunConfig``, declared there once; ``eksft.rl`` imports nothing of
``eksft.train`` (what both use lives in ``eksft.jobs``). CPU, no model, a few seconds."""

from __future__ import annotations

import ast
import dataclasses
import pathlib

import pytest

import eksft

PACKAGE = pathlib.Path(eksft.__file__).parent
#: the fields both commands read alike (RLConfig redeclares a few of them with RL's help: see test below)
SHARED = {
    "model_name_or_path",
    "dtype",
    "train_file",
    "train_split",
    "data_format",
    "prompt_column",
    "completion_column",
    "messages_column",
    "conversations_column",
    "system_column",
    "system_prompt",
    "max_samples",
    "overwrite_output_dir",
    "bf16",
}


def imported_modules(path: pathlib.Path) -> list[str]:
    """Every module an ``import`` / ``from ... import`` in ``path`` names, relative imports resolved."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module]))
            names += [module] + [f"{module}.{a.name}" for a in node.names]
    return names


def test_rl_imports_nothing_from_train():
    files = sorted((PACKAGE / "rl").glob("*.py"))
    assert len(files) >= 5  # the package is where this test thinks it is
    found = {
        f"{path.name}: {name}"
        for path in files
        for name in imported_modules(path)
        if name == "eksft.train" or name.startswith("eksft.train.")
    }
    assert not found, f"eksft/rl imports eksft.train (move what both use to eksft.jobs): {sorted(found)}"


def test_the_import_walker_sees_absolute_and_relative_imports():
    """The walker itself (else the test above would pass on any file): rl/run.py imports eksft.jobs.metrics and
    .config, train/trainer.py imports .config."""
    names = imported_modules(PACKAGE / "rl" / "run.py")
    assert "eksft.jobs.metrics" in names and "eksft.rl.config" in names
    assert "eksft.train.config" in imported_modules(PACKAGE / "train" / "trainer.py")


@pytest.mark.parametrize("config", ["train", "rl"])
def test_both_configs_inherit_the_run_config(config):
    from eksft.jobs.config import RunConfig
    from eksft.rl import RLConfig
    from eksft.train import EKSFTConfig

    cls = {"train": EKSFTConfig, "rl": RLConfig}[config]
    assert issubclass(cls, RunConfig)
    assert cls.__mro__[1] is RunConfig  # first base: its fields override TRL's (bf16)
    assert {f.name for f in dataclasses.fields(RunConfig)} == SHARED
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert fields["bf16"].default is None and fields["bf16"] is RunConfig.__dataclass_fields__["bf16"]


def test_shared_fields_are_declared_once():
    """Only RunConfig declares the shared fields, except the ones RLConfig reads differently (prompts with gold
    answers, counted after skip_samples), which it redeclares with the same default, type, choices and range."""
    from eksft.jobs.config import RunConfig
    from eksft.rl import RLConfig
    from eksft.train import EKSFTConfig

    base = RunConfig.__dataclass_fields__
    assert not SHARED & set(vars(EKSFTConfig)["__annotations__"])
    redeclared = SHARED & set(vars(RLConfig)["__annotations__"])
    assert redeclared == {"train_file", "max_samples", "completion_column"}
    rl = RLConfig.__dataclass_fields__
    for name in redeclared:
        assert rl[name].default == base[name].default and rl[name].type == base[name].type, name
        meta = {k: v for k, v in rl[name].metadata.items() if k != "help"}
        assert meta == {k: v for k, v in base[name].metadata.items() if k != "help"}, name
        assert rl[name].metadata["help"] != base[name].metadata["help"], name  # else it should not be redeclared
    for name in SHARED - redeclared:
        assert EKSFTConfig.__dataclass_fields__[name] is base[name] is rl[name], name


def test_shared_validation_names_each_config():
    """One declaration, one check: a bad shared value is refused by both, each naming its own class."""
    from eksft.rl import RLConfig
    from eksft.train import EKSFTConfig

    for cls in (EKSFTConfig, RLConfig):
        with pytest.raises(ValueError, match=rf"^{cls.__name__}\.data_format: 'csv'; choose one of \['auto'"):
            cls(output_dir="out", data_format="csv")
        with pytest.raises(ValueError, match=rf"^{cls.__name__}\.max_samples: must be >= 1 or unset"):
            cls(output_dir="out", max_samples=0)


@pytest.mark.parametrize("command", ["train", "rl"])
def test_a_yaml_string_for_a_bool_field_reads_as_its_flag(command, tmp_path):
    """``overwrite_output_dir: "false"`` (quoted in YAML) is False for both commands, as ``--overwrite_output_dir
    false`` is (RLConfig got this from a special case in config_io before the field was shared; EKSFTConfig took
    the string, which is true); a word that is no bool is one error naming the field."""
    import importlib

    module = importlib.import_module(f"eksft.commands.{command}")
    base = {"output_dir": str(tmp_path / "out"), "use_vllm": False} if command == "rl" else {"output_dir": "out"}
    (tmp_path / "c.yaml").write_text('overwrite_output_dir: "false"\n')
    assert module.config_from(str(tmp_path / "c.yaml"), base).overwrite_output_dir is False
    (tmp_path / "c.yaml").write_text("overwrite_output_dir: 'yes'\n")
    assert module.config_from(str(tmp_path / "c.yaml"), base).overwrite_output_dir is True
    (tmp_path / "c.yaml").write_text("overwrite_output_dir: maybe\n")
    with pytest.raises(ValueError, match=r"Config\.overwrite_output_dir: must be true or false, got 'maybe'\.$"):
        module.config_from(str(tmp_path / "c.yaml"), base)
