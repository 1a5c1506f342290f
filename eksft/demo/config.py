"""The demo's settings. Defaults finish in about 15 minutes on a 2-core CPU; ``--quick`` in about 3 (see
docs/demo.md for how the sizes were chosen)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from eksft.losses import LOSSES


@dataclass
class DemoConfig:
    output_dir: str = field(default="runs/demo", metadata={"help": "report, models, samples and plots go here"})
    model: str = field(default="smollm2-135m-instruct", metadata={
        "help": "starting model: a local folder, a hub name, or the built-in alias smollm2-135m-instruct"})
    methods: list[str] = field(default_factory=lambda: ["sft", "eksft"], metadata={
        "help": f"comma-separated loss types to train, from {sorted(LOSSES)}"})
    seeds: int = field(default=1, metadata={"help": "repeat training and evaluation with seeds 0..N-1; N >= 2 "
                                                    "reports mean ± 95% interval"})
    task: str = field(default="arithmetic-easy", metadata={"help": "built-in task used for training and evaluation"})
    train_size: int = field(default=160, metadata={"help": "training records (worked solutions ending in \\boxed{})"})
    steps: int = field(default=20, metadata={"help": "optimiser steps per method"})
    batch_size: int = field(default=8, metadata={"help": "sequences per optimiser step"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (cosine, 10% warmup)"})
    rho: float = field(default=0.2, metadata={"help": "EKSFT top-k ratio"})
    lambda_entropy: float = field(default=0.05, metadata={"help": "EKSFT entropy bonus weight"})
    lambda_kl: float = field(default=0.05, metadata={"help": "EKSFT KL penalty weight"})
    eval_problems: int = field(default=64, metadata={"help": "held-out evaluation problems"})
    samples: int = field(default=4, metadata={"help": "samples per problem (temperature 1.0); pass@k up to this"})
    max_new_tokens: int = field(default=64, metadata={"help": "response length cap when sampling"})
    heldout_solutions: int = field(default=16, metadata={
        "help": "held-out worked solutions scored for entropy and KL to the base model"})
    threads: int = field(default=0, metadata={"help": "torch threads (0: all cores)"})
    quick: bool = field(default=False, metadata={"help": "tiny settings (about 3 minutes): a smoke run, not a result"})

    def validate(self) -> None:
        from eksft.data.synthetic import BENCHMARKS

        unknown = [m for m in self.methods if m not in LOSSES]
        if unknown:
            raise ValueError(f"--methods: unknown loss type(s) {unknown}; choose from {sorted(LOSSES)}")
        if not self.methods:
            raise ValueError("--methods: give at least one loss type, e.g. sft,eksft")
        if self.task not in BENCHMARKS:
            raise ValueError(f"--task {self.task!r}: choose one of {sorted(BENCHMARKS)}")
        for name in ("seeds", "train_size", "steps", "batch_size", "eval_problems", "samples", "max_new_tokens",
                     "heldout_solutions"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.steps * self.batch_size > self.train_size * 20:
            raise ValueError(f"--steps {self.steps} x --batch-size {self.batch_size} is over 20 epochs of "
                             f"--train-size {self.train_size}; raise --train-size")  # fmt: skip

    @property
    def ks(self) -> list[int]:
        """1, 2, 4, ... up to the number of samples (always including it)."""
        ks, k = [], 1
        while k < self.samples:
            ks.append(k)
            k *= 2
        return ks + [self.samples]


#: ``--quick``: every stage runs, on sizes that finish in about three minutes. Checks the machinery, not EKSFT.
QUICK = dict(train_size=24, steps=3, batch_size=4, eval_problems=6, samples=2, max_new_tokens=40,
             heldout_solutions=4)  # fmt: skip


def with_quick(cfg: DemoConfig, explicit: set[str]) -> DemoConfig:
    """Apply the quick preset to every field the user did not set explicitly."""
    if not cfg.quick:
        return cfg
    return replace(cfg, **{k: v for k, v in QUICK.items() if k not in explicit})


FIELDS = list(fields(DemoConfig))
