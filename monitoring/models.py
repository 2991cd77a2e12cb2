"""Models of the monitoring app (none yet)."""
