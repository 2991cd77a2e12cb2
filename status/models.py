"""Models of the status app (none yet)."""
