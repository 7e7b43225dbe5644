"""The one place that writes the report: each section's typed result (``results``)
as markdown, in the order of ``SECTIONS`` (the prose is in ``prose`` and
``prose_compression``), and every number as report.json."""

from __future__ import annotations

import dataclasses
import json
import pathlib

from experiments.report import prose, prose_compression
from experiments.report.plan import Plan
from experiments.report.results import Section


@dataclasses.dataclass(frozen=True)
class Summary:
  """What the report's opening paragraph says about the call that made it."""
  command: str
  dataset: dict  # data_lib.Dataset.record()
  test_images: int | None  # Plan.test_images
  runs: int
  frontier_runs: int
  train_seconds: float  # every run's training, frontier included
  backend: str
  trained: float  # seconds this call spent training or reloading runs
  measured: float  # seconds it spent measuring


def write(out: pathlib.Path, summary: Summary, plan: Plan, done: dict[str, Section],
          results: dict[str, dict]) -> dict:
  """Writes REPORT.md and report.json into ``out``; returns report.json's content.
  ``done``: each section's results by its key in SECTIONS; ``results``: each run's."""
  (out / "REPORT.md").write_text(markdown(summary, done))
  numbers = report_json(summary, plan, done, results)
  (out / "report.json").write_text(json.dumps(numbers, indent=2, default=float) + "\n")
  return numbers


def report_json(summary: Summary, plan: Plan, done: dict[str, Section],
                results: dict[str, dict]) -> dict:
  sections = {key: value for name in SECTIONS for key, value in done[name].numbers.items()}
  return {"command": summary.command, "dataset": summary.dataset,
          "plan": dataclasses.asdict(plan), **sections,
          "runs": {name: {k: r[k] for k in ("epochs", "train_seconds", "test")}
                   for name, r in results.items()}}


def markdown(summary: Summary, done: dict[str, Section]) -> str:
  return header(summary) + "\n".join(text(done[name]) for name, text in SECTIONS.items())


def codes_markdown(command: str, dataset: dict, done: dict[str, Section]) -> str:
  """Sections 1 to 4 alone, of runs on any data (``study.codes_report``)."""
  shape = dataset["image_shape"]
  what = (f"{shape[0]} features" if len(shape) == 1
          else "×".join(map(str, shape)) + " images")
  return ("# PCA, probes and 2-D maps of the codes\n\n"
          + (f"Written by this command, run from the repository root:\n\n    {command}\n\n"
             if command else "")
          + f"Data: {dataset['name']} ({dataset['source']}), {dataset['n_train']:,} training "
          f"and {dataset['n_test']:,} test examples of {what}.\n\n"
          + "\n".join(SECTIONS[name](done[name]) for name in ("sweep", "features", "maps")))


def header(s: Summary) -> str:
  record = s.dataset
  return (
      "# The article's claims, measured\n\n"
      "Every number and figure here was written by this one command, run from the "
      "repository root:\n\n"
      f"    {s.command}\n\n"
      f"Data: {record['name']} ({record['source']}), {record['n_train']:,} training and "
      f"{record['n_test']:,} test images"
      + (f" (measured on the first {s.test_images:,})" if s.test_images else "")
      + f". {s.runs} runs (and {s.frontier_runs} of the TopK/L1 frontier), "
      f"{s.train_seconds / 60:.1f} min of training in "
      f"total on {s.backend}; this call spent {s.trained / 60:.1f} min training "
      f"or reloading runs and {s.measured / 60:.1f} min measuring. Every number is also in "
      "`report.json`.\n\n")


# The report's sections in order: the key of each one's result, and its prose.
SECTIONS = {
    "sweep": prose.sweep_section, "features": prose.features_section,
    "maps": prose.maps_section, "denoising": prose.denoising_section,
    "sparsity": prose.sparsity_section, "compression": prose_compression.compression_section,
    "deep": prose.deep_section, "curves": prose.curves_section,
    "contractive": prose.contractive_section, "frontier": prose.frontier_section,
    "vqvae": prose_compression.vqvae_section, "vae": prose.vae_section,
    "codecs": prose_compression.codecs_section, "seeds": prose.seeds_section}
