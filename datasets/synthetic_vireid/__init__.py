"""Procedurally generated visible-infrared re-id dataset (TFDS builder)."""

from datasets.synthetic_vireid.synthetic_vireid import SyntheticVireid  # noqa: F401  (the builder, registered on import)
