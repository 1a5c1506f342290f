"""The loss table ``eksft.losses.SPECS`` agrees with the functions it describes and with ``EKSFTConfig``, and every
loss reports the same metric keys with and without valid targets (the trainer's all-reduce builds its list from the
keys, so ranks with different key sets would mismatch under DDP). CPU, about a second."""

import dataclasses
import inspect

import pytest
import torch

from eksft.losses import FUSED_LOSSES, LOSSES, SPECS, fused_head_loss, fused_refusal
from eksft.train.config import EKSFTConfig

from .conftest import make_batch

CONFIG_FIELDS = {f.name for f in dataclasses.fields(EKSFTConfig)}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_matches_its_function_and_the_config(name):
    spec = SPECS[name]
    params = inspect.signature(spec.fn).parameters
    positional = [p.name for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = {p.name for p in params.values() if p.kind is p.KEYWORD_ONLY}
    assert positional[:2] == ["logits", "labels"]
    assert positional[2:] == ([spec.third] if spec.third else [])  # the third input is named as the spec says
    assert set(spec.fields) <= keyword and set(spec.per_batch) <= keyword
    assert set(spec.fields.values()) <= CONFIG_FIELDS, set(spec.fields.values()) - CONFIG_FIELDS
    # every keyword option without a default is supplied by the config or per batch
    required = {p.name for p in params.values() if p.kind is p.KEYWORD_ONLY and p.default is inspect.Parameter.empty}
    assert required <= set(spec.fields) | set(spec.per_batch)
    assert (name in FUSED_LOSSES) == (spec.fused is not None) == (fused_refusal(name, {}) is None)
    assert set(spec.fused_options) <= set(spec.fields)


def test_derived_tables():
    assert LOSSES == {name: spec.fn for name, spec in SPECS.items()}
    with_reference = {name for name, spec in SPECS.items() if spec.needs_reference}
    assert with_reference == {"eksft", "iw_sft", "asft", "global_reg", "random_mask"}
    assert set(FUSED_LOSSES) == {"sft", "dft", "gem", "sed_sft", "asft", "global_reg", "eksft", "random_mask", "eaft"}
    assert fused_refusal("eksft", {"variant": "official"}).startswith("variant='official' is not supported")
    assert "scope='global'" in fused_refusal("eksft", {"scope": "global"})
    assert fused_refusal("eksft", {"variant": "paper", "scope": "sequence"}) is None


def _call(name, logits, labels, ref):
    spec = SPECS[name]
    third = {"ref_logits": (ref,), "old_logps": (torch.zeros(labels.shape),), None: ()}[spec.third]
    kw = {"tau": 0.5} if "tau" in spec.per_batch else {}
    return spec.fn(logits, labels, *third, **kw)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_metric_keys_do_not_depend_on_the_batch(name):
    logits, labels, ref = make_batch(B=2, T=7, V=11, seed=5)
    full = _call(name, logits, labels, ref)
    empty = _call(name, logits, torch.full_like(labels, -100), ref)
    assert full.metrics["num_targets"] > 0 and empty.metrics["num_targets"] == 0
    assert sorted(empty.metrics) == sorted(full.metrics)
    if name in FUSED_LOSSES:  # the fused head reports the same keys as the logits path, in both cases
        g = torch.Generator().manual_seed(0)
        hidden, weight = torch.randn(2, 7, 4, generator=g), torch.randn(11, 4, generator=g)
        ref_args = (torch.randn(2, 7, 4, generator=g), weight) if SPECS[name].needs_reference else ()
        kw = {"tau": 0.5} if "tau" in SPECS[name].per_batch else {}
        for lab in (labels, torch.full_like(labels, -100)):
            r = fused_head_loss(name, hidden, weight, lab, *ref_args, **kw)
            assert sorted(r.metrics) == sorted(full.metrics), name
