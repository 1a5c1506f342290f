"""``PipelineConfig``: one YAML for ``eksft pipeline``: the methods to compare, the shared SFT config, the RL config,
the data split and the evaluation settings (docs/rl.md, "eksft pipeline").

``sft`` and ``rl`` are a path (relative to the pipeline file, ``include:`` works as in ``eksft train``) or an inline
mapping of fields. The pipeline owns ``output_dir``, ``seed`` and (with a ``data`` section) the data fields of both:
every method sees the same seed and the same records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from eksft.config_io import check_fields, check_types, load_yaml
from eksft.eval.sampling import BACKENDS, DTYPES

STAGES = ("sft", "sft_eval", "rl", "rl_eval")
TOP_KEYS = {"output_dir", "seed", "methods", "sft", "rl", "data", "eval", "stages", "launcher"}
OWNED = ("output_dir", "seed")  # set per method and stage by the pipeline; a value in sft/rl would be misleading


def _f(default, **metadata):
    return field(default=default, metadata=metadata)


@dataclass
class EvalSettings:
    """The ``eval`` section. Ranges and choices are field metadata (``config_io.check_fields``), as in eksft eval."""

    benchmarks: list[str]
    n: int = _f(32, range="[1, inf)")  # samples per problem (paper: 32)
    ks: list[int] | None = None  # default: [1, the largest k <= n up to 32]
    max_new_tokens: int = _f(8192, range="[1, inf)")  # paper: 8k response tokens
    limit: int | None = _f(None, range="[1, inf)")  # first problems of each benchmark
    batch_size: int = _f(32, range="[1, inf)")
    backend: str = _f("auto", choices=BACKENDS)
    temperature: float = _f(1.0, range="[0, inf)")
    top_p: float = _f(1.0, range="(0, 1]")
    top_k: int = _f(0, range="[0, inf)")
    dtype: str = _f("auto", choices=DTYPES)
    chat_template: bool = True
    data_parallel: int | None = None  # eval worker processes; default: every visible GPU (1 without GPUs)
    tensor_parallel: int = 1  # GPUs per worker (vLLM), for a model that does not fit one GPU

    def __post_init__(self):
        check_types(self, "pipeline eval")  # YAML values arrive unconverted
        check_fields(self, "pipeline eval")
        if not self.benchmarks:
            raise ValueError("pipeline eval.benchmarks: give at least one benchmark (built-in name or file).")
        if self.n < 1:
            raise ValueError(f"pipeline eval.n: need at least 1 sample per problem, got {self.n}.")
        for name in ("data_parallel", "tensor_parallel"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"pipeline eval.{name}: need a whole number >= 1, got {value!r}.")
        if self.ks is None:
            self.ks = sorted({1, min(32, self.n)})
        if any(k < 1 or k > self.n for k in self.ks):
            raise ValueError(f"pipeline eval.ks {self.ks}: every k must be in [1, n={self.n}]; raise eval.n or drop k.")

    @property
    def table_k(self) -> int:
        """The paper reports pass@32; with fewer samples, the largest k available."""
        return max(k for k in self.ks if k <= 32) if any(k <= 32 for k in self.ks) else max(self.ks)


@dataclass
class DataSplit:
    """One source cut into SFT records ``[0, sft_samples)`` and RL records ``[sft_samples, + rl_samples)``."""

    train_file: str
    sft_samples: int = field(metadata={"range": "[1, inf)"})
    rl_samples: int | None = _f(None, range="[1, inf)")

    def __post_init__(self):
        check_types(self, "pipeline data")
        check_fields(self, "pipeline data")


EVAL_KEYS = {f.name for f in fields(EvalSettings)}
DATA_KEYS = {f.name for f in fields(DataSplit)}


@dataclass
class PipelineConfig:
    output_dir: str
    methods: dict[str, dict]  # method name -> EKSFTConfig overrides (loss_type defaults to the name)
    sft: dict  # shared EKSFTConfig fields
    rl: dict  # RLConfig fields
    eval: EvalSettings
    seed: int = 0
    data: DataSplit | None = None
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    launcher: str | None = None  # e.g. "accelerate launch --num_processes 8 -m eksft.cli": SFT/RL as subprocesses
    source: str | None = None  # the YAML file this came from

    def __post_init__(self):
        check_types(self, "pipeline")
        if not 0 <= self.seed <= 2**32 - 1:  # numpy's seed range (every stage seeds numpy)
            raise ValueError(f"pipeline `seed`: must be in [0, 4294967295], got {self.seed}.")


def _section(value, name: str, base_dir: str) -> dict:
    if value is None:
        raise ValueError(f"pipeline `{name}`: missing; give a config path or an inline mapping of fields.")
    if isinstance(value, str):
        values = load_yaml(os.path.join(base_dir, value))
    elif isinstance(value, dict):
        values = dict(value)
        if "include" in values:
            values = {**load_yaml(os.path.join(base_dir, values.pop("include"))), **values}
    else:
        raise ValueError(f"pipeline `{name}`: expected a path or a mapping, got {type(value).__name__}.")
    for key in OWNED:
        values.pop(key, None)
    return values


def _methods(value) -> dict[str, dict]:
    from eksft.losses import LOSSES

    if isinstance(value, list):  # names, or named methods "loss[field=value,...]" (eksft/methods.py)
        from eksft.methods import parse_methods

        value = {m.slug: m.fields for m in parse_methods(value, where="pipeline `methods`")}
    if not isinstance(value, dict) or not value:
        raise ValueError(
            "pipeline `methods`: give a list of method names (e.g. [sft, eksft]) or a mapping "
            "name: {field: value} of per-method SFT overrides."
        )
    out = {}
    for name, overrides in value.items():
        overrides = dict(overrides or {})
        overrides.setdefault("loss_type", name)
        if overrides["loss_type"] not in LOSSES:
            raise ValueError(
                f"pipeline methods.{name}: loss_type {overrides['loss_type']!r} is not a loss of "
                f"eksft.losses ({sorted(LOSSES)}); set `loss_type:` under the method."
            )
        if not str(name).replace("-", "_").replace(".", "_").isidentifier():
            raise ValueError(f"pipeline methods.{name}: use letters, digits, '_', '-' or '.' (it names a folder).")
        out[str(name)] = overrides
    return out


def _check_keys(values: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}.")


def pipeline_config_from(values: dict, base_dir: str = ".", source: str | None = None) -> PipelineConfig:
    _check_keys(values, TOP_KEYS, f"pipeline config {source or ''}".strip())
    if not values.get("output_dir"):
        raise ValueError("pipeline `output_dir`: missing; every stage writes under it (rerun to resume).")
    ev = values.get("eval") or {}
    _check_keys(ev, EVAL_KEYS, "pipeline `eval`")
    data = values.get("data")
    if data is not None:
        _check_keys(data, DATA_KEYS, "pipeline `data`")
        if "train_file" not in data or "sft_samples" not in data:
            raise ValueError(
                "pipeline `data`: needs train_file and sft_samples (rl_samples: optional, default all "
                "the rest of the file)."
            )
        data = DataSplit(**data)
    stages = values.get("stages") or list(STAGES)
    if not isinstance(stages, list):  # list("sft") would be its letters
        raise ValueError(f"pipeline `stages`: must be a list of stages from {list(STAGES)}, got {stages!r}.")
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"pipeline `stages`: {bad} unknown; choose from {list(STAGES)}.")
    return PipelineConfig(
        output_dir=values["output_dir"],
        methods=_methods(values.get("methods")),
        sft=_section(values.get("sft"), "sft", base_dir),
        rl=_section(values.get("rl"), "rl", base_dir),
        eval=EvalSettings(**ev),
        seed=values.get("seed", 0),
        data=data,
        stages=stages,
        launcher=values.get("launcher"),
        source=source,
    )


def load_pipeline_config(path: str, overrides: dict | None = None) -> PipelineConfig:
    """Read a pipeline YAML; ``overrides`` replace top-level keys (``--output_dir``, ``--stages``)."""
    values = load_yaml(path)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return pipeline_config_from(values, os.path.dirname(path) or ".", path)
