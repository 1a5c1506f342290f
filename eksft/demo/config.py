"""The demo's settings. Defaults finish in about 12 minutes on a 2-core CPU; ``--quick`` in about a minute (65 s
on an idle machine; see docs/demo.md for how the sizes were chosen and what they measured).

Errors name the field (``DemoConfig.task``); ``eksft demo`` prints them as its flags (``--task``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from eksft.losses.eksft import LAMBDA_ENTROPY, LAMBDA_KL, RHO

#: The starting model's label in every table and plot.
BASE = "base"
#: ``data_regime="self"``: the label of the warm-start model (SFT on the demo's records), where training continues.
WARM = "warm start"
#: ``DemoConfig.data_regime`` values (docs/demo.md, "The paper's data regime").
REGIMES = ("given", "self")


@dataclass
class DemoConfig:
    output_dir: str = field(default="runs/demo", metadata={"help": "report, models, samples and plots go here"})
    model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "starting model: a local folder, a hub name, or the built-in alias smollm2-135m-instruct"},
    )
    methods: list[str] = field(
        default_factory=lambda: ["sft", "eksft"],
        metadata={
            "help": "comma-separated methods to train: a loss type, optionally with EKSFTConfig field overrides in "
            "brackets, e.g. sft,eksft,eksft[variant=official],eksft[entropy_unit=nats],"
            "eksft[lambda_entropy=0,lambda_kl=0]; each is its own model and label"
        },
    )
    seeds: int = field(
        default=1,
        metadata={
            "help": "repeat training and evaluation with seeds 0..N-1; N >= 2 reports mean ± 95% interval",
            "range": "[1, inf)",
        },
    )
    first_seed: int = field(
        default=0,
        metadata={
            "help": "seeds run first_seed .. first_seed+N-1 (e.g. --first-seed 3 --seeds 3 for a confirmation run on "
            "seeds not used to choose a setting)",
            "range": "[0, inf)",
        },
    )
    task: str = field(default="arithmetic-easy", metadata={"help": "built-in task used for training and evaluation"})
    train_size: int = field(
        default=160, metadata={"help": "training records (worked solutions ending in \\boxed{})", "range": "[1, inf)"}
    )
    steps: int | list[int] = field(
        default=20,
        metadata={
            "help": "optimiser steps per method; several, comma-separated (e.g. 20,80), train each method once per "
            "length (labels method[max_steps=N]) and the report compares them against SFT length; with "
            "--data-regime self, the warm start's length (one)"
        },
    )
    batch_size: int = field(default=8, metadata={"help": "sequences per optimiser step", "range": "[1, inf)"})
    learning_rate: float = field(
        default=1e-4, metadata={"help": "AdamW learning rate (cosine, 10% warmup)", "range": "(0, inf)"}
    )
    rho: float = field(
        default=RHO, metadata={"help": "EKSFT top-k ratio (a method's [rho=...] overrides it)", "range": "[0, 1]"}
    )
    lambda_entropy: float = field(
        default=LAMBDA_ENTROPY,
        metadata={
            "help": "EKSFT entropy bonus weight, per unit of the method's entropy_unit (default H / ln V, the "
            "published unit; [entropy_unit=nats] makes it per nat)",
            "range": "[0, inf)",
        },
    )
    lambda_kl: float = field(
        default=LAMBDA_KL, metadata={"help": "EKSFT KL penalty weight (per nat)", "range": "[0, inf)"}
    )
    eval_problems: int = field(default=32, metadata={"help": "held-out evaluation problems", "range": "[1, inf)"})
    eval_offset: int = field(
        default=0,
        metadata={
            "help": "skip the first N evaluation problems: --eval-offset 64 --eval-problems 64 evaluates problems "
            "64-127, held out from a selection run on problems 0-63",
            "range": "[0, inf)",
        },
    )
    samples: int = field(
        default=16, metadata={"help": "samples per problem (temperature 1.0); pass@k up to this", "range": "[1, inf)"}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "response length cap when sampling", "range": "[1, inf)"})
    heldout_solutions: int = field(
        default=16,
        metadata={"help": "held-out worked solutions scored for entropy and KL to the base model", "range": "[1, inf)"},
    )
    data_regime: str = field(
        default="given",
        metadata={
            "help": "given: train each method from the model on the demo's worked solutions; self: the paper's "
            "data regime: SFT on them first (--steps, the warm start), then continue each method from that model "
            "on its own verified-correct solutions to new problems (--trace-problems, --trace-samples, "
            "--continue-steps; docs/demo.md)",
            "choices": REGIMES,
        },
    )
    trace_problems: int = field(
        default=256,
        metadata={
            "help": "self regime: new problems (not trained on, not evaluated) the warm start solves",
            "range": "[1, inf)",
        },
    )
    trace_samples: int = field(
        default=4,
        metadata={
            "help": "self regime: samples per new problem (temperature 1.0); correct ones become the traces",
            "range": "[1, inf)",
        },
    )
    continue_steps: int = field(
        default=20,
        metadata={
            "help": "self regime: optimiser steps per method on the traces, from the warm start",
            "range": "[1, inf)",
        },
    )
    threads: int = field(default=0, metadata={"help": "torch threads (0: all cores)", "range": "[0, inf)"})
    quick: bool = field(default=False, metadata={"help": "tiny settings (about 1 minute): a smoke run, not a result"})

    def validate(self) -> None:
        from eksft.config_io import check_fields
        from eksft.data.synthetic import BENCHMARKS

        self.parsed_methods()
        if self.task not in BENCHMARKS:
            raise ValueError(f"DemoConfig.task: {self.task!r} is not a task; choose one of {sorted(BENCHMARKS)}")
        self.expanded_methods()
        if self.data_regime not in REGIMES:
            raise ValueError(
                f"DemoConfig.data_regime: {self.data_regime!r} is not a data regime; choose one of {list(REGIMES)}"
            )
        check_fields(self)  # the choices and ranges of the fields' metadata
        if self.data_regime == "self" and len(self.lengths) > 1:
            raise ValueError(
                f"DemoConfig.steps: the self data regime takes one warm-start length, got {self.steps}; "
                "set the continued training with DemoConfig.continue_steps"
            )
        if min(self.lengths) < 1 or len(set(self.lengths)) != len(self.lengths):
            raise ValueError(f"DemoConfig.steps: each length must be >= 1 and given once, got {self.steps}")
        if max(self.lengths) * self.batch_size > self.train_size * 20:
            raise ValueError(
                f"DemoConfig.steps {max(self.lengths)} x DemoConfig.batch_size {self.batch_size} is over 20 "
                f"epochs of DemoConfig.train_size {self.train_size}; "
                "raise DemoConfig.train_size"
            )

    def parsed_methods(self):
        """``methods`` as :class:`eksft.methods.Method` s (validated: unknown fields and bad values fail here)."""
        from eksft.methods import parse_methods

        if isinstance(self.methods, str):
            self.methods = [self.methods]
        return parse_methods(",".join(self.methods), where="DemoConfig.methods")

    @property
    def lengths(self) -> list[int]:
        """``steps`` as a list: the SFT lengths compared (one for a plain run)."""
        return [int(s) for s in self.steps] if isinstance(self.steps, (list, tuple)) else [int(self.steps)]

    def expanded_methods(self):
        """The models to train: ``parsed_methods``, each once per length when ``steps`` gives several (length-major,
        so each length's methods sit side by side), labelled ``method[max_steps=N]``."""
        methods = self.parsed_methods()
        if len(self.lengths) == 1:
            return methods
        own = [m.label for m in methods if m.steps is not None]
        if own:
            raise ValueError(
                f"DemoConfig.steps: several lengths ({self.steps}) and methods with their own max_steps ({own}); "
                "give the lengths in one place"
            )
        return [m.with_steps(n) for n in self.lengths for m in methods]

    @property
    def ks(self) -> list[int]:
        """1, 2, 4, ... up to the number of samples (always including it)."""
        ks, k = [], 1
        while k < self.samples:
            ks.append(k)
            k *= 2
        return ks + [self.samples]


#: ``--quick``: every stage runs, on sizes that finish in about a minute (65 s measured on an idle 2-core machine).
#: Checks the machinery, not EKSFT.
QUICK = dict(
    train_size=24,
    steps=3,
    batch_size=4,
    eval_problems=6,
    samples=2,
    max_new_tokens=40,
    heldout_solutions=4,
    trace_problems=8,
    trace_samples=2,
    continue_steps=3,
)


def with_quick(cfg: DemoConfig, explicit: set[str]) -> DemoConfig:
    """Apply the quick preset to every field the user did not set explicitly."""
    if not cfg.quick:
        return cfg
    return replace(cfg, **{k: v for k, v in QUICK.items() if k not in explicit})


FIELDS = list(fields(DemoConfig))
