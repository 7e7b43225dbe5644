"""Trains a small MNIST classifier (784-256 relu-10) and exports its hidden layer's
activations as an npz that aejax trains on (``--config.dataset=npz:<file>``): the
data of the worked sparse-autoencoder example (experiments/configs/sae_mnist.py).

    python -m experiments.export_activations --data_dir=path/to/mnist \
        --out=runs/mnist_classifier_activations.npz

The npz holds ``train`` / ``test`` float32 ``[N, 256]`` (relu activations, in MNIST's
order) and ``train_labels`` / ``test_labels``; the classifier's test accuracy is
printed and stored as ``test_accuracy``.
"""

from __future__ import annotations

import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging

from aejax import config as config_lib, data
from aejax.objective import to_float


class Classifier(nn.Module):
  hidden: int = 256

  @nn.compact
  def __call__(self, x):  # [B, H, W, C] -> (hidden [B, hidden], logits [B, 10])
    hidden = nn.relu(nn.Dense(self.hidden)(x.reshape(len(x), -1)))
    return hidden, nn.Dense(10)(hidden)


def cross_entropy(*, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy of integer labels: [B, 10], [B] -> [B]."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_classifier(dataset: data.Dataset, *, hidden: int = 256, epochs: int = 3,
                     batch_size: int = 128, seed: int = 0):
  """The classifier's parameters after ``epochs`` of Adam (1e-3), each epoch one
  compiled ``lax.scan`` over a permutation drawn from ``fold_in(seed, epoch)``."""
  model = Classifier(hidden)
  key = jax.random.key(seed)
  params = model.init(key, jnp.zeros((1, *dataset.image_shape)))["params"]
  optimizer = optax.adam(1e-3)
  images, labels = jnp.asarray(dataset.train_images), jnp.asarray(dataset.train_labels)
  steps = len(images) // batch_size

  def step(carry, batch_indices):
    params, opt_state = carry
    def loss_fn(p):
      _, logits = model.apply({"params": p}, to_float(images[batch_indices]))
      return cross_entropy(logits=logits, labels=labels[batch_indices]).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  @jax.jit
  def epoch(params, opt_state, key):
    order = jax.random.permutation(key, len(images))[:steps * batch_size]
    return jax.lax.scan(step, (params, opt_state), order.reshape(steps, batch_size))

  opt_state = optimizer.init(params)
  for e in range(epochs):
    (params, opt_state), losses = epoch(params, opt_state, jax.random.fold_in(key, e))
    logging.info("classifier epoch %d/%d  loss %.4f", e + 1, epochs, float(losses.mean()))
  return model, params


def activations(model, params, images: np.ndarray, batch_size: int = 1000):
  """``(hidden float32 [N, hidden], predicted class [N])`` of uint8 images."""
  apply = jax.jit(lambda x: model.apply({"params": params}, to_float(x)))
  hidden, predicted = [], []
  for start in range(0, len(images), batch_size):
    h, logits = apply(images[start:start + batch_size])
    hidden.append(np.asarray(h, np.float32))
    predicted.append(np.asarray(jnp.argmax(logits, -1)))
  return np.concatenate(hidden), np.concatenate(predicted)


def export(dataset: data.Dataset, out: str | pathlib.Path, **train_kwargs) -> dict:
  """Trains the classifier on ``dataset`` and writes the npz; returns its summary."""
  model, params = train_classifier(dataset, **train_kwargs)
  train_h, _ = activations(model, params, dataset.train_images)
  test_h, predicted = activations(model, params, dataset.test_images)
  accuracy = float(np.mean(predicted == dataset.test_labels))
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez(out, train=train_h, test=test_h, train_labels=dataset.train_labels,
           test_labels=dataset.test_labels, test_accuracy=accuracy)
  summary = {"out": str(out), "test_accuracy": accuracy, "shape": list(train_h.shape),
             "fraction_zero": float(np.mean(train_h == 0))}
  logging.info("Wrote %s: %s", out, summary)
  return summary


def main(argv):
  del argv
  config = config_lib.defaults()
  config.data_dir = flags.FLAGS.data_dir
  print(export(data.load(config), flags.FLAGS.out, hidden=flags.FLAGS.hidden,
               epochs=flags.FLAGS.epochs))


if __name__ == "__main__":
  flags.DEFINE_string("data_dir", "", "Folder of the MNIST IDX files.")
  flags.DEFINE_string("out", "runs/mnist_classifier_activations.npz", "The npz to write.")
  flags.DEFINE_integer("hidden", 256, "Width of the classifier's hidden layer.")
  flags.DEFINE_integer("epochs", 3, "Epochs of the classifier's training.")
  app.run(main)
