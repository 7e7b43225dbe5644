"""Hinton & Salakhutdinov's (Science, 2006) deep MNIST autoencoder, without RBMs.

784-1000-500-250-30-250-500-1000-784: relu hidden layers, a LINEAR 30-unit code (as
theirs), a sigmoid output; trained end to end with Adam on MSE (no RBM
pretraining), a one-epoch linear warm-up, then cosine decay over 40 epochs, with
decoupled weight decay (AdamW, 0.05). About 2.8 M parameters.

Why the weight decay: without it (plain Adam, same schedule, output bias started
at 0: ``--config.weight_decay=0 --config.model.output_bias=zeros``) this net's
training loss in its last epoch was 1.96 squared error per image but its test
error 3.58 after 40 epochs: it overfits. With weight decay 0.05 (and the output
bias started at the mean image, the default since) the test error was 3.18
(training loss 1.84).

Launch (also trained by ``python -m experiments.report``, into ``<runs>/deep``):
    python -m experiments.main --config experiments/configs/deep.py \
        --workdir runs/deep --config.data_dir=<MNIST folder>

Their figure: 3.00 squared error per image on MNIST test (pixels in [0, 1], summed
over the 784 pixels, averaged over the 10,000 test images).
Reached here on full MNIST: 3.16 after 40 epochs (docs/REPORT.md, section 8, as
regenerated; 3.18 in the run before, 14 min on a free 2-core CPU), so not below
their 3.00.

Longer recipes tried on a lent H200 (``scripts/accelerator_runs.sh`` with
``DEEP_RECIPES=1``), three at once beside the VAE, all stopped by the session's
device time before their schedules ended, so they say nothing final: 150 epochs
(this config), 150 epochs with gaussian input noise 0.1, and 300 epochs with weight
decay 0.1 stood at 3.33, 3.39 and 3.44 after 122, 118 and 120 epochs, with the
learning rate still high (training loss 1.40, 2.04 and 2.62 per image). A 2-CPU-hour
recipe at or below 3.00 is still to be found.
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
