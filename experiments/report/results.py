"""What each section of the report measured: one frozen dataclass per section, made by
the section's module (``codes``, ``denoising``, ...) and rendered by ``writer``.

Every result carries ``numbers``, its entries of report.json by key (written as they
are), beside the typed fields its text reads: the writer reads those fields, never
``numbers``, so a field a section stops filling fails where the text is written."""

from __future__ import annotations

import dataclasses
from typing import Any

from experiments.report.plan import SeedClaim

_RESULT = dataclasses.dataclass(frozen=True, kw_only=True)


@_RESULT
class Section:
  numbers: dict[str, Any]  # this section's entries of report.json, by key


@_RESULT
class PcaSweep(Section):
  """Sections 1 and 2: PCA-30 and PCA against the autoencoder at each code size."""
  pca30_components: int
  pca30_sse: float  # squared error per test example
  pca30_off: float | None  # relative distance to Hinton & Salakhutdinov's (MNIST only)
  rows: list[list]  # one table row per code size
  epochs: int  # of the sweep's first run
  train_images: int
  test_images: int
  dimensions: int  # D
  unit: str  # "pixel" or "feature"
  data: str  # the data set's name
  bounded: bool  # whether the data lies in [0, 1]


@_RESULT
class Features(Section):
  """Section 3: probes on the raw data, the codes and PCA codes; ``skipped`` (one
  line) when the data has no labels."""
  skipped: str | None = None
  rows: list[list] = dataclasses.field(default_factory=list)
  by_run: dict[str, dict] = dataclasses.field(default_factory=dict)  # {code_size, ae, pca}
  probe_train: int = 0
  dimensions: int = 0


@_RESULT
class Maps(Section):
  """Section 4: the 2-D maps; ``skipped`` (one line) without a map2d run."""
  skipped: str | None = None
  knn: dict[str, float | None] = dataclasses.field(default_factory=dict)  # by panel
  map2d_sse: float = 0.0
  map2d_epochs: int = 0
  dimensions: int = 0


@_RESULT
class Denoising(Section):
  """Section 5: PSNR and SSIM of noisy inputs and two models' outputs."""
  rows: list[list]
  noise_level: float  # the denoising model's training noise
  denoising_epochs: int
  conv_epochs: int


@_RESULT
class Sparsity(Section):
  """Section 6: the L1-penalised model at each λ."""
  rows: list[list]
  epochs: int
  losses: str  # of the largest λ's run


@_RESULT
class Compression(Section):
  """Section 7: JPEG against quantized codes. ``panels``: ``{data set: {method:
  (bytes, PSNRs)}}``, which section 12 draws again."""
  rows: list[list]
  panels: dict[str, dict[str, tuple[list, list]]]
  probe_train: int


@_RESULT
class Deep(Section):
  """Section 8: the deep autoencoder against Hinton & Salakhutdinov's 3.00."""
  sse: float  # test squared error per image
  reached: bool  # at or below their figure
  margin: float  # above (positive) or below their figure
  pca30_sse: float  # section 1's
  epochs: int
  train_seconds: float
  weight_decay: float
  learning_rate: float
  schedule: str
  batch_size: int
  backend: str


@_RESULT
class Curves(Section):
  """Section 9: every run's test figures; ``sweeps``: (run, member 0's overrides,
  members) of each sweep run."""
  rows: list[list]
  sweeps: list[tuple[str, dict, int]]


@_RESULT
class Contractive(Section):
  """Section 10: encoder Jacobians and code motion under noise."""
  rows: list[list]
  trainings: dict[str, tuple[str, float | None]]  # each run's (losses, corruption level)
  sigmas: tuple[float, ...]
  flattest: str
  steadiest: str
  code_size: int
  code_activation: str
  batch_size: int
  losses: str
  noise_level: float
  epochs: int
  test_images: int


@_RESULT
class Frontier(Section):
  """Section 11: TopK against the L1 frontier, and dead latents."""
  runs: list[dict]  # sparsity_frontier's rows
  epochs: int
  below: int  # TopK runs at or below the L1 frontier
  comparisons: int
  widest: int
  dead: list[dict]  # {k, without_auxk, with_auxk}
  ks: tuple[int, ...]
  l1_weights: tuple[str, ...]
  auxk_weight: float


@_RESULT
class VqVae(Section):
  """Section 12: VQ-VAE points against JPEG at equal bytes. A row's verdict is
  'above' or 'below' JPEG's scan, 'too_small', or None (no JPEG point to compare)."""
  rows: list[dict]
  above: list[str]
  comparable: int
  runs: int
  epochs: list[int]
  test_images: int
  smallest_jpeg_file: float | None
  below_smallest_jpeg_file: int | None


@_RESULT
class Vae(Section):
  """Section 13: the long VAE and IWAE runs, read when present."""
  rows: list[dict]
  curves: bool  # whether vae_curves.png was drawn
  pictures: list[tuple[str, str]]  # (run, prior samples' file name)
  stopped: list[dict]  # runs read from evaluate_run.json
  missing: list[dict]  # runs not there, with their launch command


@_RESULT
class Codecs(Section):
  """Section 14: the learned codecs' real bytes against JPEG and WebP."""
  series: list[str]  # the codec runs, in order
  members: dict[str, list[dict]]  # each run's points on the MNIST test images
  runs: dict[str, dict] = dataclasses.field(default_factory=dict)
  datasets: dict[str, tuple[int, dict]] = dataclasses.field(default_factory=dict)
  test_images: int = 0


@_RESULT
class SeedRow:
  claim: SeedClaim
  stats: dict  # sweep.describe's
  met: bool | None
  epochs: int


@_RESULT
class Seeds(Section):
  """Section 15: the headline figures over seeds, from scripts/train_all.sh's runs."""
  rows: list[SeedRow]
  missing: list[str]  # specs of the claims without a usable run
  unusable: dict[str, str]  # workdir: why it is not a sweep over seeds
  command: str | None  # train_all.sh's command for the missing ones
  seeds_dir: str
