"""corral.cgroups."""
