"""``EvalConfig``: the settings of ``eksft eval`` (its flags are these fields, eksft/commands/eval.py) and what the
samples depend on (``sample_settings``, compared when a run resumes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .intervals import RESAMPLES
from .sampling import BACKENDS, DTYPES, SamplingConfig
from .verify import EXTRACTIONS


@dataclass
class EvalConfig:
    models: list[str] = field(
        metadata={
            "help": "local model folders, hub names or built-in models "
            "(tiny-random-llama, smollm2-135m-instruct); several are compared"
        }
    )
    benchmarks: list[str] = field(
        metadata={"help": "built-in benchmarks, .jsonl/.json/.parquet files, LAYOUT:FILE or a layout's hub dataset"}
    )
    output_dir: str = field(metadata={"help": "results, samples and plots go here; rerun to resume"})
    ks: list[int] = field(
        default_factory=lambda: [1, 8, 32], metadata={"help": "comma-separated k for pass@k, each k <= n"}
    )
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "how answers are sampled"})
    seed: int = field(default=0, metadata={"help": "same seed, same samples (HF backend)"})
    backend: str = field(
        default="auto", metadata={"help": "auto: vLLM when importable with a GPU, else hf", "choices": BACKENDS}
    )
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16 or float16", "choices": DTYPES})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file name inside each model folder"})
    limit: int | None = field(
        default=None, metadata={"help": "evaluate only the first N problems of each benchmark", "range": "[1, inf)"}
    )
    offset: int = field(
        default=0,
        metadata={
            "help": "skip the first N problems of each benchmark (then --limit applies): held-out problems for a "
            "confirmation run; ids and sampling seeds stay those of the whole benchmark",
            "range": "[0, inf)",
        },
    )
    extraction: str = field(
        default="last_boxed",
        metadata={
            "help": (
                "last_boxed: the final \\boxed{} is the answer; math_verify: parse the whole completion; last_number: "
                "the last number in the completion (base models without \\boxed{}); samples.jsonl records last_boxed "
                "and last_number "
                "checks either way"
            ),
            "choices": EXTRACTIONS,
        },
    )
    verify_timeout: int = field(
        default=5, metadata={"help": "seconds per math-verify parse or comparison", "range": "[1, inf)"}
    )
    problem_column: str | None = field(default=None, metadata={"help": "problem column of file benchmarks"})
    answer_column: str | None = field(default=None, metadata={"help": "gold answer column of file benchmarks"})
    id_column: str | None = field(
        default=None, metadata={"help": "id column of file benchmarks (default: detected or row index)"}
    )
    progress: bool = field(default=True, metadata={"help": "tqdm progress bars"})
    data_parallel: int = field(
        default=1,
        metadata={
            "help": "worker processes the problems are split over: one GPU each, or without GPUs CPU processes "
            "sharing the threads; the samples equal one process's (docs/evaluation.md)",
            "range": "[1, inf)",
        },
    )
    tensor_parallel: int = field(
        default=1,
        metadata={
            "help": "GPUs per model (vLLM backend), for a model that does not fit one GPU; data parallel x tensor "
            "parallel GPUs in all",
            "range": "[1, inf)",
        },
    )
    protocol: str | None = field(
        default=None,
        metadata={
            "help": (
                "preset sampling settings (eksft.eval.protocols), recorded with the results; flags given explicitly "
                "override it; without it the paper's values are the defaults"
            )
        },
    )
    bootstrap_resamples: int = field(
        default=RESAMPLES,
        metadata={"help": "resamples of the bootstrap over problems behind every 95% interval", "range": "[1, inf)"},
    )
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of those resamples (same seed, same interval)"})

    def validate(self) -> None:
        """Errors name the field (``EvalConfig.ks``, ``EvalConfig.sampling.n``); ``eksft eval`` prints its flags.
        Choices and ranges are the fields' metadata (``config_io.check_fields``)."""
        from eksft.config_io import check_fields

        check_fields(self, "EvalConfig")
        check_fields(self.sampling, "EvalConfig.sampling")
        n = self.sampling.n
        too_big = [k for k in self.ks if k > n]
        if too_big:
            raise ValueError(
                f"EvalConfig.ks {too_big} exceeds EvalConfig.sampling.n {n}: "
                "pass@k needs at least k samples per problem; "
                f"raise EvalConfig.sampling.n to {max(too_big)} or drop those k"
            )
        if any(k < 1 for k in self.ks) or not self.ks:
            raise ValueError(f"EvalConfig.ks {self.ks}: every k must be a positive integer")
        if not self.models or not self.benchmarks:
            raise ValueError("EvalConfig.models and EvalConfig.benchmarks: give at least one of each")

    def sample_settings(self) -> dict:
        """What the samples depend on; a resumed run must match it."""
        return {"sampling": asdict(self.sampling), "seed": self.seed, "extraction": self.extraction}
