"""Sampling protocol presets for ``eksft eval --protocol``; explicit flags override a preset's values.

``paper``: the EKSFT paper's evaluation (section 5): temperature 1.0, top-p 1.0, 32 samples, pass@1/8/32, up to 8,192
new tokens, the instruction "Please reason step by step, and put your final answer within \\boxed{}.".

``r1``: the DeepSeek-R1 reporting protocol most math papers now follow: temperature 0.6, top-p 0.95, 64 samples, up
to 32,768 new tokens, the same instruction; R1 reports pass@1 (the mean over the 64 samples), pass@8 and pass@64 are
added here for the curve.
"""

from __future__ import annotations

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

PROTOCOLS: dict[str, dict] = {
    "paper": {
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "n": 32,
        "k": [1, 8, 32],
        "max_new_tokens": 8192,
        "instruction": INSTRUCTION,
    },
    "r1": {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 0,
        "n": 64,
        "k": [1, 8, 64],
        "max_new_tokens": 32768,
        "instruction": INSTRUCTION,
    },
}

#: Values used where neither a preset nor a flag sets them (the ``paper`` protocol).
DEFAULTS = PROTOCOLS["paper"]


def resolve(protocol: str | None, explicit: dict) -> dict:
    """The settings a run uses: ``explicit`` flag values (None = not given) over the preset over the defaults."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"EvalConfig.protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    base = dict(PROTOCOLS[protocol] if protocol else DEFAULTS)
    base.update({key: value for key, value in explicit.items() if value is not None})
    return base
