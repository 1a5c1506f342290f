"""Moved to :mod:`eksft.models.tiny` (the one tiny-model builder); this name stays for imports not yet updated."""

from eksft.models.tiny import NAME, save_tiny, tiny_config, tiny_random_llama, tiny_tokenizer  # noqa: F401
