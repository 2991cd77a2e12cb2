"""Models of the compliance app (none yet)."""
