"""Parameter drift between a base checkpoint and tuned ones (paper Appendix C, Figures 4-5).

For every parameter element, the relative change |θ_tuned − θ_base| / (|θ_base| + eps). Reported per module type
(attention, MLP, embeddings, norms, lm_head, other): the share of elements above each threshold, plus per tensor
the relative Frobenius change ‖Δ‖/‖θ_base‖ and a log-spaced histogram of the element-wise changes.

Checkpoints are read tensor by tensor from their safetensors files (memory-mapped), so two 8B models are never in
memory at once: at any moment one tensor of the base and one of each tuned model are.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

THRESHOLDS = (1e-4, 1e-3, 1e-2, 1e-1)
MODULE_TYPES = ("attention", "mlp", "embeddings", "norms", "lm_head", "other")
EPS = 1e-12  # keeps exactly-zero base elements finite; any change of one of them then counts as large
BINS = torch.logspace(-8, 2, 101)  # histogram edges of the relative change; below 1e-8 goes to the first bin


def module_type(name: str) -> str:
    """Classify a parameter by its name (Llama / Qwen / Mistral / GPT-2 style names)."""
    n = name.lower()
    if "lm_head" in n:
        return "lm_head"
    if "embed" in n or n.endswith("wte.weight") or n.endswith("wpe.weight"):
        return "embeddings"
    if "norm" in n or ".ln_" in n or "layernorm" in n:
        return "norms"
    if any(s in n for s in ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj")):
        return "attention"
    if any(s in n for s in ("mlp", "gate_proj", "up_proj", "down_proj", "ffn", "feed_forward", ".fc")):
        return "mlp"
    return "other"


class SafetensorsCheckpoint:
    """Lazy, tensor-at-a-time view of a checkpoint folder (one file or an index of shards)."""

    def __init__(self, name_or_path: str):
        folder = Path(name_or_path)
        if not folder.is_dir():
            folder = self._download(name_or_path)
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise ValueError(
                f"{folder} has no *.safetensors files; re-save the model with save_pretrained() "
                "(safetensors is the default) to measure drift"
            )
        from safetensors import safe_open

        self.name = str(name_or_path)
        self.handles, self.where = [], {}
        for file in files:
            handle = safe_open(str(file), framework="pt")
            self.handles.append(handle)
            for key in handle.keys():
                self.where[key] = handle

    @staticmethod
    def _download(name: str) -> Path:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name, allow_patterns=["*.safetensors", "*.json"]))
        except Exception as err:
            raise ValueError(f"{name} is not a local folder and could not be fetched from the hub ({err})") from err

    def keys(self) -> list[str]:
        return sorted(self.where)

    def get(self, key: str) -> torch.Tensor:
        return self.where[key].get_tensor(key)


CHUNK = 1 << 24  # elements per slice: an 8B model's 620M-element embedding is read in ~40 slices, not at once


def _slices(ck: SafetensorsCheckpoint, key: str):
    """Row slices of a tensor, read lazily from the memory-mapped file."""
    view = ck.where[key].get_slice(key)
    shape = view.get_shape()
    if len(shape) == 0:
        yield ck.get(key).reshape(1)
        return
    rows = max(1, CHUNK // max(1, int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1))
    for start in range(0, shape[0], rows):
        yield view[start : start + rows]


def compute_drift(base: str, tuned: list[str], thresholds=THRESHOLDS) -> dict:
    """``{tuned_model: {"share_above", "by_type", "tensors", "histogram", ...}}`` (see the module docstring)."""
    base_ckpt = SafetensorsCheckpoint(base)
    tuned_ckpts = [SafetensorsCheckpoint(t) for t in tuned]
    report = {}
    for ck in tuned_ckpts:
        report[ck.name] = {
            "counts": defaultdict(lambda: [0] * len(thresholds)),
            "totals": defaultdict(int),
            "tensors": {},
            "hist": torch.zeros(len(BINS) + 1, dtype=torch.float64),
            "missing": [],
            "shape_mismatch": [],
        }
    for key in base_ckpt.keys():
        shape = base_ckpt.where[key].get_slice(key).get_shape()
        if base_ckpt.where[key].get_slice(key).get_dtype() not in ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"):
            continue  # integer buffers (e.g. position ids) are not parameters
        kind = module_type(key)
        for ck in tuned_ckpts:
            r = report[ck.name]
            if key not in ck.where:  # e.g. an lm_head tied to the embeddings and saved once
                r["missing"].append(key)
                continue
            if ck.where[key].get_slice(key).get_shape() != shape:
                r["shape_mismatch"].append(key)
                continue
            sq_delta = sq_base = rel_sum = 0.0
            numel = 0
            for b, t in zip(_slices(base_ckpt, key), _slices(ck, key)):
                b, t = b.float().flatten(), t.float().flatten()
                delta = (t - b).abs()
                rel = delta / (b.abs() + EPS)
                sq_delta += float(delta.double().square().sum())
                sq_base += float(b.double().square().sum())
                rel_sum += float(rel.double().sum())
                numel += rel.numel()
                for i, th in enumerate(thresholds):
                    r["counts"][kind][i] += int((rel > th).sum())
                r["hist"] += torch.bincount(torch.bucketize(rel, BINS), minlength=len(BINS) + 1).double()
            r["totals"][kind] += numel
            r["tensors"][key] = {
                "type": kind,
                "numel": numel,
                "relative_frobenius": (sq_delta**0.5) / max(sq_base**0.5, EPS),
                "mean_relative_change": rel_sum / max(numel, 1),
            }
    return {name: _finish(r, thresholds) for name, r in report.items()}


def _finish(r: dict, thresholds) -> dict:
    labels = [f"{t:g}" for t in thresholds]
    by_type = {}
    for kind in MODULE_TYPES:
        total = r["totals"].get(kind, 0)
        if total:
            by_type[kind] = {"numel": total, "share_above": dict(zip(labels, (c / total for c in r["counts"][kind])))}
    total = sum(r["totals"].values())
    overall = {lab: sum(c[i] for c in r["counts"].values()) / total for i, lab in enumerate(labels)} if total else {}
    return {
        "numel": total,
        "share_above": overall,
        "by_type": by_type,
        "tensors": r["tensors"],
        "histogram": {"edges": BINS.tolist(), "counts": r["hist"].tolist()},
        "missing_in_tuned": r["missing"],
        "shape_mismatch": r["shape_mismatch"],
    }


def plot_drift(report: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in report.items():
        edges, counts = r["histogram"]["edges"], torch.tensor(r["histogram"]["counts"])
        share = (counts / counts.sum().clamp_min(1)).tolist()
        # bucket i holds (edges[i-1], edges[i]]: plot each interior bucket at its upper edge; outer buckets dropped
        ax.step(edges[1:], share[1:-1], where="pre", label=Path(name).name or name)
    ax.set_xscale("log")
    ax.set_xlabel("relative change |Δθ| / |θ_base| per element")
    ax.set_ylabel("share of parameters")
    ax.set_title("Parameter drift from the base model")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "drift_histogram.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    kinds = [k for k in MODULE_TYPES if any(k in r["by_type"] for r in report.values())]
    fig, axes = plt.subplots(1, len(kinds) + 1, figsize=(3.2 * (len(kinds) + 1), 3.4), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], ["all", *kinds]):
        for name, r in report.items():
            shares = r["share_above"] if kind == "all" else r["by_type"].get(kind, {}).get("share_above")
            if shares:
                ax.plot([float(t) for t in shares], list(shares.values()), marker="o", label=Path(name).name or name)
        ax.set_xscale("log")
        ax.set_title(kind)
        ax.set_xlabel("threshold")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("share of parameters above threshold")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "drift_thresholds.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def run_drift(base: str, tuned: list[str], out_dir: str | Path, thresholds=THRESHOLDS) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = compute_drift(base, tuned, thresholds)
    (out / "drift.json").write_text(
        json.dumps({"base": base, "thresholds": list(thresholds), "models": report}, indent=1) + "\n"
    )
    plot_drift(report, out)
    return report
