"""The optimizer: Adam (AdamW with weight decay) under the config's learning-rate
schedule, built from optax's pieces.

``SCHEDULES`` names the schedules a config may ask for (``config.validate`` checks
``config.schedule`` against it); ``make_optimizer`` builds the chain the train step
(``step.make_train_step``) applies.
"""

from __future__ import annotations

import optax
from absl import logging

SCHEDULES = ("constant", "cosine", "exponential")
# A warm-up takes at most this fraction of a run, so that any positive num_epochs
# trains (the cosine decay needs steps after the warm-up).
MAX_WARMUP_FRACTION = 0.5


def warmup_steps(config, steps_per_epoch: int) -> int:
  """``config.warmup_epochs`` in steps, clamped to half of the run (with a log line)."""
  total = config.num_epochs * steps_per_epoch
  steps = int(config.warmup_epochs * steps_per_epoch)
  limit = int(MAX_WARMUP_FRACTION * total)
  if steps > limit:
    logging.info("The warm-up of %g epochs is longer than half of this %d-epoch run: "
                 "warming up for %d steps (half of the run) instead.",
                 config.warmup_epochs, config.num_epochs, limit)
    return limit
  return steps


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam with the config's learning-rate schedule.

  'constant' is Keras's default; 'cosine' warms up linearly for ``warmup_epochs``
  (at most half of the run) then decays to ``learning_rate * final_lr_fraction``;
  'exponential' decays geometrically from ``learning_rate`` to ``learning_rate *
  final_lr_fraction`` over the run (Burda et al.'s VAE schedule; no warm-up).
  """
  if config.schedule == "constant":
    lr = config.learning_rate
  elif config.schedule == "exponential":
    lr = optax.exponential_decay(init_value=config.learning_rate,
                                 transition_steps=config.num_epochs * steps_per_epoch,
                                 decay_rate=config.final_lr_fraction)
  else:
    lr = _warmup_cosine(config.learning_rate, warmup_steps(config, steps_per_epoch),
                        config.num_epochs * steps_per_epoch,
                        config.learning_rate * config.final_lr_fraction)
  # Decoupled weight decay (AdamW) only when asked for, so that a run without it
  # keeps plain Adam's state (and resumes checkpoints written before the key existed).
  # A traced value (a sweep's members) always takes AdamW: at 0 it adds exactly 0.
  if not isinstance(config.weight_decay, (int, float)) or config.weight_decay:
    return optax.adamw(lr, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps,
                       weight_decay=config.weight_decay)
  return optax.adam(lr, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)


def _warmup_cosine(peak, warmup: int, total: int, end):
  """``optax.warmup_cosine_decay_schedule(0, peak, warmup, total, end)``, composed of
  the same optax pieces: optax's function branches in Python on ``peak == 0``, which a
  sweep's traced learning rate cannot answer (``peak`` > 0 is validated)."""
  return optax.join_schedules([
      optax.linear_schedule(init_value=0.0, end_value=peak, transition_steps=warmup),
      optax.cosine_decay_schedule(init_value=peak, decay_steps=total - warmup,
                                  alpha=end / peak)], [warmup])
