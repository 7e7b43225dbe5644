"""The article's claims, measured: trains (or reuses) every model the study needs,
measures each claim against its baseline and writes REPORT.md with its figures.

    python -m experiments.report --workdir docs --runs_dir runs/report \
        --data_dir path/to/mnist          # full MNIST (about 45 min on 2 CPU cores)
    python -m experiments.report --workdir report_quick --quick   # bundled sample, 1 epoch
    python -m experiments.report --workdir out --runs_dir runs/mine --codes_only
                                   # sections 1-4 of runs on any data, nothing trained

Runs live in ``--runs_dir`` (default ``<workdir>/runs``), one workdir each; a run
that is already trained is resumed, i.e. only evaluated again, so a second call
re-measures without retraining (the TopK/L1 frontier's runs live in
``<runs_dir>/frontier``, measured once into its ``frontier.json``). The VAE and IWAE
are not trained here (hundreds of epochs): their section reads ``<runs_dir>/vae`` and
``<runs_dir>/iwae`` if they exist and says how to make them if not; likewise the
headline figures over five seeds read scripts/train_all.sh's sweep runs from
``<runs_dir>/seeds``. The learned codecs are trained here, each prior's λ values as
one sweep run. ``<workdir>`` receives REPORT.md, report.json (every number of the report) and the PNG figures.

Layout: ``plan`` (what is trained and measured), ``context`` (the data and runs every
section reads), one module per section or group of sections that computes
(``codes``: 1-4, ``denoising``: 5, ``sparsity``: 6 and 11, ``compression``: 7, 12
and 14, ``runs``: 8 and 9, ``contractive``: 10, ``vae``: 13, ``seeds``: 15),
``writer`` (the only place that writes markdown and JSON; the prose of each section is
in ``prose`` and ``prose_compression``), and ``study.make_report``, which runs them all.
A section's function draws its figures and returns its typed result (``results``, a
dataclass per section): ``numbers``, its entries of report.json, beside the fields its
text reads (table rows, counts, names); no markdown.
"""

from experiments.report.plan import (BURDA_IWAE_NLL, BURDA_VAE_NLL, CAE_RUNS, CODEC_RUNS,
                                     CORRUPTIONS, FIGURES, FULL, HS_DEEP_SSE, HS_PCA30_SSE,
                                     LONG_RUNS, QUICK, SEED_CLAIMS, Plan, SeedClaim,
                                     cae_configs, codec_configs, frontier_configs,
                                     map2d_config, run_configs)
from experiments.report.study import codes_report, make_report, measure
