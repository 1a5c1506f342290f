"""calibrate_sed_tau on a tiny random Llama: tau is the (1 - r) quantile of the top-k mass. CPU, ~1 s."""

import pytest
import torch
from transformers import LlamaForCausalLM

from eksft.losses import calibrate_sed_tau
from eksft.models.tiny import tiny_config


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = tiny_config(
        vocab_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048
    )
    return LlamaForCausalLM(cfg)


def topk_masses(model, batches, k):
    """S_k of every valid target, restated without the library: target j (label != -100, j >= 1) is predicted by
    logit row j - 1; S_k = the summed probabilities of the k most likely tokens of that row."""
    out = []
    with torch.no_grad():
        for batch in batches:
            logits = model(batch["input_ids"]).logits
            labels = batch["labels"]
            for b in range(labels.shape[0]):
                for j in range(1, labels.shape[1]):
                    if int(labels[b, j]) != -100:
                        p = torch.softmax(logits[b, j - 1].double(), dim=-1)
                        out.append(float(p.sort(descending=True).values[:k].sum()))
    return torch.tensor(out, dtype=torch.float64)


def linear_quantile(values, q):
    """The q quantile with linear interpolation between the order statistics (position q * (n - 1))."""
    s = values.sort().values
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (pos - lo) * (s[hi] - s[lo]))


def test_tau_is_the_quantile_of_topk_mass(tiny):
    ids = torch.randint(0, 64, (3, 12))
    labels = ids.clone()
    labels[:, :4] = -100
    batches = [{"input_ids": ids[:2], "labels": labels[:2]}, {"input_ids": ids[2:], "labels": labels[2:]}]
    tau = calibrate_sed_tau(tiny, batches, k=2, r=0.7)
    assert tiny.training  # restored
    masses = topk_masses(tiny, batches, k=2)
    assert len(masses) == 3 * (12 - 4)
    want = linear_quantile(masses, 1 - 0.7)
    assert want == pytest.approx(float(torch.quantile(masses, 0.3)), rel=1e-12)  # the restatement itself
    assert tau == pytest.approx(want, rel=1e-5)
    assert 0.25 < float((masses < tau + 1e-7).double().mean()) < 0.4


def test_calibration_errors(tiny):
    ids = torch.randint(0, 64, (1, 5))
    with pytest.raises(ValueError, match="no valid target"):
        calibrate_sed_tau(tiny, [{"input_ids": ids, "labels": torch.full((1, 5), -100)}])
    with pytest.raises(ValueError, match="labels"):
        calibrate_sed_tau(tiny, [{"input_ids": ids}])
    with pytest.raises(ValueError, match="`r`"):
        calibrate_sed_tau(tiny, [], r=2.0)
