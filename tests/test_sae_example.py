"""The worked SAE example: a classifier's activations exported as an npz that aejax
reads as vectors, and the helpers that pick and draw its atoms."""

import dataclasses

import numpy as np
from hypothesis import given, settings, strategies as st

from aejax import data
from aejax.data import readers
from experiments import export_activations, sae_atoms


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.integers(1, 8),
       st.floats(0, 0.5))
def test_pick_latents_spreads_over_the_frequency_ranks(frequency, n, floor):
  frequency = np.array(frequency)
  picked = sae_atoms.pick_latents(frequency, n, floor)
  eligible = np.flatnonzero(frequency > floor)
  assert len(picked) == min(n, len(eligible)) and set(picked) <= set(eligible)
  assert (np.diff(frequency[picked]) <= 0).all()  # most frequent first
  if len(picked):
    assert frequency[picked[0]] == frequency[eligible].max()


def test_top_examples_against_a_sort_per_column():
  codes = np.random.default_rng(0).random((50, 6))
  latents = np.array([4, 1])
  top = sae_atoms.top_examples(codes, latents, 3)
  for row, latent in zip(top, latents):
    assert row.tolist() == np.argsort(-codes[:, latent])[:3].tolist()


def test_exported_activations_are_vectors_aejax_reads(tmp_path):
  sample = data.load_sample()
  small = dataclasses.replace(sample, train_images=sample.train_images[:2000],
                              train_labels=sample.train_labels[:2000])
  summary = export_activations.export(small, tmp_path / "act.npz", hidden=32, epochs=2)
  assert summary["shape"] == [2000, 32] and summary["test_accuracy"] > 0.5
  ds = readers.read_npz(tmp_path / "act.npz")
  assert ds.image_shape == (32,) and ds.train_images.dtype == np.float32
  assert (ds.train_images >= 0).all() and not ds.bounded  # relu, beyond 1
  np.testing.assert_array_equal(ds.test_labels, sample.test_labels)
