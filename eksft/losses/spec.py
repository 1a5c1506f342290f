"""What the rest of eksft needs to know about each loss, in one table (:data:`SPECS`), and the loss a trainer runs,
bound once to its config (:class:`BoundLoss`).

Every consumer reads this table and nothing else: :class:`BoundLoss` (which config fields become which keyword
arguments, which extra inputs to compute, fused head or logits), the fused head (whether and how it serves the loss),
``eksft losses`` and the tests. Adding a loss = its function, its row here, its row in docs/losses.md, its tests.

The trainer's step, in this file's terms::

    loss = BoundLoss.from_config(config, model)          # once, at trainer construction: options checked here
    result = loss.on_hidden(hidden, head, labels, ...)    # fused head: inside the policy's forward (models/head.py)
    result = loss.on_logits(logits, labels, ...)          # or on full (B, T, V) logits
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .ablations import global_reg_loss, plan_random_mask, random_mask_loss
from .baselines import asft_loss, dft_loss, gem_loss, iw_sft_loss, psft_loss, sft_loss
from .checks import NonFiniteError, check_choice
from .eaft import eaft_loss
from .eksft import eksft_loss, plan_eksft
from .eksft_global import global_eksft_loss
from .fused import DEFAULT_CHUNK_SIZE, check_head_tensors, fused_loss
from .sed_sft import sed_sft_loss
from .targets import NORMALIZATIONS, LossResult


@dataclass(frozen=True)
class LossSpec:
    """One loss: its function and what a caller must give it.

    Attributes:
        fn: ``fn(logits, labels[, third], **options)`` on unshifted ``(B, T, V)`` logits.
        fields: keyword argument of ``fn`` -> ``EKSFTConfig`` field that sets it.
        third: the third positional input, if any: ``"ref_logits"`` (the frozen reference's logits for the same
            batch) or ``"old_logps"`` (``(B, T)`` label log-probs under the policy when the data batch was drawn).
        per_batch: keyword inputs the trainer supplies per micro-batch: ``"tau"`` (SED-SFT's calibrated threshold),
            ``"seed"`` (random_mask's per-step draw).
        fused: how ``fused_head_loss`` serves it: ``"rows"`` (one pass, the function itself on chunks of targets),
            ``"planned"`` (two passes: statistics of every target, then the gradient), None (logits path only).
        fused_options: option -> the values the fused head supports; any other value runs on the logits path.
        plan: for ``"planned"`` losses, ``plan(logp, H, KL, seq, **options)`` -> ``EksftPlan`` on detached
            per-target statistics (the masks and coefficients both paths share).
    """

    fn: Callable[..., LossResult]
    fields: dict[str, str]
    third: str | None = None
    per_batch: tuple[str, ...] = ()
    fused: str | None = None
    fused_options: dict[str, tuple] = field(default_factory=dict)
    plan: Callable | None = None

    @property
    def needs_reference(self) -> bool:
        return self.third == "ref_logits"


_N = {"normalization": "normalization"}
_REG = {"lambda_entropy": "lambda_entropy", "lambda_kl": "lambda_kl", "entropy_unit": "entropy_unit", **_N}

#: ``loss_type`` -> :class:`LossSpec`. The only table; nothing registers into it.
SPECS = {
    "sft": LossSpec(sft_loss, _N, fused="rows"),
    "eksft": LossSpec(
        eksft_loss,
        {"rho": "rho", "selection": "selection", "scope": "scope", "variant": "variant", **_REG},
        third="ref_logits",
        fused="planned",
        fused_options={"variant": ("paper",), "scope": ("micro_batch", "sequence")},
        plan=plan_eksft,
    ),
    "dft": LossSpec(dft_loss, _N, fused="rows"),
    "iw_sft": LossSpec(iw_sft_loss, {"clip": "iw_clip", **_N}, third="ref_logits"),
    "psft": LossSpec(psft_loss, {"epsilon_high": "psft_epsilon_high", **_N}, third="old_logps"),
    "asft": LossSpec(asft_loss, {"lambda_kl": "asft_lambda", **_N}, third="ref_logits", fused="rows"),
    "sed_sft": LossSpec(
        sed_sft_loss, {"lambda_sed": "sed_lambda", "k": "sed_k", **_N}, per_batch=("tau",), fused="rows"
    ),
    "gem": LossSpec(gem_loss, {"beta": "gem_beta", **_N}, fused="rows"),
    "eaft": LossSpec(
        eaft_loss,
        {"alpha": "eaft_alpha", "entropy": "eaft_entropy", "topk": "eaft_topk", "normalizer": "eaft_normalizer", **_N},
        fused="rows",
    ),
    "global_reg": LossSpec(global_reg_loss, _REG, third="ref_logits", fused="rows"),
    "random_mask": LossSpec(
        random_mask_loss,
        {"fraction": "random_mask_fraction", **_REG},
        third="ref_logits",
        per_batch=("seed",),
        fused="planned",
        plan=plan_random_mask,
    ),
}


#: The losses the fused head serves (``SPECS[name].fused`` is set).
FUSED_LOSSES = tuple(name for name, spec in SPECS.items() if spec.fused)


def fused_refusal(loss_type: str, options: dict) -> str | None:
    """Why ``fused_head_loss`` cannot compute ``loss_type`` with ``options`` (None: it can). The one place this is
    decided: the trainer asks it once per run, ``fused_head_loss`` asks it to validate its arguments."""
    spec = SPECS[loss_type]
    if spec.fused is None:
        fused = ", ".join(name for name, s in SPECS.items() if s.fused)
        return f"loss_type={loss_type!r} has no fused implementation (fused: {fused})"
    for option, supported in spec.fused_options.items():
        if option in options and options[option] not in supported:
            return (
                f"{option}={options[option]!r} is not supported by the fused head for {loss_type} "
                f"(supported: {', '.join(map(repr, supported))})"
            )
    return None


# ------------------------------------------------------------------------------------------------------ options
def resolve_options(loss_type: str, options: dict) -> dict:
    """The loss's own keyword options (those of its logits-path function) with its defaults filled in; unknown or
    missing ones are an error. ``normalization`` and the per-batch inputs are not options."""
    fn = SPECS[loss_type].fn
    shared = {"normalization", "ignore_index", "num_items_in_batch", "position_ids", *SPECS[loss_type].per_batch}
    params = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in shared
    }
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"`{loss_type}` has no option(s) {unknown}; its options are {sorted(params)}.")
    return {**{k: v for k, v in params.items() if v is not inspect.Parameter.empty}, **options}


def check_options(loss_type: str, normalization: str, options: dict, batch: dict) -> None:
    """Check option *values* the way the loss itself does: its logits-path function once on a 1 x 3 x 5 dummy batch
    (``scope="global"`` checked as ``micro_batch``: the same options without the process group)."""
    check_choice("normalization", normalization, NORMALIZATIONS)
    spec = SPECS[loss_type]
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(1, 3, 5, generator=g), torch.tensor([[-100, 1, 2]])
    third = {"ref_logits": (torch.randn(1, 3, 5, generator=g),), "old_logps": (torch.zeros(1, 3),), None: ()}
    local = {**options, "scope": "micro_batch"} if options.get("scope") == "global" else options
    missing = sorted(k for k in spec.per_batch if batch.get(k) is None)
    if missing:
        raise ValueError(f"`{loss_type}` needs {missing} (see {spec.fn.__name__}).")
    spec.fn(logits, labels, *third[spec.third], normalization=normalization, **local, **batch)


@dataclass(frozen=True)
class BoundLoss:
    """The loss a trainer runs, resolved once from its config: which function, its options (defaults filled in,
    values checked), and whether it runs on the fused head or on full logits.

    Attributes:
        name: the ``loss_type``.
        spec: its row of :data:`SPECS`.
        options: the loss's keyword options (``rho``, ``lambda_entropy``, ...), from the config fields ``spec.fields``
            names, complete and checked; ``normalization`` is kept apart.
        normalization: ``mean`` or ``tokens`` (``eksft.losses.targets.denominator``).
        fused: True: :meth:`on_hidden` (the fused head, no ``(B, T, V)`` logits); False: :meth:`on_logits`.
        why_not_fused: why the fused head does not run (None when it does).
        fn: the logits-path function (``eksft_loss``, or ``global_eksft_loss`` for ``scope="global"``).
        chunk_size: targets projected at once by the fused head.
    """

    name: str
    spec: LossSpec
    options: dict
    normalization: str
    fused: bool
    why_not_fused: str | None
    fn: Callable[..., LossResult]
    chunk_size: int = DEFAULT_CHUNK_SIZE

    @property
    def needs_reference(self) -> bool:
        return self.spec.needs_reference

    @classmethod
    def from_config(
        cls, config, model=None, *, loss_type: str | None = None, implementation: str | None = None
    ) -> BoundLoss:
        """Bind ``config.loss_type`` (or ``loss_type``) with the config's option fields. ``config.loss_implementation``
        picks the path: ``logits``; ``fused`` (an error naming the reason when it cannot run); ``auto`` (fused where
        the loss, its options and ``model``'s head allow it). A bad option value is a ValueError naming the config
        field. ``loss_type`` / ``implementation`` override the config's (PSFT's evaluation runs SFT on logits)."""
        name = loss_type or config.loss_type
        spec = SPECS[name]
        values = {kw: getattr(config, attr) for kw, attr in spec.fields.items()}
        normalization = values.pop("normalization")
        options = resolve_options(name, values)
        try:
            check_options(name, normalization, options, {k: {"tau": 0.5, "seed": 0}[k] for k in spec.per_batch})
        except ValueError as e:
            fields = ", ".join(f"{kw} = {type(config).__name__}.{f}" for kw, f in spec.fields.items() if kw in str(e))
            raise ValueError(f"invalid loss option for loss_type={name!r}: {e} ({fields or 'see --help'})") from e
        why = _why_not_fused(implementation or config.loss_implementation, name, options, model)
        fn = spec.fn
        if name == "eksft" and options["scope"] == "global":  # EKSFTConfig allows it with variant='paper' only
            fn = global_eksft_loss
            options = {k: v for k, v in options.items() if k not in ("scope", "variant")}
        return cls(name, spec, options, normalization, why is None, why, fn)

    def _options(self, tau=None, seed=0, **batch) -> dict:
        """The call's keyword arguments: the bound options, ``normalization``, the per-batch inputs the spec names
        (SED-SFT's ``tau``, random_mask's ``seed``) and ``num_items_in_batch`` / ``position_ids`` from ``batch``."""
        per_batch = {k: v for k, v in (("tau", tau), ("seed", seed)) if k in self.spec.per_batch}
        return {**self.options, **per_batch, "normalization": self.normalization, **batch}

    def on_logits(self, logits, labels, *, ref_logits=None, old_logps=None, **batch) -> LossResult:
        """The loss on full ``(B, T, V)`` logits (and the reference's, or PSFT's old log-probs, as the spec needs).
        ``batch``: ``num_items_in_batch``, ``position_ids``, ``tau``, ``seed`` (those the loss takes are passed)."""
        third = {"ref_logits": (ref_logits,), "old_logps": (old_logps,), None: ()}[self.spec.third]
        if third and third[0] is None:
            raise RuntimeError(f"loss_type={self.name!r} needs {self.spec.third} but none were computed (trainer bug).")
        return self.fn(logits, labels, *third, **self._options(**batch))

    def on_hidden(self, hidden, head, labels, *, ref_hidden=None, ref_head=None, **batch) -> LossResult:
        """The loss from final hidden states and the output head (``eksft.models.head.LMHead``, weight gathered),
        and the reference's, without ``(B, T, V)`` logits; ``batch`` as in :meth:`on_logits`. Runs inside the
        policy's forward (models/head.py)."""
        for what, states in (("final hidden states", hidden), ("reference hidden states", ref_hidden)):
            if states is not None and not bool(torch.isfinite(states.detach()).all()):
                raise NonFiniteError(f"{what} contain NaN or inf values", what)
        ref = ()
        if self.needs_reference:
            if ref_hidden is None or ref_head is None:
                raise RuntimeError(f"loss_type={self.name!r} needs reference hidden states (trainer bug).")
            ref = (ref_hidden, ref_head.weight)
        options = self._options(**batch)
        shared = {k: options.pop(k) for k in ("normalization", "num_items_in_batch", "position_ids") if k in options}
        return fused_loss(
            self.spec,
            options,
            hidden,
            head.weight,
            labels,
            *ref,
            chunk_size=self.chunk_size,
            **shared,
            **head.head_kwargs(ref_head),
        )


def _why_not_fused(implementation: str, name: str, options: dict, model) -> str | None:
    """Why the fused head does not run (None: it does). Config reasons come from the spec (:func:`fused_refusal`),
    model reasons (LoRA or ``modules_to_save`` on lm_head, a non-linear head) from ``eksft.models.lm_head_parts``;
    an explicit ``fused`` that cannot run is an error naming the reason."""
    if implementation == "logits":
        return "loss_implementation='logits'"
    reason = fused_refusal(name, options)
    if reason is None and model is not None:
        from eksft.models.head import lm_head_parts

        try:
            lm_head_parts(model)
        except ValueError as e:
            reason = str(e)
    if reason is not None and implementation == "fused":
        raise ValueError(
            f"EKSFTConfig.loss_implementation='fused': {reason}; set loss_implementation: auto "
            "(falls back to the logits path) or logits."
        )
    return reason


# ------------------------------------------------------------------------------------------------ the fused head
def fused_head_loss(
    loss_type: str,
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    ref_hidden: torch.Tensor | None = None,
    ref_lm_head_weight: torch.Tensor | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    lm_head_bias: torch.Tensor | None = None,
    ref_lm_head_bias: torch.Tensor | None = None,
    logit_scale: float | None = None,
    final_logit_softcapping: float | None = None,
    normalization: str = "mean",
    ignore_index: int = -100,
    num_items_in_batch=None,
    position_ids: torch.Tensor | None = None,
    **options,
) -> LossResult:
    """``LOSSES[loss_type]`` on ``head_logits(hidden, ...)`` (and the reference's), without building those logits.

    Args:
        loss_type: one of ``FUSED_LOSSES``: eksft, sft, dft, gem, sed_sft, asft, global_reg, random_mask, eaft.
        hidden: ``(B, T, d)`` policy final hidden states (after the final norm). Gradients flow into these.
        lm_head_weight: ``(V, d)`` policy output projection (may be the tied embedding matrix); gets a gradient.
        labels: ``(B, T)`` unshifted token ids, ``ignore_index`` where not scored.
        ref_hidden, ref_lm_head_weight: the frozen reference's, for losses that need it (``SPECS``; detached here).
        chunk_size: valid targets projected at once; peak extra memory is a few ``(chunk_size, V)`` fp32 blocks.
        lm_head_bias, ref_lm_head_bias: ``(V,)`` output biases, if the heads have them.
        logit_scale, final_logit_softcapping: the model's logit multiplier and soft-cap
            (``eksft.models.lm_head_parts``), applied to both models' logits.
        normalization, ignore_index, num_items_in_batch, position_ids, **options: as the logits-path loss takes them.
    """
    check_choice("loss_type", loss_type, FUSED_LOSSES)
    spec = SPECS[loss_type]
    defaults = {p.name: p.default for p in inspect.signature(spec.fn).parameters.values() if p.name in spec.per_batch}
    batch = {k: options.pop(k, defaults[k]) for k in spec.per_batch}
    batch = {k: v for k, v in batch.items() if v is not inspect.Parameter.empty}
    options = resolve_options(loss_type, options)
    refusal = fused_refusal(loss_type, options)
    if refusal:
        raise ValueError(f"{refusal}; use {spec.fn.__name__} on full logits.")
    check_options(loss_type, normalization, options, batch)
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"`chunk_size` must be an integer >= 1 (targets per block), got {chunk_size!r}.")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 2 or labels.is_floating_point():
        raise ValueError("`labels` must be an integer tensor of shape (B, T).")
    check_head_tensors(hidden, lm_head_weight, lm_head_bias, labels, "hidden", "lm_head_weight", "lm_head_bias")
    if spec.needs_reference:
        if ref_hidden is None or ref_lm_head_weight is None:
            raise ValueError(f"`{loss_type}` needs the reference: pass `ref_hidden` and `ref_lm_head_weight`.")
        check_head_tensors(
            ref_hidden,
            ref_lm_head_weight,
            ref_lm_head_bias,
            labels,
            "ref_hidden",
            "ref_lm_head_weight",
            "ref_lm_head_bias",
        )
        if ref_lm_head_weight.shape[0] != lm_head_weight.shape[0]:
            raise ValueError("`ref_lm_head_weight` and `lm_head_weight` must have the same vocabulary size V.")
    ref = (ref_hidden, ref_lm_head_weight) if spec.needs_reference else ()
    return fused_loss(
        spec,
        {**options, **batch},
        hidden,
        lm_head_weight,
        labels,
        *ref,
        chunk_size=chunk_size,
        normalization=normalization,
        ignore_index=ignore_index,
        num_items_in_batch=num_items_in_batch,
        position_ids=position_ids,
        lm_head_bias=lm_head_bias,
        ref_lm_head_bias=ref_lm_head_bias,
        logit_scale=logit_scale,
        final_logit_softcapping=final_logit_softcapping,
    )


def eksft_head_loss(hidden, lm_head_weight, labels, ref_hidden, ref_lm_head_weight, **kwargs) -> LossResult:
    """:func:`eksft_loss` from final hidden states, without ``(B, T, V)`` logits: ``fused_head_loss("eksft", ...)``.
    EKSFT's options (``rho``, ``lambda_entropy``, ... with ``eksft_loss``'s defaults) and the head arguments
    (``chunk_size``, ``lm_head_bias``, ``logit_scale``, ...) as :func:`fused_head_loss` takes them.
    ``variant="official"`` is refused (docs/fused_head.md)."""
    return fused_head_loss("eksft", hidden, lm_head_weight, labels, ref_hidden, ref_lm_head_weight, **kwargs)
