"""experiments.compressai_peer end to end on a few hundred images, where CompressAI is
installed (an optional peer: experiments/compressai_peer.py says how)."""

import json

import numpy as np
import pytest

from aejax import data

pytest.importorskip("compressai")


@pytest.mark.slow
def test_both_codecs_train_alike_and_are_measured_in_real_bytes(cli, tmp_path):
  sample = data.load_sample()
  np.savez(tmp_path / "digits.npz", train=sample.train_images[:256],
           test=sample.test_images[:24])
  out = tmp_path / "peer.json"
  proc = cli.run_module("experiments.compressai_peer", f"--dataset=npz:{tmp_path / 'digits.npz'}",
                        "--lambdas=0.05", "--num_epochs=1", f"--workdir={tmp_path / 'runs'}",
                        f"--json={out}", "--threads=1")
  report = json.loads(out.read_text())
  assert report["test_images"] == 24 and report["num_epochs"] == 1
  ours, theirs = report["rows"]
  assert ours["codec"] == "aejax codec.py" and theirs["codec"].startswith("CompressAI")
  for row in (ours, theirs):
    assert row["lambda"] == 0.05 and len(row["epoch_seconds"]) == 1
    # Real strings: the estimate plus the coder's flush, never less than the estimate by
    # more than rounding.
    assert -1 < row["overhead_bytes"] < 8 and row["bytes"] > 0
    assert 0 < row["psnr_db"] < 60 and 0 < row["ssim"] <= 1
  assert "| 0.05 | CompressAI bmshj2018-factorized |" in proc.stdout
