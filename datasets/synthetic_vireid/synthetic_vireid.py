"""TFDS builder for the procedurally generated visible-infrared dataset.

No download: every image is rendered by ``render.py`` from the builder
config's seed, so the dataset is identical wherever it is built. The layout
follows SYSU-MM01: RGB cameras 1, 2, 4, 5; IR cameras 3, 6; disjoint train
and test identities; per-camera folders ``cam{c}/{pid:04d}/{index:04d}.jpg``
recorded in the ``path`` feature.

Beside ``train`` and ``test``, the splits ``train_paired_ir`` and
``test_paired_ir`` hold the infrared twin of every RGB image of the split
(``render.twin_camera``: same person, pose, background layout and camera
geometry, imaged in infrared, no sensor noise), with the RGB image's
``path``, ``camera``, ids and ``index`` and modality ``ir``. They are the
truth that translation error is measured against
(``aligngan_jax/evaluation/translation.py``), never training data, and
never part of the protocol. Real datasets have no such splits.

``ir_from_colour`` (0..1) sets how strongly garment emissivity follows
garment colour (``render.emissivity_of_colour``): 0 in ``tiny`` and
``demo``, 1 in the learnable worlds ``tiny_learnable`` and
``demo_learnable``. One seed gives the same people and RGB images in every
world.
"""

import dataclasses

import tensorflow_datasets as tfds

from datasets import common
from datasets.synthetic_vireid import render

_DESCRIPTION = """
Synthetic visible-infrared person re-identification (SYSU-MM01 structure).
Garment colours are visible only to RGB cameras; infrared intensity follows a
per-identity emissivity that is drawn independently of colour (ir_from_colour
0) or follows it (1: the learnable world); body shape and garment patterns
carry across modalities. The *_paired_ir splits hold the true infrared twin of
every RGB image, for measuring translation error only.
"""


@dataclasses.dataclass
class SyntheticVireidConfig(tfds.core.BuilderConfig):
  """Size of the generated dataset."""

  seed: int = 0
  num_train_ids: int = 8
  num_test_ids: int = 4
  image_height: int = 40  # typical image height; each camera varies it
  max_images: int = 3  # per (camera, identity), at least one
  min_images: int = 1
  # 0: emissivity independent of colour; 1: render.emissivity_of_colour.
  ir_from_colour: float = 0.0


class SyntheticVireid(tfds.core.GeneratorBasedBuilder):
  """Procedural SYSU-MM01-like visible-infrared re-id dataset."""

  VERSION = tfds.core.Version('1.3.0')
  RELEASE_NOTES = {
      '1.0.0': 'First release.',
      '1.1.0': 'Palette colours and emissivities.',
      '1.2.0': 'Coarser patterns, less IR blur.',
      '1.3.0': 'Infrared twins of the RGB images (*_paired_ir splits); '
      'learnable worlds. train and test unchanged.',
  }
  BUILDER_CONFIGS = [
      SyntheticVireidConfig(
          name='tiny',
          description='For tests: 8 train / 4 test ids, ~40 px.',
          num_train_ids=8,
          num_test_ids=4,
          image_height=40,
          max_images=3,
      ),
      SyntheticVireidConfig(
          name='demo',
          description='For the demo: 120 train / 40 test ids.',
          num_train_ids=120,
          num_test_ids=40,
          image_height=96,
          max_images=6,
          min_images=2,
      ),
      SyntheticVireidConfig(
          name='tiny_learnable',
          description='tiny, infrared following colour.',
          num_train_ids=8,
          num_test_ids=4,
          image_height=40,
          max_images=3,
          ir_from_colour=1.0,
      ),
      SyntheticVireidConfig(
          name='demo_learnable',
          description='demo, infrared following colour.',
          num_train_ids=120,
          num_test_ids=40,
          image_height=96,
          max_images=6,
          min_images=2,
          ir_from_colour=1.0,
      ),
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
    train_ids, test_ids = render.split_identities(cfg.seed, cfg.num_train_ids, cfg.num_test_ids)
    return {
        'train': self._generate_examples(train_ids, labelled=True),
        'test': self._generate_examples(test_ids, labelled=False),
        'train_paired_ir': self._generate_examples(train_ids, labelled=True, twins=True),
        'test_paired_ir': self._generate_examples(test_ids, labelled=False, twins=True),
    }

  def _generate_examples(self, person_ids, *, labelled, twins=False):
    cfg = self.builder_config
    labels = {int(pid): label for label, pid in enumerate(person_ids)}
    for pid, cam, index, image in render.examples(
        cfg.seed,
        person_ids,
        image_height=cfg.image_height,
        max_images=cfg.max_images,
        min_images=cfg.min_images,
        cameras=render.RGB_CAMERAS if twins else render.CAMERAS,
        ir_from_colour=cfg.ir_from_colour,
        infrared_twins=twins,
    ):
      path = f'cam{cam}/{pid:04d}/{index + 1:04d}.jpg'
      yield path, {
          'image': image,
          'person_id': pid,
          'label': labels[pid] if labelled else -1,
          'camera': cam,
          'modality': 'ir' if twins or cam in render.IR_CAMERAS else 'rgb',
          'index': index,
          'path': path,
      }
