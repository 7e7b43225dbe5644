"""CompressAI's ``bmshj2018-factorized`` beside aejax's codec: trained alike on the same
images, for the same epochs and λ, measured alike in real bytes, in one run.

    pip install torch==2.14.1 torchvision==0.29.1
    pip install --no-deps compressai==1.2.8 einops pytorch-msssim torch-geometric requests
    python -m experiments.compressai_peer --data_dir=path/to/mnist --lambdas=0.05,0.004 \
        --num_epochs=2 --workdir=runs/compressai_peer --json=docs/benchmarks/compressai_peer.json

CompressAI 1.2.8 declares numpy<2, which JAX cannot run with, hence ``--no-deps``: it
runs on NumPy 2 (its range coder is C++ that does not use NumPy's ABI), and it imports
torchvision and torch_geometric when it loads, so those must be installed.

Both minimise the same objective, per image: squared error summed over the pixels in
[0, 1] plus λ times the bits of the latents (aejax's ``losses="sse=1, rate=λ"``;
CompressAI's own loss, λ_c · 255² · MSE + bits per pixel, is this one with
λ_c = 1 / (255² · λ · pixels)).

- **aejax**: ``experiments/configs/codec.py`` (Ballé et al. 2017's factorized prior,
  its own recipe) at each λ, trained by ``experiments.main``'s code path into
  ``<workdir>/aejax/lambda_<λ>``.
- **CompressAI**: ``FactorizedPrior(N=128, M=192)``, the network
  ``compressai.zoo.bmshj2018_factorized`` builds for its qualities 1-5, its first and
  last layers for one channel; the 28×28 images padded with zeros to 32×32 (it halves
  the grid four times) and its output cropped back, the error counted on the 28×28
  pixels, the bits on every latent. Trained as CompressAI's ``examples/train.py``
  does: Adam at 1e-4 on the network, Adam at 1e-3 on the entropy bottleneck's
  quantiles against its auxiliary loss, gradients clipped to norm 1; batches of
  aejax's config's size, a fresh permutation each epoch. After training
  ``update(force=True)`` makes its integer tables; ``compress`` writes one string per
  image (no header: the shape is the model's), ``decompress`` reads it back.

Seconds per epoch are wall-clock medians over the epochs (the first one's compilation
included for aejax, as its log reports it), both on this machine one after the other.
Bytes, PSNR and SSIM on the first ``--test_images`` test images, by
``experiments.compression``'s measures.
"""

from __future__ import annotations

import json
import pathlib
import time

import ml_collections
import numpy as np
from absl import app, flags, logging

from aejax import codec as codec_lib, data, trainer
from experiments import compression
from experiments.configs import codec as codec_config

HALVINGS = 4  # CompressAI's factorized prior halves the grid four times


def _torch():
  try:
    import compressai  # noqa: F401,PLC0415 (optional, heavy)
    import torch  # noqa: PLC0415
  except ImportError as e:
    raise SystemExit(f"error: {e}. CompressAI is optional; install it as this module's "
                     "docstring says (python -m pydoc experiments.compressai_peer).") from e
  return torch


def peer_model(torch):
  from compressai.models import FactorizedPrior  # noqa: PLC0415
  from compressai.models.utils import conv, deconv  # noqa: PLC0415
  model = FactorizedPrior(N=128, M=192)
  model.g_a[0] = conv(1, 128)
  model.g_s[-1] = deconv(128, 1)
  return model


def _padded(torch, images_u8: np.ndarray):
  """uint8 grey [N, H, W, 1] -> float [N, 1, H', W'], zeros right and below up to the
  next multiple of 16 (28×28 -> 32×32)."""
  n, h, w, channels = images_u8.shape
  if channels != 1:
    raise SystemExit(f"error: the peer is set up for grey images; these have {channels} "
                     "channels.")
  size = lambda s: -(-s // 2 ** HALVINGS) * 2 ** HALVINGS
  x = torch.zeros((n, 1, size(h), size(w)))
  x[:, 0, :h, :w] = torch.from_numpy(images_u8[..., 0].astype(np.float32) / 255.0)
  return x


def train_peer(torch, train_u8: np.ndarray, lam: float, num_epochs: int, batch_size: int,
               seed: int) -> tuple[object, list[float], list[float]]:
  """The CompressAI model trained on ``train_u8``: (model, seconds per epoch, the last
  epoch's mean loss)."""
  torch.manual_seed(seed)
  model = peer_model(torch)
  model.train()
  main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
  aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
  optimizer = torch.optim.Adam(main, lr=1e-4)
  aux_optimizer = torch.optim.Adam(aux, lr=1e-3)
  images = _padded(torch, train_u8)
  h, w = train_u8.shape[1:3]
  rng = np.random.default_rng(seed)
  seconds, losses = [], []
  steps = len(images) // batch_size
  for epoch in range(num_epochs):
    start, total = time.perf_counter(), 0.0
    order = torch.from_numpy(rng.permutation(len(images)))
    for i in range(steps):
      x = images[order[i * batch_size:(i + 1) * batch_size]]
      optimizer.zero_grad()
      aux_optimizer.zero_grad()
      out = model(x)
      sse = torch.sum(torch.square(out["x_hat"][..., :h, :w] - x[..., :h, :w]), dim=(1, 2, 3))
      bits = torch.sum(-torch.log2(out["likelihoods"]["y"]), dim=(1, 2, 3))
      loss = torch.mean(sse + lam * bits)
      if not torch.isfinite(loss):  # as aejax's own steps do: stop, say where
        raise SystemExit(f"error: CompressAI's loss is {float(loss)} at λ={lam:g}, epoch "
                         f"{epoch + 1}, step {i + 1}; nothing of it was measured.")
      loss.backward()
      torch.nn.utils.clip_grad_norm_(main, 1.0)
      optimizer.step()
      model.aux_loss().backward()
      aux_optimizer.step()
      total += float(loss.detach())
    seconds.append(time.perf_counter() - start)
    losses.append(total / steps)
    logging.info("compressai λ=%g epoch %d/%d  loss %.4f  %.1fs", lam, epoch + 1, num_epochs,
                 losses[-1], seconds[-1])
  return model, seconds, losses


def measure_peer(torch, model, images_u8: np.ndarray, batch: int = 500) -> dict:
  """Real bytes (CompressAI's strings), its estimated bits, and the decoded images'
  PSNR and SSIM."""
  model.eval()
  model.update(force=True)
  h, w = images_u8.shape[1:3]
  sizes, estimated, decoded = [], [], []
  with torch.no_grad():
    for start in range(0, len(images_u8), batch):
      x = _padded(torch, images_u8[start:start + batch])
      coded = model.compress(x)
      sizes += [len(s) for s in coded["strings"][0]]
      likelihoods = model(x)["likelihoods"]["y"]  # the rounded latents' (eval mode)
      estimated += torch.sum(-torch.log2(likelihoods), dim=(1, 2, 3)).tolist()
      out = model.decompress(coded["strings"], coded["shape"])["x_hat"]
      decoded.append(out[:, 0, :h, :w, None].numpy())
  sizes, estimated = np.asarray(sizes, np.float64), np.asarray(estimated) / 8
  return {"bytes": float(sizes.mean()), "estimated_bytes": float(estimated.mean()),
          "overhead_bytes": float((sizes - estimated).mean()),
          **compression.quality(images_u8, np.concatenate(decoded).astype(np.float32))}


def train_aejax(base: ml_collections.ConfigDict, lam: float, num_epochs: int,
                workdir: pathlib.Path) -> tuple[codec_lib.Codec, list[float], list[float]]:
  """``base`` (the codec config on the data) at λ, trained into ``workdir``: (its
  codec, seconds per epoch, mean training loss per epoch)."""
  config = ml_collections.ConfigDict(base.to_dict())
  config.losses = f"sse=1, rate={lam:g}"
  config.num_epochs = num_epochs
  trainer.train_and_evaluate(config, str(workdir))
  epochs = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
  return (codec_lib.Codec.from_workdir(workdir), [e["seconds"] for e in epochs],
          [e["train"]["loss"] for e in epochs])


def markdown(rows: list[dict]) -> str:
  lines = ["| λ | codec | bytes/image (real) | estimated | PSNR dB | SSIM | s/epoch (median) |"
           " final train loss |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['lambda']:g} | {r['codec']} | {r['bytes']:.1f} | "
                 f"{r['estimated_bytes']:.1f} | {r['psnr_db']:.2f} | {r['ssim']:.4f} | "
                 f"{r['seconds_per_epoch']:.1f} | {r['final_loss']:.3f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  torch = _torch()
  torch.set_num_threads(FLAGS.threads or torch.get_num_threads())
  config = codec_config.get_config()
  config.data_dir, config.dataset = FLAGS.data_dir, FLAGS.dataset
  dataset = data.load(config)
  test_u8 = dataset.test_images[:FLAGS.test_images or None]
  workdir = pathlib.Path(FLAGS.workdir)
  rows = []
  for lam in map(float, FLAGS.lambdas):
    codec, seconds, losses = train_aejax(config, lam, FLAGS.num_epochs,
                                         workdir / "aejax" / f"lambda_{lam:g}")
    rows.append({"lambda": lam, "codec": "aejax codec.py", "seconds_per_epoch":
                 float(np.median(seconds)), "epoch_seconds": seconds, "final_loss": losses[-1],
                 **compression.measure_codec(codec, test_u8)})
    model, seconds, losses = train_peer(torch, dataset.train_images, lam, FLAGS.num_epochs,
                                        config.batch_size, FLAGS.seed)
    rows.append({"lambda": lam, "codec": "CompressAI bmshj2018-factorized",
                 "seconds_per_epoch": float(np.median(seconds)), "epoch_seconds": seconds,
                 "final_loss": losses[-1], **measure_peer(torch, model, test_u8)})
    print(markdown(rows[-2:]), flush=True)
  report = {"num_epochs": FLAGS.num_epochs, "dataset": dataset.record(),
            "test_images": len(test_u8), "torch": torch.__version__,
            "compressai": __import__("compressai").__version__,
            "torch_threads": torch.get_num_threads(), "rows": rows}
  if FLAGS.json:
    pathlib.Path(FLAGS.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(FLAGS.json).write_text(json.dumps(report, indent=1) + "\n")
  print(markdown(rows))


if __name__ == "__main__":
  flags.DEFINE_list("lambdas", ["0.05", "0.004"], "λ values, squared error per bit.")
  flags.DEFINE_integer("num_epochs", 2, "Epochs of each model at each λ.")
  flags.DEFINE_string("data_dir", "", "Folder of the MNIST IDX files.")
  flags.DEFINE_string("dataset", "mnist", "aejax's data set (mnist_sample: the bundled "
                      "sample; npz:FILE: images of your own); both train on it.")
  flags.DEFINE_string("workdir", "runs/compressai_peer", "aejax's runs go under it.")
  flags.DEFINE_string("json", "", "Write every number here.")
  flags.DEFINE_integer("test_images", 2000, "Measure on the first N test images (0: all).")
  flags.DEFINE_integer("seed", 0, "CompressAI's initialisation and epoch order.")
  flags.DEFINE_integer("threads", 0, "torch threads (0: torch's default).")
  app.run(main)
