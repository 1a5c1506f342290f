"""calibrate_sed_tau on a tiny random Llama: tau is the (1 - r) quantile of the top-k mass. CPU, ~1 s."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from eksft.losses import calibrate_sed_tau, topk_mass
from eksft.losses.tokens import gather_targets


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    return LlamaForCausalLM(cfg)


def test_tau_is_the_quantile_of_topk_mass(tiny):
    ids = torch.randint(0, 64, (3, 12))
    labels = ids.clone()
    labels[:, :4] = -100
    batches = [{"input_ids": ids[:2], "labels": labels[:2]}, {"input_ids": ids[2:], "labels": labels[2:]}]
    tau = calibrate_sed_tau(tiny, batches, k=2, r=0.7)
    with torch.no_grad():
        rows = gather_targets(tiny(ids).logits, labels, -100).rows
    masses = topk_mass(rows, 2).numpy()
    assert tau == pytest.approx(float(np.quantile(masses, 0.3)), rel=1e-5)
    assert 0.25 < (masses < tau + 1e-7).mean() < 0.4
    assert tiny.training  # restored


def test_calibration_errors(tiny):
    ids = torch.randint(0, 64, (1, 5))
    with pytest.raises(ValueError, match="no valid target"):
        calibrate_sed_tau(tiny, [{"input_ids": ids, "labels": torch.full((1, 5), -100)}])
    with pytest.raises(ValueError, match="labels"):
        calibrate_sed_tau(tiny, [{"input_ids": ids}])
    with pytest.raises(ValueError, match="`r`"):
        calibrate_sed_tau(tiny, [], r=2.0)
