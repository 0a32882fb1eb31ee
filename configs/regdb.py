"""AlignGAN's feature module on RegDB (one model per trial, --config.trial=N)."""

from configs import default


def get_config(arg=None):
  config = default.get_config()
  config.dataset = 'regdb'
  config.trial = 1
  config.eval.protocol = 'regdb'
  return default.apply_arg(config, arg)
