"""VAE with Burda et al.'s (2016) one-stochastic-layer architecture on dynamically
binarized MNIST: 784-200-200-50 tanh, Gaussian encoder, Bernoulli decoder.

Loss: -ELBO = ``bernoulli_nll + kl_normal`` (nats per image; a KL weight other than 1
gives a β-VAE). Adam, batch 100, learning rate 1e-3 decayed exponentially to 1e-4 over the run. Each training image is binarized
afresh every time it is used; the test figures use the test set binarized once from
``model.eval_binarization_seed`` (0), recorded in results.json's ``model_eval``.
results.json's ``model_eval`` holds ``nll`` (importance sampled, ``eval_nll_samples``
= 5,000 samples per image) and ``elbo``, both in nats.

Launch:
    python -m experiments.main --config experiments/configs/vae.py \
        --workdir runs/vae --config.data_dir=path/to/mnist

``vae.py:iwae`` trains the importance-weighted bound instead (``losses='iwae=1'``,
``model.num_samples=50``): about 50× the decoder work per step.

Anchors (Burda et al. 2016, table 1, one stochastic layer): test NLL 86.76 nats for
the VAE, 84.78 for the IWAE with k = 50 (3,280 epochs, 5,000-sample estimate).

Reached here (a 2-core CPU shared with other jobs: 7.6 s an epoch when it was free,
20-30 s while shared), with this config, stopped after 180 of its 400 epochs for lack
of session time (51 min of training; the learning rate then at 3.5e-4):
    python -m experiments.main --config experiments/configs/vae.py \
        --workdir runs/vae400 --config.data_dir=path/to/mnist --config.num_epochs=400
    python -m experiments.evaluate_run --workdir runs/vae400 --data_dir=path/to/mnist
test NLL 88.90 nats (importance sampled, 5,000 samples, all 10,000 test images; 14
min to evaluate), ELBO -93.90. Not the 87.0 target: the 60-line reference run quoted
in the issue reached 88.62 after 250 and 87.20 after 700 epochs of the same schedule;
rerunning the command above resumes this run towards its 400 epochs.
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
  config.num_epochs = 400  # not yet run to the end here; see the docstring
  if (recipe or "") not in RECIPES:
    raise ValueError(f"Unknown recipe {recipe!r} after vae.py's colon; choose 'iwae' or none.")
  if recipe == "iwae":
    config.name = "iwae"
    config.losses = "iwae=1"
    config.model.num_samples = 50
  return config
