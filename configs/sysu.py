"""AlignGAN's feature module on SYSU-MM01 with the official hyper-parameters.

  python main.py --config=configs/sysu.py --config.manual_dir=/path/to/SYSU-MM01
"""

from configs import default


def get_config(arg=None):
  config = default.get_config()
  config.dataset = 'sysu_mm01'
  # The official starting point: torchvision's ImageNet ResNet-50
  # (README, "Pretrained weights"). Override with the file's real location.
  config.pretrained_backbone = 'weights/resnet50-0676ba61.pth'
  return default.apply_arg(config, arg)
