"""kokeilu: evaluation pipeline for the activating social security pilot."""
