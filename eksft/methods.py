"""Named methods: a loss type with ``EKSFTConfig`` field overrides, written ``loss[field=value,...]``.

``eksft demo --methods`` and the pipeline's ``methods:`` list take these, so one run can compare the objectives that
share a loss type, e.g.
``sft,eksft,eksft[variant=official],eksft[entropy_unit=nats],eksft[lambda_entropy=0,lambda_kl=0]``, or
``sft,eaft,eaft[eaft_alpha=0.5]``.
Each is a separate trained model, labelled by its text everywhere (tables, plots, reports) and stored in a folder
named by :attr:`Method.slug`. Overrides are checked against ``EKSFTConfig`` (field names, values, and the loss's own
option checks) before anything trains.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import yaml

#: Fields the runner sets itself: overriding them per method would break the comparison or the folder layout.
RUNNER_FIELDS = ("loss_type", "output_dir", "model_name_or_path", "train_file", "seed", "data_seed")
_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[(.*)\])?\s*$", re.S)


@dataclass(frozen=True)
class Method:
    loss_type: str
    overrides: tuple[tuple[str, object], ...] = ()

    @property
    def label(self) -> str:
        """Canonical text: ``eksft[variant=official]`` (overrides in the order given)."""
        if not self.overrides:
            return self.loss_type
        return f"{self.loss_type}[{','.join(f'{k}={_text(v)}' for k, v in self.overrides)}]"

    @property
    def slug(self) -> str:
        """Folder name: letters, digits, ``_``, ``-`` and ``.`` only (``eksft__variant-official``)."""
        if not self.overrides:
            return self.loss_type
        parts = [f"{k}-{re.sub(r'[^A-Za-z0-9_.-]', '_', _text(v))}" for k, v in self.overrides]
        return f"{self.loss_type}__{'__'.join(parts)}"

    @property
    def fields(self) -> dict:
        return {"loss_type": self.loss_type, **dict(self.overrides)}

    @property
    def steps(self) -> int | None:
        """The method's own training length (``[max_steps=N]``), if it sets one."""
        return dict(self.overrides).get("max_steps")

    def with_steps(self, steps: int | None) -> Method:
        """This method trained for ``steps`` optimiser steps (``None``: without a ``max_steps`` override)."""
        rest = tuple((k, v) for k, v in self.overrides if k != "max_steps")
        return Method(self.loss_type, rest + ((("max_steps", steps),) if steps is not None else ()))

    @property
    def title(self) -> str:
        """Plain name for sentences: which objective this is (and after how many steps, when it says)."""
        if self.steps is not None:
            return f"{self.with_steps(None).title} after {self.steps} step{'' if self.steps == 1 else 's'}"
        o = dict(self.overrides)
        if self.loss_type == "sft" and not o:
            return "SFT"
        if self.loss_type == "eaft":
            return "EAFT (authors' top-20 entropy weight)" + (f" with {_pairs(o)}" if o else "")
        if self.loss_type != "eksft":
            return self.label
        if o.get("variant") == "official":
            rest = {k: v for k, v in o.items() if k != "variant"}
            return "EKSFT (authors' code)" + (f" with {_pairs(rest)}" if rest else "")
        if o.get("entropy_unit") == "nats":
            rest = {k: v for k, v in o.items() if k != "entropy_unit"}
            return "EKSFT (per-nat entropy)" + (f" with {_pairs(rest)}" if rest else "")
        if o and set(o) <= {"lambda_entropy", "lambda_kl"} and all(float(v) == 0 for v in o.values()) and len(o) == 2:
            return "EKSFT masking only (λ_H = λ_KL = 0)"
        if not o:
            return "EKSFT (paper equations, published λ)"
        return f"EKSFT (paper equations) with {_pairs(o)}"


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _pairs(values: dict) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in values.items())


def split_methods(text: str) -> list[str]:
    """Split ``a,b[x=1,y=2],c`` on the commas outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def parse_method(text: str, where: str = "methods") -> Method:
    """``loss[field=value,...]`` -> :class:`Method`; values are read as YAML scalars (``0`` -> 0, ``true`` -> True)."""
    from eksft.losses import LOSSES

    m = _SPEC.match(str(text))
    if not m:
        raise ValueError(
            f"{where}: {text!r} is not a method; write a loss type, optionally with field overrides: "
            "eksft[variant=official,rho=0.3]."
        )
    loss, body = m.group(1), m.group(2)
    if loss not in LOSSES:
        hint = difflib.get_close_matches(loss, LOSSES, n=1)
        raise ValueError(
            f"{where}: {text!r}: unknown loss type {loss!r}"
            f"{f' (did you mean {hint[0]!r}?)' if hint else ''}; choose from {sorted(LOSSES)}."
        )
    overrides = []
    for item in split_methods(body or ""):
        if "=" not in item:
            raise ValueError(f"{where}: {text!r}: override {item!r} needs the form field=value.")
        key, value = (s.strip() for s in item.split("=", 1))
        overrides.append((key, yaml.safe_load(value) if value else ""))
    method = Method(loss, tuple(overrides))
    check_overrides(method, where)
    return method


def check_overrides(method: Method, where: str = "methods") -> None:
    """Each override names an ``EKSFTConfig`` field the runner does not own, and the resulting config passes the
    config's and the loss's own checks (so ``eksft[variant=official,entropy_unit=nats]`` fails here, not mid-run)."""
    from dataclasses import fields

    from eksft.losses import BoundLoss
    from eksft.train.config import EKSFTConfig

    names = {f.name for f in fields(EKSFTConfig)}
    seen = set()
    for key, _ in method.overrides:
        if key in seen:
            raise ValueError(f"{where}: {method.label!r}: field {key!r} is given twice.")
        seen.add(key)
        if key in RUNNER_FIELDS:
            raise ValueError(
                f"{where}: {method.label!r}: {key!r} is set by the runner for every method; write the "
                "loss type before the brackets and leave the other runner fields out."
            )
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            raise ValueError(
                f"{where}: {method.label!r}: {key!r} is not a field of EKSFTConfig"
                f"{f' (did you mean {hint[0]!r}?)' if hint else ''}; see `eksft train --help`."
            )
    try:
        cfg = EKSFTConfig(output_dir="/nonexistent/eksft-method-check", report_to=[], use_cpu=True, **method.fields)
        BoundLoss.from_config(cfg)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {method.label!r}: {e}") from e


def parse_methods(value, where: str = "methods") -> list[Method]:
    """A comma-separated string or a list of method texts -> distinct :class:`Method` s, in order."""
    items = split_methods(value) if isinstance(value, str) else [str(v) for v in value]
    methods = [parse_method(t, where) for t in items]
    if not methods:
        raise ValueError(f"{where}: give at least one method, e.g. sft,eksft.")
    labels = [m.label for m in methods]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"{where}: {dup} given twice.")
    return methods
