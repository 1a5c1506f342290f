"""Every bad value refused in one line, by construction (issue 27): a sweep generated from the config dataclasses.

For each field of ``EKSFTConfig`` (``eksft train``), ``RLConfig`` (``eksft rl``), ``EvalConfig`` / ``SamplingConfig``
(``eksft eval``), ``DemoConfig`` (``eksft demo``) and the pipeline's ``EvalSettings`` / ``DataSplit`` / top level
(``eksft pipeline``, from its YAML), the cases are derived from the field itself:

* a value of the wrong type (from the annotation: a word for a number, ``1.5`` for a whole number, ``maybe`` for a
  bool, a number for a string in YAML); a string field without choices has no wrong type on a command line;
* where it declares choices (field metadata, or argparse's for a transformers enum), one not offered;
* where it declares a range (``config_io.declared_ranges``: the ``range`` metadata, ``INHERITED_RANGES``), a value
  just outside each finite end, and ``nan`` / ``inf`` for a float.

Each runs ``eksft.cli.main`` in this process against an output folder holding an earlier run and must end with exit
code 2, exactly one ``eksft COMMAND:`` line naming the field (as flag or field name) and what is allowed (the type,
the choices or the range in words), no traceback, and the earlier run's files unchanged. A new field with a range
or choices is swept without a line here.

Which inherited fields: ``EKSFTConfig`` and ``RLConfig`` inherit ~200 transformers / TRL fields. The sweep covers
eksft's own fields, every inherited field given a range in ``INHERITED_RANGES`` (the ones people set in every run:
learning rate, batch size, accumulation, steps / epochs, warm-up, max_length, seed, logging / save / eval steps,
optimiser constants, and GRPO's generation settings), and ``COMMON_INHERITED``, the inherited enum and bool fields
that appear in this repository's configs; the rest are transformers' to check and reach the same argparse types.
CPU, no model loads (every refusal happens while the config is built); about 30 s on a loaded 2-core machine.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing

import pytest
import yaml

from eksft.cli import main
from eksft.config_io import declared_ranges, own_fields, parse_range, range_text
from tests.train.test_bad_input import snapshot, user_folder

#: inherited transformers / TRL fields with choices or a bool type that this repository's configs set
COMMON_INHERITED = (
    "lr_scheduler_type",
    "optim",
    "save_strategy",
    "logging_strategy",
    "eval_strategy",
    "gradient_checkpointing",
    "disable_tqdm",
    "fp16",
)


# ------------------------------------------------------------------------------------------------ the cases
def _plain(kind):
    """``int | None`` -> ``int``; other annotations as they are."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(kind) if a is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind


def out_of_range(interval: str, kind) -> list[str]:
    closed_low, low, high, closed_high = parse_range(interval)
    step = 1 if kind is int else 0.5
    values = []
    if math.isfinite(low):
        values.append(low - step if closed_low else low)
    if math.isfinite(high):
        values.append(high + step if closed_high else high)
    values = [str(int(v)) if kind is int else repr(float(v)) for v in values]
    return values + (["nan", "inf"] if kind is float else [])


def wrong_types(kind, has_choices: bool) -> list[tuple[str, str]]:
    """(value, what the line must say is allowed) for a command-line flag of annotation ``kind``."""
    if kind is int:
        return [("abc", "int"), ("1.5", "int")]
    if kind is float:
        return [("abc", "float")]
    if kind is bool:
        return [("maybe", "true")]
    return []  # a string (or list of strings): any text is one; choices are swept apart


def field_cases(cls, names, flag, parser_choices=None) -> list[tuple]:
    """(field, argv, allowed) for the given fields of ``cls``; ``flag(name)`` is its command-line spelling."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    ranges = declared_ranges(cls)
    cases = []
    for name in names:
        kind = _plain(hints[name])
        choices = fields[name].metadata.get("choices") or (parser_choices or {}).get(name)
        for value, allowed in wrong_types(kind, bool(choices)):
            cases.append((name, [flag(name), value], allowed))
        if choices:
            cases.append((name, [flag(name), "bogus"], str(list(choices)[0])))
        for value in out_of_range(ranges[name], kind) if name in ranges else ():
            cases.append((name, [flag(name), value], range_text(ranges[name])))
    return cases


def config_cases(command: str) -> list[tuple]:
    from transformers import TrainingArguments

    from eksft.rl import RLConfig
    from eksft.train import EKSFTConfig

    cls = {"train": EKSFTConfig, "rl": RLConfig}[command]
    own = own_fields(cls)  # with RunConfig's, declared once for both configs
    inherited = [n for n in (*cls.INHERITED_RANGES, *COMMON_INHERITED) if n not in own]
    enums = {  # transformers' enum fields: argparse's choices
        f.name: [e.value for e in typing.get_type_hints(TrainingArguments)[f.name]]
        for f in dataclasses.fields(TrainingArguments)
        if f.name in inherited
        and isinstance(typing.get_type_hints(TrainingArguments)[f.name], type)
        and issubclass(typing.get_type_hints(TrainingArguments)[f.name], __import__("enum").Enum)
    }
    cases = field_cases(cls, own + inherited, lambda n: f"--{n}", enums)
    return [(command, *case) for case in cases]


def eval_cases() -> list[tuple]:
    from eksft.commands.eval import FLAGS, _cli
    from eksft.eval.runner import EvalConfig
    from eksft.eval.sampling import SamplingConfig

    cli = _cli()
    cases = []
    for cls in (EvalConfig, SamplingConfig):
        names = [f.name for f in dataclasses.fields(cls) if f.name in FLAGS and f.name not in ("models", "benchmarks")]
        names = [n for n in names if _plain(typing.get_type_hints(cls)[n]) is not bool]  # --no-X flags take no value
        choices = {n: c["choices"] for n, c in cli.items() if "choices" in c}
        for name, argv, allowed in field_cases(
            cls, names, lambda n: cli.get(n, {}).get("flag", "--" + n.replace("_", "-")), choices
        ):
            cases.append(("eval", name, argv, allowed))
    cases.append(("eval", "ks", ["--k", "abc"], "integers"))
    return cases


def demo_cases() -> list[tuple]:
    from eksft.demo.config import DemoConfig

    hints = typing.get_type_hints(DemoConfig)
    names = [f.name for f in dataclasses.fields(DemoConfig) if hints[f.name] in (int, float, str) and f.name != "model"]
    return [("demo", *case) for case in field_cases(DemoConfig, names, lambda n: "--" + n.replace("_", "-"))]


def pipeline_cases() -> list[tuple]:
    """(section, field, bad value, allowed) for the pipeline YAML: a wrong type of every field, then its range and
    choices."""
    from eksft.pipeline.config import DataSplit, EvalSettings, PipelineConfig

    wrong = {int: ("abc", 1.5), float: ("abc",), bool: ("maybe",), str: (5,)}
    cases = []
    for section, cls in (("eval", EvalSettings), ("data", DataSplit), (None, PipelineConfig)):
        hints, ranges = typing.get_type_hints(cls), declared_ranges(cls)
        for f in dataclasses.fields(cls):
            if section is None and f.name not in ("output_dir", "seed", "launcher", "stages"):
                continue  # methods / sft / rl / eval / data: sections of their own, swept through their classes
            kind = _plain(hints[f.name])
            bad = wrong.get(kind, ("sft",) if typing.get_origin(kind) is list else ())
            cases += [(section, f.name, value, None) for value in bad]
            if "choices" in f.metadata:
                cases.append((section, f.name, "bogus", str(f.metadata["choices"][0])))
            for value in out_of_range(ranges[f.name], kind) if f.name in ranges else ():
                cases.append(
                    (section, f.name, float(value) if kind is float else int(value), range_text(ranges[f.name]))
                )
    cases.append((None, "seed", -1, "4294967295"))
    cases.append((None, "stages", ["sft", "train"], "sft_eval"))
    return [("pipeline", f"{s + '.' if s else ''}{name}", value, allowed) for s, name, value, allowed in cases]


CASES = [*config_cases("train"), *config_cases("rl"), *eval_cases(), *demo_cases()]
PIPELINE = pipeline_cases()


def case_id(case) -> str:
    return f"{case[0]}:{' '.join(map(str, case[2]))}" if isinstance(case[2], list) else f"{case[0]}:{case[1]}={case[2]}"


# ------------------------------------------------------------------------------------------------- running
BASE = {
    "train": ["--model_name_or_path", "tiny-random-llama", "--train_file", "train.jsonl", "--report_to", "none"],
    "rl": ["--model_name_or_path", "tiny-random-llama", "--use_vllm", "false", "--report_to", "none"],
    "eval": ["tiny-random-llama", "--benchmark", "arithmetic-easy", "--limit", "1", "--n", "2", "--k", "1"],
    "demo": ["--quick"],
}
OUTPUT = {
    "train": ["--output_dir", "run", "--overwrite_output_dir", "true"],
    "rl": ["--output_dir", "run", "--overwrite_output_dir", "true"],
    "eval": ["--output-dir", "run"],
    "demo": ["--output-dir", "run"],
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    return user_folder(tmp_path, monkeypatch, records=4)


def refused_in_one_line(command, argv, capsys, run) -> str:
    before = snapshot(run)
    capsys.readouterr()
    try:
        rc = main([command, *argv])
    except SystemExit as e:  # argparse's refusals exit (one line: commands/flags.Parser.error)
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"eksft {command}")]
    assert rc == 2 and len(lines) == 1, (rc, err[-2000:])
    assert snapshot(run) == before  # the earlier run's files are unchanged
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_flag_value_is_one_line(case, env, capsys):
    command, name, argv, allowed = case
    # later flags win: the bad value comes after the base ones it may override (eval's --n, --limit)
    line = refused_in_one_line(command, [*BASE[command], *OUTPUT[command], *argv], capsys, env / "run")
    assert name in line or name.replace("_", "-") in line or argv[0] in line, line
    assert allowed.lower() in line.lower(), (allowed, line)


@pytest.mark.parametrize("case", PIPELINE, ids=case_id)
def test_bad_pipeline_value_is_one_line(case, env, capsys):
    from tests.pipeline.test_pipeline import tiny_pipeline

    _, path, value, allowed = case
    config = tiny_pipeline("pipe")
    section, _, name = path.rpartition(".")
    (config[section] if section else config)[name] = value
    (env / "pipe.yaml").write_text(yaml.safe_dump(config))
    (env / "pipe" / "sft").mkdir(parents=True)
    (env / "run").rename(env / "pipe" / "sft" / "sft")  # a finished stage of an earlier pipeline run
    line = refused_in_one_line("pipeline", ["pipe.yaml"], capsys, env / "pipe" / "sft" / "sft")
    assert name in line, line
    if allowed is not None:
        assert allowed in line, (allowed, line)
    else:
        assert "must be" in line, line  # the type, in words


def test_every_declared_range_is_a_field_and_parses():
    from eksft.demo.config import DemoConfig
    from eksft.eval.runner import EvalConfig
    from eksft.eval.sampling import SamplingConfig
    from eksft.pipeline.config import DataSplit, EvalSettings
    from eksft.rl import RLConfig
    from eksft.train import EKSFTConfig

    for cls in (EKSFTConfig, RLConfig, EvalConfig, SamplingConfig, DemoConfig, EvalSettings, DataSplit):
        names = {f.name for f in dataclasses.fields(cls)}
        for name, interval in declared_ranges(cls).items():
            assert name in names, (cls.__name__, name)
            closed_low, low, high, closed_high = parse_range(interval)
            assert low < high and interval[0] in "[(" and interval[-1] in "])", (cls.__name__, name, interval)
            default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
            if default is not None and default is not dataclasses.MISSING:  # every default is allowed
                from eksft.config_io import in_range

                assert in_range(default, interval), (cls.__name__, name, default, interval)


def test_the_sweep_covers_what_it_says():
    """The cases come from the classes: every own field of each config with a range, choices or a number / bool
    type has one, and the known failures of issue 27 are among them."""
    ids = {case_id(c) for c in CASES}
    assert "train:--per_device_train_batch_size 0" in ids and "train:--learning_rate nan" in ids
    assert "rl:--num_generations 1" in ids and "eval:--top-p 0.0" in ids and "demo:--rho 1.5" in ids
    assert len(CASES) + len(PIPELINE) > 300


def test_yaml_numbers_without_a_dot_are_numbers_and_words_are_refused(env, capsys):
    """YAML 1.1 reads ``1e-5`` as a string: it becomes the float its flag would give (it reached torch as a string
    before); a word in a number field is one line naming the field."""
    from eksft.commands.train import config_from

    (env / "c.yaml").write_text("model_name_or_path: tiny-random-llama\nlearning_rate: 1e-5\nmax_steps: '3'\n")
    cfg = config_from("c.yaml", {"output_dir": "out"})
    assert (cfg.learning_rate, cfg.max_steps) == (1e-5, 3)
    (env / "c.yaml").write_text("model_name_or_path: tiny-random-llama\nlearning_rate: fast\n")
    line = refused_in_one_line("train", ["c.yaml", *OUTPUT["train"]], capsys, env / "run")
    assert line == "eksft train: EKSFTConfig.learning_rate: must be a finite number >= 0, got 'fast'."
