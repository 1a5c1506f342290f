"""Rewards of the DAPO stage: 0/1 math-verify accuracy on the boxed answer, plus TRL's soft overlong punishment.

The accuracy reward is :func:`eksft.eval.verify.check_answer` (gold first, last ``\\boxed{}``), the exact check
``eksft eval`` reports, so "reward went up" and "pass@1 went up" measure the same thing. A truncated completion is
scored on what it wrote (an unclosed ``\\boxed{`` has no answer, so 0); with ``mask_truncated_completions`` it gets
no gradient anyway (DAPO, section 3.4).
"""

from __future__ import annotations

from trl.rewards import get_soft_overlong_punishment

from eksft.eval.verify import check_answer, parse_gold

from .config import RLConfig


def completion_text(completion) -> str:
    """GRPOTrainer passes strings for text prompts and ``[{"role": "assistant", "content": ...}]`` for chat ones."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


class MathAccuracyReward:
    """``reward(completions, answer, **kw) -> [1.0 | 0.0, ...]``: the dataset's ``answer`` column is the gold.

    A callable class (not a closure) so it pickles, as TRL's async rollout workers need; ``__name__`` becomes the
    metric name ``rewards/accuracy/mean`` (the mean accuracy of the batch's completions).
    """

    __name__ = "accuracy"

    def __init__(self, extraction: str = "last_boxed", timeout: int | None = 5):
        self.extraction, self.timeout = extraction, timeout
        self._gold_cache: dict[str, object] = {}  # each prompt's gold is parsed once, not once per sample

    def _gold(self, gold: str):
        if gold not in self._gold_cache:
            self._gold_cache[gold] = parse_gold(gold, self.timeout)
        return self._gold_cache[gold]

    def __call__(self, completions, answer, **kwargs) -> list[float]:
        if len(answer) != len(completions):
            raise ValueError(f"accuracy reward: {len(completions)} completions but {len(answer)} gold answers.")
        return [
            float(
                check_answer(
                    self._gold(str(g)), completion_text(c), extraction=self.extraction, timeout=self.timeout
                ).correct
            )
            for c, g in zip(completions, answer)
        ]


def reward_functions(cfg: RLConfig) -> list:
    """Accuracy first, then (when on) the overlong penalty: the order of ``cfg.reward_weights``."""
    funcs = [MathAccuracyReward(cfg.answer_extraction, cfg.verify_timeout)]
    if cfg.overlong_buffer_len > 0:
        funcs.append(get_soft_overlong_punishment(cfg.max_completion_length, cfg.overlong_buffer_len))
    return funcs
