"""eksft."""
