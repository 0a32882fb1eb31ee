"""aligngan-jax: AlignGAN for visible-infrared person re-id in JAX/Flax.

Minimum versions here; the exact set verified together lives in
requirements.txt, which the README's commands and .ci/run use as pip
constraints.
"""

import setuptools

setuptools.setup(
    name='aligngan-jax',
    version='0.1.0',
    description='AlignGAN (ICCV 2019) in JAX/Flax: RGB-infrared person re-id.',
    packages=setuptools.find_packages(include=['aligngan_jax', 'aligngan_jax.*']),
    python_requires='>=3.11',
    install_requires=[
        'jax>=0.10.2',
        'flax>=0.12.8',
        'optax>=0.2.8',
        'orbax-checkpoint>=0.12.8',
        'tensorflow-cpu>=2.21.0',
        'tensorboard>=2.21.0',          # clu.metric_writers imports it
        'tensorflow-datasets>=4.9.10',
        'importlib_resources>=6.0',     # tfds needs it for custom builders
        'ml-collections>=1.1.0',
        'clu>=0.0.12',
        'numpy>=2.0',
        'pillow>=10.0',
        'scipy>=1.10',                  # rand_perm_cam.mat (official SYSU galleries)
    ],
    extras_require={
        # Reading PyTorch .pth/.pkl weights (aligngan_jax.convert).
        'torch': ['torch>=2.0'],
        # The tests compare every network with a PyTorch twin and write
        # safetensors files with the reference implementation.
        'test': ['pytest>=8.0', 'pytest-xdist>=3.5', 'torch>=2.0', 'safetensors>=0.4'],
    },
)
