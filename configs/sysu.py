"""AlignGAN on SYSU-MM01 with the official hyper-parameters and schedule.

python main.py --config=configs/sysu.py --config.manual_dir=/path/to/SYSU-MM01
python main.py --config=configs/sysu.py:agw ...   # AGW (:caj: CAJ), official values
"""

from configs import default


def get_config(arg=None):
  args = default.split_arg(arg, ('tiny', 'agw', 'caj'), 'configs/sysu.py')
  config = default.get_config()
  # The full model with the official three-stage schedule (§3: 50 / 100 /
  # 101 x 100 iterations, one x0.1 decay at iteration 20,000, fresh D_rgb
  # and D_ir at stage 3). --config.trainer=ide trains the feature module
  # alone (the IDE baseline).
  config.trainer = 'aligngan'
  config.dataset = 'sysu_mm01'
  # The official starting point: torchvision's ImageNet ResNet-50
  # (README, "Pretrained weights"). Override with the file's real location.
  config.pretrained_backbone = 'torchvision'  # fetched and verified on first use
  # :agw and :caj train the baselines with their official values (same
  # ImageNet start; trainers/agw.py, trainers/caj.py).
  default.use_baseline(config, args)
  return default.apply_arg(config, 'tiny' if 'tiny' in args else None)
