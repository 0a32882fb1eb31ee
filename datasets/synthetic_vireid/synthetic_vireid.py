"""TFDS builder for the procedurally generated visible-infrared dataset.

No download: every image is rendered by ``render.py`` from the builder
config's seed, so the dataset is identical wherever it is built. The layout
follows SYSU-MM01: RGB cameras 1, 2, 4, 5; IR cameras 3, 6; disjoint train
and test identities; per-camera folders ``cam{c}/{pid:04d}/{index:04d}.jpg``
recorded in the ``path`` feature.
"""

import dataclasses

import tensorflow_datasets as tfds

from datasets import common
from datasets.synthetic_vireid import render

_DESCRIPTION = """
Synthetic visible-infrared person re-identification (SYSU-MM01 structure).
Garment colours are visible only to RGB cameras; infrared intensity follows a
per-identity emissivity drawn independently of colour; body shape and garment
patterns carry across modalities.
"""


@dataclasses.dataclass
class SyntheticVireidConfig(tfds.core.BuilderConfig):
  """Size of the generated dataset."""
  seed: int = 0
  num_train_ids: int = 8
  num_test_ids: int = 4
  image_height: int = 40     # typical image height; each camera varies it
  max_images: int = 3        # per (camera, identity), at least one
  min_images: int = 1


class SyntheticVireid(tfds.core.GeneratorBasedBuilder):
  """Procedural SYSU-MM01-like visible-infrared re-id dataset."""

  VERSION = tfds.core.Version('1.2.0')
  RELEASE_NOTES = {'1.0.0': 'First release.', '1.1.0': 'Palette colours and emissivities.',
                     '1.2.0': 'Coarser patterns, less IR blur.'}
  BUILDER_CONFIGS = [
      SyntheticVireidConfig(
          name='tiny', description='For tests: 8 train / 4 test ids, ~40 px.',
          num_train_ids=8, num_test_ids=4, image_height=40, max_images=3),
      SyntheticVireidConfig(
          name='demo', description='For the demo: 120 train / 40 test ids.',
          num_train_ids=120, num_test_ids=40, image_height=96, max_images=6,
          min_images=2),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=common.reid_features('jpeg'),
        supervised_keys=None,
        homepage='https://github.com/aligngan-jax',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    train_ids, test_ids = render.split_identities(
        cfg.seed, cfg.num_train_ids, cfg.num_test_ids)
    return {
        'train': self._generate_examples(train_ids, labelled=True),
        'test': self._generate_examples(test_ids, labelled=False),
    }

  def _generate_examples(self, person_ids, *, labelled):
    cfg = self.builder_config
    labels = {int(pid): label for label, pid in enumerate(person_ids)}
    for pid, cam, index, image in render.examples(
        cfg.seed, person_ids, image_height=cfg.image_height,
        max_images=cfg.max_images, min_images=cfg.min_images):
      path = f'cam{cam}/{pid:04d}/{index + 1:04d}.jpg'
      yield path, {
          'image': image,
          'person_id': pid,
          'label': labels[pid] if labelled else -1,
          'camera': cam,
          'modality': 'ir' if cam in render.IR_CAMERAS else 'rgb',
          'index': index,
          'path': path,
      }
