"""``eksft.models``: loading Hugging Face causal LMs (``loading``, the one loader; ``smollm`` and ``tiny``, the
built-in models) and what the losses need from them (``head``: the fused loss head's pieces). Submodules are
imported explicitly where used."""

from .head import LMHead, backbone_hidden_states, lm_head_parts

__all__ = ["LMHead", "backbone_hidden_states", "lm_head_parts"]
