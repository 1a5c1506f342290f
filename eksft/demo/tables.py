"""The numbers of the demo's report: its results table (one row per metric, one column per model) and the table
against SFT length, each cell with its 95% interval: over seeds (Student t) when there are several, else the one
seed's bootstrap over the evaluation problems or the held-out solutions."""

from __future__ import annotations

from eksft.eval.intervals import RESAMPLES

from .claims import weighted_interval
from .config import BASE
from .stats import fmt

# (row label, getter(seed_record, model_label) -> float | None, which direction is better: 1 up, -1 down, 0 neither)
ROWS = [
    ("pass@1", lambda s, m: s["eval"][m]["pass@1"], 1),
    ("pass@{n}", lambda s, m: s["eval"][m][f"pass@{s['eval'][m]['n']}"], 1),
    ("pass@1, last number as the answer", lambda s, m: s["eval"][m].get(f"avg@{s['eval'][m]['n']}_last_number"), 1),
    ("no \\boxed{} answer (share)", lambda s, m: s["eval"][m]["no_answer_fraction"], -1),
    ("truncated responses (share)", lambda s, m: s["eval"][m]["truncated_fraction"], -1),
    ("mean response tokens", lambda s, m: s["eval"][m]["mean_response_tokens"], 0),
    ("distinct answers per problem", lambda s, m: s["eval"][m]["distinct_answers_per_problem"], 0),
    ("sample token entropy (nats)", lambda s, m: s["eval"][m]["mean_token_entropy"], 0),
    ("distinct-2 of samples", lambda s, m: s["eval"][m]["distinct_2"], 0),
    ("held-out NLL (nats/token)", lambda s, m: s["heldout"][m]["nll"], -1),
    ("held-out entropy (nats/token)", lambda s, m: s["heldout"][m]["entropy"], 0),
    ("held-out KL to base (nats/token)", lambda s, m: s["heldout"][m]["kl"], -1),
    (
        "parameters changed > 1e-3 (share)",
        lambda s, m: 0.0 if m not in s["runs"] else (s["drift"] or {}).get(m, {}).get("0.001"),
        -1,
    ),
    ("training time (min)", lambda s, m: None if m not in s["runs"] else s["runs"][m]["train_seconds"] / 60, -1),
]

#: Row -> its interval with one seed: the eval bootstrap's key (over problems) or the held-out statistic (over
#: solutions). Rows not listed have no single-seed interval.
EVAL_KEYS = {
    "pass@1": "pass@1",
    "pass@{n}": "pass@{n}",
    "pass@1, last number as the answer": "avg@{n}_last_number",
    "no \\boxed{} answer (share)": "no_answer_fraction",
    "truncated responses (share)": "truncated_fraction",
    "mean response tokens": "mean_response_tokens",
    "distinct answers per problem": "distinct_answers_per_problem",
    "sample token entropy (nats)": "mean_token_entropy",
    "distinct-2 of samples": "distinct_2",
}
HELDOUT_KEYS = {
    "held-out NLL (nats/token)": "nll",
    "held-out entropy (nats/token)": "entropy",
    "held-out KL to base (nats/token)": "kl",
}


def single_seed_interval(seed: dict, name: str, model: str) -> tuple[float, float] | None:
    """The 95% interval of one seed's cell (bootstrap over problems or held-out solutions), if it has one."""
    try:
        if name in EVAL_KEYS:
            key = EVAL_KEYS[name].replace("{n}", str(seed["eval"][model]["n"]))
            lo, hi = seed["eval"][model]["intervals"][key]
            return float(lo), float(hi)
        if name in HELDOUT_KEYS:
            ps = seed["heldout"][model]["per_solution"]
            return weighted_interval(ps[HELDOUT_KEYS[name]], ps["tokens"])
    except (KeyError, TypeError, ValueError):
        return None
    return None


def cell(summary: dict, name: str, getter, model: str) -> str:
    xs = values(summary, getter, model)
    if len(summary["seeds"]) >= 2 or not xs:
        return fmt(xs)
    iv = single_seed_interval(summary["seeds"][0], name, model)
    return fmt(xs) if iv is None else f"{xs[0]:.3f} [{iv[0]:.3f}, {iv[1]:.3f}]"


def interval_note(summary: dict) -> str:
    seeds = len(summary["seeds"])
    if seeds >= 2:
        return (
            f"Cells: mean ± half-width of the 95% Student-t interval over {seeds} training seeds (each seed "
            "trains every model and samples its own answers)."
        )
    return (
        f"Cells: value [95% interval] from one seed: a bootstrap over the evaluation problems ({RESAMPLES:,} "
        "resamples; pass@k resamples each problem's unbiased estimate) or over the held-out solutions "
        "(token-weighted). "
        "It covers which problems were drawn and the sampling, not training noise: use --seeds 3 for that."
    )


def values(summary: dict, getter, model: str) -> list[float]:
    out = []
    for s in summary["seeds"]:
        try:
            v = getter(s, model)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            out.append(float(v))
    return out


def start_label(summary: dict) -> str:
    """The label of the model every method started from (the first model): ``base``, or the ``warm start`` of the
    self data regime. "KL to base" is KL to this model."""
    return next(iter(summary["seeds"][0]["models"]))


def shown_name(summary: dict, name: str) -> str:
    """A row name as the report shows it: pass@{n} with the run's n, KL "to base" named after the start model."""
    start = start_label(summary)
    name = name.replace("{n}", str(summary["config"]["samples"]))
    return name if start == BASE else name.replace("KL to base", f"KL to {start}")


def results_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    labels = list(summary["seeds"][0]["models"])
    rows = []
    for name, getter, _ in ROWS:
        if not any(values(summary, getter, m) for m in labels):
            continue  # e.g. no last-number check in older results
        rows.append([shown_name(summary, name), *(cell(summary, name, getter, m) for m in labels)])
    return ["metric", *labels], rows


def steps_text(steps) -> str:
    return " and ".join(map(str, steps)) if isinstance(steps, (list, tuple)) else str(steps)


def length_groups(summary: dict) -> dict[int, list[str]]:
    """``{steps: [labels trained that long]}`` for the methods with their own length (``[max_steps=N]``, which
    ``--steps 20,80`` gives every method), lengths ascending; empty when no method sets one."""
    from eksft.methods import parse_method

    out: dict[int, list[str]] = {}
    for label in summary["seeds"][0]["runs"]:
        try:
            steps = parse_method(label).steps
        except ValueError:
            continue
        if steps is not None:
            out.setdefault(int(steps), []).append(label)
    return dict(sorted(out.items()))


#: The rows of the SFT-length table: (row name in ROWS, shown as).
LENGTH_ROWS = [
    ("pass@1", "pass@1"),
    ("pass@{n}", "pass@{n}"),
    ("held-out entropy (nats/token)", "held-out entropy"),
    ("held-out KL to base (nats/token)", "held-out KL to base"),
]


def length_table(summary: dict) -> tuple[list[str], list[list[str]]] | None:
    """pass@1, pass@k, held-out entropy and KL against SFT length, one row per (method, metric), one column per
    length; None when fewer than two lengths were trained."""
    from eksft.methods import parse_method

    groups = length_groups(summary)
    if len(groups) < 2:
        return None
    n = summary["config"]["samples"]
    getters = dict((name, g) for name, g, _ in ROWS)
    methods: dict[str, dict[int, str]] = {}  # method without its length -> {steps: label}
    for steps, labels in groups.items():
        for label in labels:
            methods.setdefault(parse_method(label).with_steps(None).label, {})[steps] = label
    rows = []
    for method, by_steps in methods.items():
        for name, shown in LENGTH_ROWS:
            cells = [cell(summary, name, getters[name], by_steps[s]) if s in by_steps else "–" for s in groups]
            rows.append([method, shown.replace("{n}", str(n)), *cells])
    return ["method", "metric", *(f"{s} steps" for s in groups)], rows
