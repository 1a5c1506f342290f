"""One module per ``eksft`` sub-command; see ``eksft/cli.py``."""
