"""corral.plan."""
