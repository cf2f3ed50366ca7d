"""The functional core: no Lightning (forward model, nets, losses, metrics, image files, planning)."""
