"""Defaults shared by every experiment: the official AlignGAN values.

Other config files import this one and override it. Numbers a paper's reader
looks for (batch layout, learning rates, loss weights, schedule) are named
keys; see ../shared/docs/aligngan_reference.md §2-§3 for their origin.
"""

import ml_collections
from ml_collections import config_dict

from aligngan_jax import trainers


def get_config(arg=None):
  """The default config; ``arg`` may be ``'tiny'`` (see `apply_arg`)."""
  config = ml_collections.ConfigDict()
  config.mode = 'train'  # 'train' | 'eval' | 'visualize'
  # 'aligngan': the three stages of the full model (§2-§3), scheduled by
  # config.gan; 'ide': the feature module alone (CE + cross-modal triplets,
  # the IDE baseline), scheduled by config.ide. Both run in one loop
  # (aligngan_jax/train_loop.py); each reads only its own group.
  config.trainer = 'aligngan'
  config.seed = 0
  # What convolutions compute in: 'float32' (official) or 'bfloat16'
  # (parameters, optimizer states, norm statistics and losses stay float32).
  config.compute_dtype = 'float32'
  # Not a deviation: True runs the repeated network calls of an iteration
  # (the generators' cycle and identity calls, the trunk on fake and real
  # IR in the feature iteration, the discriminators on all their pairs) as
  # one call each, with per-call norm statistics and running-statistic
  # updates in the official order (aligngan_jax/stages.py); False makes
  # every call separately, as the official code does. Same results to
  # float rounding. False by default until a GPU shows the gain: on CPU
  # the batched calls are slower (docs/decisions.md, issue 15).
  config.batch_network_calls = False
  # jax_debug_nans: stop at the first operation that makes a NaN (slow).
  config.debug_nans = False

  # Data. `dataset` is a TFDS name (with builder config), read from
  # `data_dir` (TFDS default when unset); license-gated datasets read the
  # user's download from `manual_dir`.
  config.dataset = 'sysu_mm01'
  config.data_dir = config_dict.placeholder(str)
  config.manual_dir = config_dict.placeholder(str)
  config.image_size = 128  # square load size (PIL bicubic)
  config.encoder_input_size = (384, 192)  # re-sampled on device (§1.4)
  config.ids_per_batch = 18  # P: identities per batch
  config.instances_per_id = 4  # K: images per identity and modality
  config.eval_batch_size = 128
  # Decode and resize every training image once per run and keep it as
  # uint8 in host memory (image_size^2 x 3 bytes each; 1.7 GB for
  # SYSU-MM01 at 128): a JPEG decode per image and step would need about
  # 10 host cores to keep up with stage 1 on one GPU (bench/RESULTS.md).
  # Same batches either way; False saves the memory.
  config.decode_once = True
  # Not official (the official pipeline only flips): probability of turning
  # an RGB training image grey, which stops colour from carrying identity.
  config.rgb_grey_prob = 0.0
  # Not official either: probability of replacing an RGB training image by
  # one random colour channel (channel augmentation, Ye et al. ICCV 2021).
  config.rgb_channel_prob = 0.0
  # Official: RGB and IR batches pass through the networks separately, so
  # BatchNorm normalises each modality with its own batch statistics. True:
  # one forward of both (as the AGW baseline), so training statistics match
  # the shared running statistics used at test time.
  config.joint_modality_forward = False

  # Weights made with PyTorch (aligngan_jax/pretrained.py): ImageNet
  # ResNet-50 for the trunk of a new run ('' = from scratch; a path; or a
  # source fetched, verified and cached on first use: 'torchvision', the
  # official starting point, or 'timm'; aligngan_jax/weights.py), and the
  # official release to evaluate (config.mode='eval'). The cache folder:
  # weights_dir, else $ALIGNGAN_WEIGHTS_DIR, else
  # ~/.cache/aligngan_jax/weights.
  config.pretrained_backbone = ''
  config.weights_dir = ''
  config.init_from = ''
  config.init_from_step = 250

  # Feature module: ResNet trunk + heads (§1.4, §1.5).
  config.model = ml_collections.ConfigDict()
  config.model.depth = 50
  config.model.width = 64
  config.model.last_stride = 1
  config.model.bottle_dim = 256
  config.model.embed_dim = 256
  config.model.dropout_rate = 0.5
  config.model.embed_bn = False  # not official; see docs/decisions.md
  config.model.classifier_init_std = 0.001  # official N(0, 0.001)
  # Memory, not a deviation: what the trunk's residual blocks keep for the
  # backward pass ('none' | 'convs' | 'blocks'; models/resnet.py); the
  # results are the same, the peak memory and step time are not
  # (bench/RESULTS.md).
  config.model.remat = 'none'
  # Pixel module (§1.1): the generators' InstanceNorm scales start U(0, 1)
  # as under PyTorch 1.1, which the official runs used ('uniform'), or at
  # 1 as under PyTorch >= 1.2 ('ones').
  config.model.gan_norm_scale_init = 'uniform'

  # Optimisation of the feature module (§3), both trainers: SGD nesterov,
  # trunk lr = 0.1 x head lr, weight decay on every parameter, x0.1 decays
  # at the trainer's milestones (gan.lr_milestones or ide.lr_milestones).
  config.learning_rate = 0.2
  config.encoder_lr_multiplier = 0.1
  config.momentum = 0.9
  config.nesterov = True
  config.weight_decay = 5e-4
  config.lr_decay_factor = 0.1

  # Each trainer's own keys, with their defaults and comments in its module:
  # config.gan (AlignGAN's pixel module and three stages,
  # aligngan_jax/trainers/aligngan.py), config.ide (the IDE baseline,
  # trainers/ide.py), and the group of any other registered trainer.
  for trainer in trainers.registered().values():
    if trainer.config_group:
      config[trainer.config_group] = trainer.default_config()

  # Losses: CE on both modalities + cross-modal batch-hard cosine triplets.
  config.lambda_cls = 1.0
  config.lambda_triplet = 1.0
  config.triplet_margin = 1.0

  # Bookkeeping.
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1_000
  config.max_checkpoints_to_keep = 2
  # Resume from this checkpoint step instead of the newest (-1). Newer
  # checkpoints are moved to <workdir>/checkpoints_set_aside/, not deleted
  # (e.g. after a divergence: the stop message names the step to use).
  config.resume_step = -1
  # A state whose parameters or running statistics exceed this magnitude
  # has diverged (a finite state on its way to overflow would not resume):
  # it is not saved and training stops, naming the checkpoint to resume
  # from. 0 turns the bound off; non-finite states are never saved.
  config.checkpoint_max_abs = 1e6
  config.eval_every_steps = 5_000  # and always at the end
  # AlignGAN runs: the translation grid (real RGB | fake IR | real IR |
  # reconstructed RGB of test people) in TensorBoard and workdir/images/.
  config.image_every_steps = 1_000  # and at the end of every stage
  config.grid_people = 8
  # config.mode='visualize': retrieval sheet of the first evaluated setting
  # (trial 0): `queries` seeded random queries plus the `worst` ones by rank
  # of their first true match, `top_k` gallery images each.
  config.visualize = ml_collections.ConfigDict()
  config.visualize.queries = 6
  config.visualize.worst = 2
  config.visualize.top_k = 10

  # Evaluation protocols (docs/evaluation.md). SYSU-MM01: all/indoor search x
  # single/multi shot, 10 trials of gallery draws; RegDB: both directions of
  # `config.trial`'s split.
  config.eval = ml_collections.ConfigDict()
  config.eval.protocol = 'sysu'  # 'sysu' | 'regdb' | 'llcm'
  config.eval.sysu_modes = ('all', 'indoor')
  config.eval.sysu_shots = ('single', 'multi')
  config.eval.sampling = 'seeded'  # 'seeded' (AGW) | 'official' (.mat)
  config.eval.rand_perm_path = config_dict.placeholder(str)
  config.eval.num_trials = 10
  config.eval.regdb_directions = ('v2t', 't2v')
  config.eval.llcm_directions = ('i2v', 'v2i')  # DEEN's IR->VIS, VIS->IR
  config.eval.max_rank = 20
  # AlignGAN runs: evaluate at the end of every stage too (besides every
  # eval_every_steps and the end), and add the diagnostics of
  # aligngan_jax/evaluation/diagnostics.py (fake IR -> IR, IR -> IR across
  # IR cameras, feature cosines) to every evaluation: a console table,
  # <workdir>/eval/stages.json and TensorBoard. Both reuse the evaluation's
  # features, so they cost two extra evaluations per run.
  config.eval.stage_end = True
  config.eval.diagnostics = True
  # k-reciprocal re-ranking; when on, reports show plain and re-ranked rows.
  config.eval.rerank = False
  config.eval.rerank_k1 = 20
  config.eval.rerank_k2 = 6
  config.eval.rerank_lambda = 0.3
  return apply_arg(config, arg)


def split_arg(arg, allowed, file: str) -> set:
  """A config file's comma-separated argument as a set, checked against
  ``allowed`` (one line naming the file otherwise)."""
  args = {a for a in (arg or '').split(',') if a}
  unknown = args - set(allowed)
  if unknown:
    raise ValueError(
        f'{file}: unknown argument(s) {sorted(unknown)}; expected any of '
        f'{sorted(allowed)} (e.g. {file}:tiny).'
    )
  if {'agw', 'caj'} <= args:
    raise ValueError(f"{file}: 'agw' and 'caj' are two trainers; pick one.")
  return args


def use_baseline(config, args) -> None:
  """``agw`` / ``caj`` in a config file's argument: that trainer, with its
  official values (config.agw / config.caj; trainers/agw.py)."""
  for name in ('agw', 'caj'):
    if name in args:
      config.trainer = name


# The AGW / CAJ group of a ':tiny' run: one epoch of 2 x 2 batches at 32 x 16.
TINY_BASELINE = dict(
    epochs=1,
    warmup_epochs=1,
    lr_milestones=(1,),
    ids_per_batch=2,
    instances_per_id=2,
    input_size=(32, 16),
    pad=2,
)


def apply_arg(config, arg):
  """Applies a config-file argument. ``'tiny'`` keeps dataset and protocol
  but shrinks model, images, batch and schedule (about a minute on 2 CPUs)."""
  if arg in (None, ''):
    return config
  if arg != 'tiny':
    raise ValueError(
        f"Unknown config argument {arg!r}: expected 'tiny' or none "
        '(e.g. --config=configs/sysu.py:tiny).'
    )
  config.pretrained_backbone = ''
  config.image_size = 32
  config.encoder_input_size = (32, 16)
  config.ids_per_batch = 4
  config.instances_per_id = 2
  config.eval_batch_size = 16
  config.model.depth = 10  # one block per stage (models/resnet.py)
  config.model.width = 4
  config.model.bottle_dim = 16
  config.model.embed_dim = 16
  config.gan.conv_dim = 4
  config.gan.num_residual = 1
  config.gan.d_layers = 2
  config.gan.pixel_ids_per_batch = 2
  config.gan.pixel_instances_per_id = 2
  config.gan.stage_iterations = (2, 2, 2)
  config.gan.lr_milestones = (5,)
  config.ide.num_train_steps = 4
  config.ide.lr_milestones = (2,)
  for group in ('agw', 'caj'):
    config[group].update(TINY_BASELINE)
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 1_000
  return config
