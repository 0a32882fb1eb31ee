"""AlignGAN's feature module on RegDB (one model per trial, --config.trial=N)."""

from configs import default


def get_config(arg=None):
  config = default.get_config()
  config.dataset = 'regdb'
  config.trial = 1
  config.eval.protocol = 'regdb'
  # The official starting point: torchvision's ImageNet ResNet-50
  # (README, "Pretrained weights"). Override with the file's real location.
  config.pretrained_backbone = 'weights/resnet50-0676ba61.pth'
  return default.apply_arg(config, arg)
