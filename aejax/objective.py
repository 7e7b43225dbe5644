"""The objective: the weighted sum of a config's loss terms on a model's outputs.

One ``Objective`` serves the train step and the evaluator, so the test set's terms
are the training terms by construction:

    loss, terms, outputs = objective(params, batch, key)              # batch means
    loss, terms, outputs = objective.per_example(params, batch, key)  # [B] each

``params`` are the trainable parameters; ``state`` the model's other variable
collections (``Family.state_collections``; empty for most models). While training
(``__call__``) those collections are mutable and the updated values come back in
``outputs["new_state"]``; ``per_example`` (evaluation) keeps them frozen.
``batch`` holds ``inputs`` (what the encoder sees: the corrupted images of a
denoising model) and ``target`` (what the decoder should give back), float
``[B, H, W, C]`` in [0, 1]. ``key`` feeds the model's rng streams (a VAE's sample);
models that draw nothing ignore it. A term reads named arrays from the model's output
dict and the batch (``LossTerm.reads``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax

from aejax import losses, models
from aejax.images import to_float  # noqa: F401 (re-exported: images are scaled there)


@dataclasses.dataclass(frozen=True)
class Objective:
  model: nn.Module
  model_config: Any  # the config's ``model`` block: which rng streams to feed
  weights: dict[str, float]  # loss term name -> weight, as ``losses.parse_weights`` gives

  def outputs(self, params, inputs: jax.Array, key: jax.Array, state: dict | None = None,
              update_state: bool = False) -> dict[str, jax.Array]:
    """The model's output dict for float ``inputs`` [B, H, W, C]; with
    ``update_state`` and state collections, plus ``new_state``."""
    variables = {"params": params, **(state or {})}
    rngs = models.rngs(self.model_config, key)
    collections = list(models.get(self.model_config.name).state_collections)
    if update_state and collections:
      outputs, new_state = self.model.apply(variables, inputs, rngs=rngs, mutable=collections)
      return {**outputs, "new_state": dict(new_state)}
    return self.model.apply(variables, inputs, rngs=rngs)

  def per_example(self, params, batch: dict[str, jax.Array], key: jax.Array,
                  state: dict | None = None):
    """``(loss [B], {term: [B]}, outputs)``: the weighted sum per example; the model's
    state collections stay frozen."""
    outputs = self.outputs(params, batch["inputs"], key, state)
    values = self.terms(outputs, batch)
    return self._weighted(values), values, outputs

  def __call__(self, params, batch: dict[str, jax.Array], key: jax.Array,
               state: dict | None = None):
    """``(loss, {term: value}, outputs)``, each term averaged over the batch, so the
    loss of a batch is the mean of its equal-sized chunks' losses. The model's state
    collections are updated (``outputs["new_state"]``)."""
    outputs = self.outputs(params, batch["inputs"], key, state, update_state=True)
    terms = {name: value.mean() for name, value in self.terms(outputs, batch).items()}
    return self._weighted(terms), terms, outputs

  def terms(self, outputs: dict[str, jax.Array], batch: dict[str, jax.Array]
            ) -> dict[str, jax.Array]:
    """Each term's per-example values ``[B]`` on a model's outputs and its batch."""
    arrays = {**outputs, **batch}
    values = {}
    for name in self.weights:
      term = losses.get(name)
      missing = [a for a in term.reads if a not in arrays]
      if missing:
        raise ValueError(
            f"Loss term {name!r} reads {missing}, which model {self.model_config.name!r} "
            f"does not output (it gives {sorted(outputs)}, plus 'inputs' and 'target').")
      values[name] = term(arrays)
    return values

  def _weighted(self, values: dict[str, jax.Array]) -> jax.Array:
    return sum(self.weights[name] * values[name] for name in self.weights)
