"""The article's conv net widened for colour: (conv 3×3, 2×2 pool) ×2 with 64
filters, 32×32×3 → an 8×8×64 code, on CIFAR-10.

Launch (data_dir: the folder holding cifar-10-batches-bin, the unpacked
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz):
    python -m experiments.main --config experiments/configs/cifar_conv.py \
        --workdir runs/cifar_conv --config.data_dir=<CIFAR folder>

Expect: the CIFAR-10 figure awaits the data (none on the machine this was written
on); the tests train it on tiny CIFAR-format records. docs/results/cifar_conv.md.
"""

from experiments.configs import base


def get_config(recipe=None):
  config = base.get_config("conv")
  config.name = "cifar_conv"
  config.dataset = "cifar10"
  # Twice the article's 32 filters: three input channels instead of one, and a code
  # of 8×8×64 = 4,096 numbers for 3,072 pixel values (the article's: 1,568 for 784).
  config.model.features = (64, 64)
  config.num_epochs = 10
  return base.apply_recipe(config, recipe)
