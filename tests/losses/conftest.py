import pytest
import torch


def make_batch(B=3, T=9, V=13, seed=0, dtype=torch.float32, ignore_frac=0.35, scale=2.0):
    """Random logits/labels/reference with random ignored label positions (at least one valid target)."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T, V, generator=g) * scale).to(dtype)
    ref = (logits.double() + torch.randn(B, T, V, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    ignored = torch.rand(B, T, generator=g) < ignore_frac
    labels[ignored] = -100
    labels[0, 1] = int(torch.randint(0, V, (1,), generator=g))
    return logits, labels, ref


@pytest.fixture
def batch():
    return make_batch
