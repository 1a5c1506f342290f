"""The losses' own non-finite checks raise ``NonFiniteError`` (a ValueError subclass naming the quantity), and the
trainer turns it into its divergence stop, not a user error (CPU, tiny random Llama, seconds)."""

from __future__ import annotations

import pytest
import torch

from eksft.losses import BoundLoss, eksft_loss, psft_loss
from eksft.losses.checks import NonFiniteError
from eksft.train import TrainingDiverged, build_trainer


def test_losses_raise_nonfinite_error_naming_the_quantity():
    logits, labels = torch.randn(1, 4, 7), torch.tensor([[-100, 1, 2, 3]])
    bad = logits.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(NonFiniteError) as err:
        eksft_loss(logits, labels, bad)
    assert err.value.quantity == "ref_logits" and isinstance(err.value, ValueError)
    with pytest.raises(NonFiniteError) as err:
        psft_loss(logits, labels, torch.full((1, 4), float("inf")))
    assert err.value.quantity == "old_logps"


@pytest.mark.parametrize("implementation", ["logits", "fused"])
def test_trainer_stops_on_a_loss_nonfinite_error(make_config, monkeypatch, implementation):
    def boom(*args, **kwargs):
        raise NonFiniteError("statistics went non-finite", "fused-head statistics")

    trainer = build_trainer(make_config(loss_implementation=implementation, max_steps=2))
    monkeypatch.setattr(BoundLoss, "on_logits", boom)  # after construction, which runs the loss once to validate
    monkeypatch.setattr(BoundLoss, "on_hidden", boom)
    with pytest.raises(TrainingDiverged) as err:
        trainer.train()
    assert err.value.quantity == "fused-head statistics" and err.value.step == 1
