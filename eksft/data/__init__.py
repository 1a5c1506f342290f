"""``eksft.data``: training and evaluation data (``synthetic``: offline, seeded problems with verifiable answers and
worked solutions). Submodules are imported explicitly where used."""
