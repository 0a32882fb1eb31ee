"""LLCM (low-light cross-modality) TFDS builder."""

from datasets.llcm.llcm import Llcm  # noqa: F401
