"""Hinton & Salakhutdinov's (Science, 2006) deep MNIST autoencoder, without RBMs.

784-1000-500-250-30-250-500-1000-784: relu hidden layers, a LINEAR 30-unit code (as
theirs), a sigmoid output; trained end to end with Adam on MSE (no RBM
pretraining), a one-epoch linear warm-up, then cosine decay over 40 epochs, with
decoupled weight decay (AdamW, 0.05). About 2.8 M parameters.

Why the weight decay: without it (``--config.weight_decay=0``, plain Adam, same
schedule) this net reached 1.96 squared error per image on the training set but
3.58 on the test set after 40 epochs: it overfits.

Launch (also trained by ``python -m experiments.report``, into ``<runs>/deep``):
    python -m experiments.main --config experiments/configs/deep.py \
        --workdir runs/deep --config.data_dir=<MNIST folder>

Their figure: 3.00 squared error per image on MNIST test (pixels in [0, 1], summed
over the 784 pixels, averaged over the 10,000 test images).
Reached here on full MNIST: RESULT_PENDING.
"""

from experiments.configs import base


def get_config():
  config = base.get_config()
  config.name = "deep"
  config.model.hidden = (1000, 500, 250)
  config.model.code_size = 30
  config.model.code_activation = "linear"
  config.num_epochs = 40
  config.learning_rate = 2e-3
  config.warmup_epochs = 1.0
  config.weight_decay = 0.05
  return config
