"""What the study trains and measures: the plan, every run's config, and the
published figures the report holds them against."""

from __future__ import annotations

import dataclasses

import ml_collections

from aejax import losses
from experiments import sparsity_frontier
from experiments.configs import (base, codec, contractive, conv, deep, denoising, multilayer,
                                 sparse, vanilla, vqvae)

# Hinton & Salakhutdinov, Science 313:504 (2006), MNIST test, squared error per image.
HS_PCA30_SSE = 13.87
HS_DEEP_SSE = 3.00
CORRUPTIONS = ("gaussian", "masking", "salt_and_pepper")
# Burda, Grosse & Salakhutdinov 2016, table 1, one stochastic layer, test NLL (nats).
BURDA_VAE_NLL = 86.76
BURDA_IWAE_NLL = 84.78
FIGURES = ("curves.png", "error_vs_code_size.png", "code_maps_2d.png", "denoising.png",
           "denoising_grid.png", "compression.png", "frontier.png", "vqvae_rate.png",
           "codec_rate.png", "codec_rate_ssim.png")
# The learned codecs of section 14: each prior's recipe, trained as one λ-sweep run.
CODEC_RUNS = {"codec_factorized": None, "codec_hyperprior": "hyperprior"}
# Trained elsewhere (see section 13); read from <runs_dir>/<name> when present.
LONG_RUNS = {"vae": "experiments/configs/vae.py", "iwae": "experiments/configs/vae.py:iwae"}
CAE_RUNS = ("cae_plain", "cae_denoising", "cae_contractive")


@dataclasses.dataclass(frozen=True)
class SeedClaim:
  """A headline figure over seeds (section 15): a config as scripts/train_all.sh trains
  it, one ``seed=0:5`` sweep in ``<seeds_dir>/<workdir>``."""
  spec: str  # train_all.sh's CONFIGS entry: config name and recipe
  figure: str  # a member's figure: "test.mse", …; "denoising.gain_db": denoised − noisy
  target: float | None = None
  higher_is_better: bool = False
  source: str = ""  # whose figure the target is

  @property
  def workdir(self) -> str:
    """train_all.sh's folder for it: ``vanilla:keras`` trains into ``vanilla-keras``."""
    return self.spec.replace(":", "-")


# docs/results/README.md's headline figures; "aejax" targets are those each config's
# page sets (beating the article's Keras figure, or in its docstring).
SEED_CLAIMS = (
    SeedClaim("vanilla", "test.mse", 0.0050, source="aejax (Keras: 0.0055)"),
    SeedClaim("multilayer", "test.mse", 0.0060, source="aejax (Keras: 0.0082)"),
    SeedClaim("conv", "test.mse"),
    SeedClaim("sparse", "test.mse", 0.0099, source="aejax (Keras: 0.0109)"),
    SeedClaim("denoising", "denoising.gain_db", 8.0, higher_is_better=True,
              source="aejax (PSNR gain over the noisy input)"),
    SeedClaim("deep", "test.sse_per_image", HS_DEEP_SSE,
              source="Hinton & Salakhutdinov 2006"),
    SeedClaim("topk", "test.mse"),
    SeedClaim("vanilla:keras", "test.mse", 0.0055, source="the article's Keras figure"),
    SeedClaim("multilayer:keras", "test.mse", 0.0082,
              source="the article's notebook"),
    SeedClaim("sparse:keras", "test.mse"),
)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What the study trains and measures."""
  dataset: str
  sweep_sizes: tuple[int, ...]
  sparse_l1: tuple[float, ...]
  noise_levels: tuple[float, ...]
  jpeg_qualities: tuple[int, ...]
  compression_sizes: tuple[int, ...]  # sweep models used as compressors
  probe_train: int  # training images the probes are fit on
  num_epochs: int | None  # None: each config's own
  test_images: int | None = None  # measure on the first n test images (None: all)
  # Contractive vs plain vs denoising: epochs of the three MLPs, input noise levels.
  cae_epochs: int = 2
  cae_sigmas: tuple[float, ...] = (0.05, 0.1)
  # TopK vs L1 (experiments/sparsity_frontier.py's sweep).
  frontier_widths: tuple[int, ...] = sparsity_frontier.DEFAULT_WIDTHS
  frontier_ks: tuple[int, ...] = sparsity_frontier.DEFAULT_KS
  frontier_l1: tuple[str, ...] = sparsity_frontier.DEFAULT_L1_WEIGHTS
  frontier_noaux_ks: tuple[int, ...] = sparsity_frontier.DEFAULT_NOAUX_KS
  frontier_epochs: int = 3
  # VQ-VAE settings: (encoder features, codebook size K); the grid is 28 / 2^len(features).
  vqvae_settings: tuple[tuple[tuple[int, ...], int], ...] = (
      ((16, 32), 16), ((16, 32), 512), ((16,), 16))
  vqvae_epochs: int = 1
  # Learned codecs (experiments/configs/codec.py, each prior of CODEC_RUNS): λ in
  # squared error per bit, one sweep run per prior; epochs by prior; the test images
  # their real bytes are measured on, and the photo tiles (None: all).
  codec_lambdas: tuple[str, ...] = ("0.2", "0.05", "0.012", "0.004", "0.0015", "0.0006")
  codec_epochs: tuple[tuple[str, int], ...] = (("codec_factorized", 2),
                                               ("codec_hyperprior", 2))
  codec_test_images: int | None = None
  codec_tiles: int | None = None
  codec_model: tuple[tuple[str, object], ...] = ()  # overrides of config.model


# The frontier and VQ-VAE sweeps are cut to what a pinned CPU core trains in about
# half an hour: k = 8 and 32, and the λ whose L0 brackets them (the script's full
# sweep: python -m experiments.sparsity_frontier); three VQ-VAEs inside JPEG's range
# of scan sizes (55, 98 and 147 bytes), 3 epochs each (about 3 minutes apiece). The
# codecs' nine λ reach from about 12 to 300 bytes, the hyperprior trained 6 epochs (its
# members take about 35 s an epoch each), the factorized prior its recipe's 2; their
# real bytes are measured on 2,000 test images.
FULL = Plan(dataset="mnist", sweep_sizes=(2, 4, 8, 16, 32, 64, 128, 784, 1024),
            sparse_l1=(0.0, 1e-5, 1e-4, 1e-3), noise_levels=(0.1, 0.3, 0.5, 0.7, 0.9),
            jpeg_qualities=(5, 10, 20, 30, 50, 75, 90), compression_sizes=(8, 16, 32, 64),
            probe_train=10_000, num_epochs=None, frontier_ks=(8, 32),
            frontier_l1=("1e-4", "3e-4", "1e-3", "3e-3"),
            vqvae_settings=(((16, 32), 512), ((32,), 16), ((32,), 64)), vqvae_epochs=3,
            codec_lambdas=("0.2", "0.05", "0.012", "0.004", "0.0015", "0.0006", "0.0002",
                           "7e-05", "2.5e-05"),
            codec_epochs=(("codec_factorized", 2), ("codec_hyperprior", 6)),
            codec_test_images=2000)
QUICK = Plan(dataset="mnist_sample", sweep_sizes=(2, 32), sparse_l1=(0.0, 1e-4),
             noise_levels=(0.3, 0.7), jpeg_qualities=(10, 90), compression_sizes=(32,),
             probe_train=1000, num_epochs=1, test_images=500, cae_epochs=1,
             frontier_widths=(32,), frontier_ks=(8,), frontier_l1=("1e-4", "1e-3"),
             frontier_noaux_ks=(8,), frontier_epochs=1, vqvae_settings=(((16,), 16),),
             vqvae_epochs=1, codec_lambdas=("0.05", "0.002"),
             codec_epochs=(("codec_factorized", 1), ("codec_hyperprior", 1)),
             codec_test_images=100, codec_tiles=100,
             # Narrower transforms: at full width the two codec runs were a third of the
             # quick report's time (the test suite's longest step).
             codec_model=(("features", (16, 16)), ("latent_channels", 8)))


def map2d_config() -> ml_collections.ConfigDict:
  """A 784-512-128-2 autoencoder with a linear 2-unit code, for the 2-D map."""
  config = base.get_config()
  config.name = "map2d"
  config.model.hidden = (512, 128)
  config.model.code_size = 2
  config.model.code_activation = "linear"
  config.num_epochs = 10
  return config


def run_configs(plan: Plan, data_dir: str) -> dict[str, ml_collections.ConfigDict]:
  """Every run of the study, by workdir name."""
  configs = {}
  for k in plan.sweep_sizes:
    config = vanilla.get_config()
    config.name = f"vanilla_k{k}"
    config.model.code_size = k
    configs[config.name] = config
  configs["multilayer"] = multilayer.get_config()
  for l1 in plan.sparse_l1:
    config = sparse.get_config()
    config.name = f"sparse_l1_{l1:g}"
    # The config's own reconstruction term, with the L1 weight set to λ (0: dropped).
    weights = {name: w for name, w in losses.parse_weights(config.losses).items()
               if name != "l1_activity"}
    if l1:
      weights["l1_activity"] = l1
    config.losses = ", ".join(f"{name}={w:g}" for name, w in weights.items())
    configs[config.name] = config
  configs["map2d"] = map2d_config()
  configs["deep"] = deep.get_config()
  configs["conv"] = conv.get_config()
  configs["denoising"] = denoising.get_config()
  configs.update(cae_configs(plan))
  for features, k in plan.vqvae_settings:
    config = vqvae.get_config()
    config.model.features, config.model.num_embeddings = features, k
    config.num_epochs = plan.vqvae_epochs
    config.name = f"vqvae_f{'-'.join(map(str, features))}_K{k}"
    configs[config.name] = config
  configs.update(codec_configs(plan))
  for config in configs.values():
    config.dataset = plan.dataset
    config.data_dir = data_dir if plan.dataset == "mnist" else ""
    if plan.num_epochs is not None:
      config.num_epochs = plan.num_epochs
      # A warm-up as long as the run would leave the cosine no steps to decay over.
      config.warmup_epochs = min(config.warmup_epochs, 0.2 * plan.num_epochs)
  return configs


def codec_configs(plan: Plan) -> dict[str, ml_collections.ConfigDict]:
  """Each prior's codec recipe with the plan's λ as one sweep run."""
  configs = {}
  for name, recipe in CODEC_RUNS.items():
    config = codec.get_config(recipe)
    config.name = name
    config.num_epochs = dict(plan.codec_epochs)[name]
    config.model.update(dict(plan.codec_model))
    config.sweep = "losses.rate=" + ",".join(plan.codec_lambdas)
    configs[name] = config
  return configs


def cae_configs(plan: Plan) -> dict[str, ml_collections.ConfigDict]:
  """784-64-784 with a sigmoid code (the contractive config's network), trained alike
  three ways: plain MSE; on gaussian-noised inputs (the denoising config's noise,
  factor 0.5); with the contractive penalty (the contractive config's λ)."""
  contractive_config = contractive.get_config()
  configs = {}
  for name in CAE_RUNS:
    config = contractive_config if name == "cae_contractive" else base.get_config("mlp")
    config = ml_collections.ConfigDict(config.to_dict())
    if name != "cae_contractive":
      config.model.code_size = contractive_config.model.code_size
      config.model.code_activation = contractive_config.model.code_activation
    if name == "cae_denoising":
      denoising_config = denoising.get_config()
      config.corruption.name = denoising_config.corruption.name
      config.corruption.level = denoising_config.corruption.level
    config.name = name
    config.num_epochs = plan.cae_epochs
    configs[name] = config
  return configs


def frontier_configs(plan: Plan, data_dir: str) -> list[tuple[str, dict, object]]:
  """sparsity_frontier's runs for the plan's sweep."""
  return sparsity_frontier.run_configs(
      widths=plan.frontier_widths, ks=plan.frontier_ks, l1_weights=plan.frontier_l1,
      noaux_ks=plan.frontier_noaux_ks, dataset=plan.dataset,
      data_dir=data_dir if plan.dataset == "mnist" else "", num_epochs=plan.frontier_epochs)
