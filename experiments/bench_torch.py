"""PyTorch eager twins of the benchmark's four models, for a side-by-side comparison.

What a plain PyTorch script does: the images already in memory as one float32
tensor ``[N, 1, 28, 28]`` on the device, a fresh permutation each epoch, and per
batch ``zero_grad / forward / MSE / backward / Adam step``. Layers, initialisation
(Glorot-uniform kernels, zero biases) and the optimizer (Adam, constant rate,
eps 1e-8) match aejax's configs, so both frameworks do the same arithmetic.

Imported only for ``--compare torch``; install with ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from aejax import data
from aejax.models import layers
from experiments import bench


def _dense_autoencoder(hidden: tuple[int, ...], code_size: int) -> nn.Module:
  widths = (28 * 28, *hidden, code_size, *hidden[::-1])
  layers: list[nn.Module] = [nn.Flatten()]
  for width_in, width_out in zip(widths[:-1], widths[1:]):
    layers += [nn.Linear(width_in, width_out), nn.ReLU()]
  layers += [nn.Linear(widths[-1], 28 * 28), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28))]
  return nn.Sequential(*layers)


def _conv_autoencoder(features: tuple[int, ...]) -> nn.Module:
  layers: list[nn.Module] = []
  channels = 1
  for f in features:  # (conv 3x3 relu, 2x2 max-pool) per entry
    layers += [nn.Conv2d(channels, f, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    channels = f
  for f in features[::-1]:  # (conv 3x3 relu, 2x nearest upsampling) per entry
    layers += [nn.Conv2d(channels, f, 3, padding=1), nn.ReLU(),
               nn.Upsample(scale_factor=2, mode="nearest")]
    channels = f
  layers += [nn.Conv2d(channels, 1, 3, padding=1), nn.Sigmoid()]
  return nn.Sequential(*layers)


def build(model_config, pixel_mean: np.ndarray | None = None) -> nn.Module:
  """The PyTorch twin of ``aejax.models.build(model_config, (28, 28, 1), pixel_mean)``."""
  if model_config.name == "mlp":
    net = _dense_autoencoder(tuple(model_config.hidden), model_config.code_size)
  else:
    net = _conv_autoencoder(tuple(model_config.features))
  for module in net.modules():
    if isinstance(module, (nn.Linear, nn.Conv2d)):
      nn.init.xavier_uniform_(module.weight)  # Keras's and aejax's glorot_uniform
      nn.init.zeros_(module.bias)
  output = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
  bias = layers.output_bias_init(model_config, pixel_mean, per_channel=model_config.name == "conv")(
      None, tuple(output.bias.shape))
  with torch.no_grad():  # aejax's output bias: zeros, or the mean image's logits
    output.bias.copy_(torch.tensor(np.asarray(bias), dtype=torch.float32))
  return net


def time_torch(name: str, config, images: np.ndarray, test_images: np.ndarray
               ) -> bench.Measurement:
  """Trains the twin of ``config``'s model for ``config.num_epochs`` epochs, timing each.

  ``images``/``test_images``: uint8 ``[N, 28, 28, 1]``. A gaussian corruption
  (the denoising model) is applied per batch on the device, as aejax does.
  """
  if config.corruption.name not in ("none", "gaussian"):
    raise ValueError(f"The PyTorch twin knows no {config.corruption.name!r} corruption.")
  if config.model.compute_dtype != "float32":
    raise ValueError("The PyTorch twin runs in float32 only; compare with "
                     "--compute_dtype=float32.")
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.manual_seed(config.seed)
  net = build(config.model, pixel_mean=data.core.mean_of(images)).to(device)
  optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate,
                               betas=(config.adam_b1, config.adam_b2), eps=config.adam_eps)
  to_tensor = lambda x: torch.from_numpy(
      np.ascontiguousarray(x.transpose(0, 3, 1, 2)) / np.float32(255)).to(device)
  x_train, x_test = to_tensor(images), to_tensor(test_images)
  noise_factor = config.corruption.level if config.corruption.name == "gaussian" else 0.0
  batch_size, n = config.batch_size, len(images)
  steps = n // batch_size
  if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats(device)

  def sync():
    if device.type == "cuda":
      torch.cuda.synchronize(device)

  seconds = []
  for _ in range(config.num_epochs):
    t0 = time.perf_counter()
    order = torch.randperm(n, device=device)
    losses = []
    for i in range(steps):
      batch = x_train[order[i * batch_size:(i + 1) * batch_size]]
      inputs = batch
      if noise_factor:
        inputs = torch.clamp(batch + noise_factor * torch.randn_like(batch), 0.0, 1.0)
      optimizer.zero_grad(set_to_none=True)
      loss = nn.functional.mse_loss(net(inputs), batch)
      loss.backward()
      optimizer.step()
      losses.append(loss.detach())
    final_loss = float(torch.stack(losses).mean())  # waits for the epoch
    sync()
    seconds.append(time.perf_counter() - t0)
  with torch.no_grad():
    test_mse = float(sum(nn.functional.mse_loss(net(chunk), chunk, reduction="sum")
                         for chunk in x_test.split(1000)) / x_test.numel())
  kind = f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"
  peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
  return bench.Measurement(
      framework="pytorch", model=name, epoch_mode="eager", compute_dtype="float32",
      microbatch_size=batch_size,
      num_images=n, batch_size=batch_size, epoch_seconds=seconds,
      compile_s=None, peak_device_bytes=peak, peak_rss_bytes=bench.peak_rss_bytes(),
      final_loss=final_loss, test_mse=test_mse,
      device=f"{kind}, torch {torch.__version__}, {torch.get_num_threads()} threads")
