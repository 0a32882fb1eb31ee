"""aligngan_jax: AlignGAN (Wang et al., ICCV 2019) in JAX/Flax.

Models, losses, train steps and evaluation import without TensorFlow;
only `input_pipeline` (tf.data) and the TFDS builders need it.
"""

__version__ = '0.1.0'
