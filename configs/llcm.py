"""AlignGAN on LLCM with the official AlignGAN schedule.

  python main.py --config=configs/llcm.py --config.manual_dir=/path/to/LLCM

Evaluation follows DEEN's LLCM protocol: infrared->visible and
visible->infrared, one gallery image per (identity, camera), 10 trials,
identity-level CMC, a query's own identity in its own camera removed.
"""

from configs import default


def get_config(arg=None):
  config = default.get_config()
  # AlignGAN was published before LLCM: the official SYSU-MM01 schedule and
  # hyper-parameters are used unchanged (§3: 50 / 100 / 101 x 100
  # iterations). --config.trainer=ide trains the feature module alone.
  config.trainer = 'aligngan'
  config.dataset = 'llcm'
  config.eval.protocol = 'llcm'
  # The official starting point: torchvision's ImageNet ResNet-50
  # (README, "Pretrained weights"). Override with the file's real location.
  config.pretrained_backbone = 'torchvision'  # fetched and verified on first use
  return default.apply_arg(config, arg)
