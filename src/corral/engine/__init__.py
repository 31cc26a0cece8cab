"""corral.engine."""
