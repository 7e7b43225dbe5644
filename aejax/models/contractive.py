"""The contractive autoencoder (Rifai, Vincent, Muller, Glorot & Bengio 2011): an MLP
autoencoder penalised by the squared Frobenius norm of its encoder's Jacobian,

    ||J(x)||²_F = Σ_{j, i} (∂ code_j / ∂ x_i)²,

which makes the code insensitive to input directions the data does not vary along.

The norm is exact, by reverse-mode autodiff through Flax's lifted ``nn.vjp``: one
vector-Jacobian product per code unit, batched with ``vmap``. A cotangent that is the
unit vector e_j for every example gives, per example, row j of that example's
Jacobian, because the encoder treats examples independently (no layer mixes the
batch). The cost is ``code_size`` backward passes through the encoder, whatever its
depth, and the loss's gradient differentiates through them (second order). Rifai et
al.'s closed form for one sigmoid layer, ``Σ_j (h_j (1 - h_j))² Σ_i W_ij²``, is what
the tests check this against, with finite differences for deeper encoders.

Output dict of ``apply`` for ``x`` [B, H, W, C]: ``reconstruction`` [B, H, W, C],
``code`` [B, code_size], ``jacobian_frobenius_sq`` [B]. The loss term
``contractive`` reads the latter (``losses='mse=1, contractive=λ'``).

Config block (``config.model``): ``hidden`` (encoder widths before the code,
mirrored by the decoder), ``code_size``, ``code_activation`` (Rifai's sigmoid by
default), ``init``, ``output_bias``, ``compute_dtype``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from aejax import losses
from aejax.models import layers, mlp, registry


def contractive(*, jacobian_frobenius_sq: jax.Array) -> jax.Array:
  """The contractive penalty ``||∂ code / ∂ x||²_F`` per example: [B] -> [B]."""
  return jacobian_frobenius_sq.astype(jnp.float32)


losses.register("contractive", contractive, ("jacobian_frobenius_sq",))


def jacobian_frobenius_sq(encoder: nn.Module, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(code [B, K], ||∂ code_b / ∂ x_b||²_F [B])`` for a bound per-example ``encoder``.

  Differentiates with respect to the input only (``vjp_variables=False``); the
  parameters' gradient comes from the caller's own differentiation of the result.
  """
  code, vjp_fn = nn.vjp(lambda module, x: module(x), encoder, x, vjp_variables=False)
  k = code.shape[-1]
  # [K, B, K]: cotangent j is e_j for every example.
  cotangents = jnp.broadcast_to(jnp.eye(k, dtype=code.dtype)[:, None, :], (k, *code.shape))
  _, rows = jax.vmap(vjp_fn)(cotangents)  # ({} for no variables, [K, B, *x.shape[1:]])
  squares = jnp.square(rows.reshape(k, x.shape[0], -1))
  return code, jnp.sum(squares, axis=(0, 2))


class ContractiveAutoencoder(nn.Module):
  """``mlp``'s encoder and decoder, plus the encoder's Jacobian norm."""

  encoder: mlp.MLPEncoder
  decoder: mlp.MLPDecoder

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def decode(self, code: jax.Array) -> jax.Array:
    return self.decoder(code)

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    code, frobenius_sq = jacobian_frobenius_sq(self.encoder, x)
    return {"reconstruction": self.decoder(code), "code": code,
            "jacobian_frobenius_sq": frobenius_sq}


def build(config, image_shape, pixel_mean, unbounded: bool = False) -> ContractiveAutoencoder:
  init = layers.INITIALIZERS[config.init]()
  dtype = layers.compute_dtype(config)
  hidden = tuple(config.hidden)
  encoder = mlp.MLPEncoder(widths=(*hidden, config.code_size),
                           code_activation=config.code_activation, kernel_init=init,
                           dtype=dtype)
  decoder = mlp.MLPDecoder(widths=hidden[::-1], image_shape=image_shape, kernel_init=init,
                           output_bias_init=layers.output_bias_init(config, pixel_mean, False,
                                                                    unbounded),
                           dtype=dtype, linear=unbounded)
  return ContractiveAutoencoder(encoder=encoder, decoder=decoder)


registry.register(registry.Family(
    name="contractive",
    defaults=dict(hidden=(), code_size=64, code_activation="sigmoid", init="glorot_uniform",
                  output_bias="data_mean", compute_dtype="float32"),
    build=build, check=mlp.check,  # the mlp family's keys, with a sigmoid code
    vectors=True, linear_head=True))
