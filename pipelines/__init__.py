"""Entry points that parse options and wire stages: ``python -m pipelines.augment`` and friends."""
