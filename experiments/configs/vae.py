"""VAE with Burda et al.'s (2016) one-stochastic-layer architecture on dynamically
binarized MNIST: 784-200-200-50 tanh, Gaussian encoder, Bernoulli decoder.

Loss: -ELBO = ``bernoulli_nll + kl_normal`` (nats per image; a KL weight other than 1
gives a β-VAE). Adam, batch 100, learning rate 1e-3 decayed exponentially to 1e-4
over the run's 1,787 epochs. Each training image is binarized afresh every time it is
used; the test figures use the test set binarized once from
``model.eval_binarization_seed`` (0), recorded in results.json's ``model_eval``.
results.json's ``model_eval`` holds ``nll`` (importance sampled, ``eval_nll_samples``
= 5,000 samples per image) and ``elbo``, both in nats.

Launch (``--config.checkpoint_every=50`` on a GPU, where an epoch is shorter than a
checkpoint write):
    python -m experiments.main --config experiments/configs/vae.py \
        --workdir runs/vae --config.data_dir=path/to/mnist

``vae.py:iwae`` trains the importance-weighted bound instead (``losses='iwae=1'``,
``model.num_samples=50``): about 50× the decoder work per step.

Anchors (Burda et al. 2016, table 1, one stochastic layer): test NLL 86.76 nats for
the VAE, 84.78 for the IWAE with k = 50 (3,280 epochs, 5,000-sample estimate).

Reached here: test NLL **86.26 nats** (importance sampled, 5,000 samples, all 10,000
test images), ELBO -90.12, after 1,787 epochs of this config's schedule: below the
87.0 target and below Burda et al.'s 86.76, with the launch command above and
``--config.checkpoint_every=50`` (1,787 epochs: what ``scripts/accelerator_runs.sh``
fitted into a lent H200's minutes). Epochs 1-1,600 ran on the H200 (jax 0.11.2,
0.078 s an epoch alone on the device, 239 s in all, in three stretches cut by the
session's device time), epochs
1,601-1,787 and the evaluation on this 2-core CPU (6.3 s an epoch on one pinned
thread), resumed with the same command (results.json's ``segments``). The test ELBO
went 97.9 (epoch 50), 94.2 (250), 91.6 (700), 90.9 (1,000), 90.1 (1,600) nats.
On this CPU alone the run would take about 3 hours, not the issue's 1 hour: an
earlier run of 400 epochs here was stopped after 180 at 88.90 nats (51 min).

``vae.py:iwae`` (k = 50) on the same H200 with ``--config.num_epochs=648``: 55 epochs
before the device time ran out (1.3 s an epoch beside four other runs; 0.24 s with
one); its checkpoint of epoch 50, evaluated with
    python -m experiments.evaluate_run --workdir runs/iwae --data_dir=path/to/mnist
gives a test NLL of 89.51 nats (5,000 samples): not the issue's 86.0, which Burda et
al. reach (84.78) after 3,280 epochs. The test k = 50 bound was still falling: 98.1,
95.1, 92.9, 92.2 nats at epochs 10, 20, 40, 50.
"""

from experiments.configs import base

RECIPES = ("", "iwae")


def get_config(recipe=None):
  config = base.get_config("vae")
  config.name = "vae"
  config.losses = "bernoulli_nll=1, kl_normal=1"
  config.batch_size = 100
  config.learning_rate = 1e-3
  config.schedule = "exponential"
  config.warmup_epochs = 0.0
  config.final_lr_fraction = 0.1
  config.num_epochs = 1787
  if (recipe or "") not in RECIPES:
    raise ValueError(f"Unknown recipe {recipe!r} after vae.py's colon; choose 'iwae' or none.")
  if recipe == "iwae":
    config.name = "iwae"
    config.losses = "iwae=1"
    config.model.num_samples = 50
  return config
