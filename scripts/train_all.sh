#!/usr/bin/env bash
# Trains the five configs with aejax's defaults and the three the article gives Keras
# numbers for with the Keras recipe (":keras"), on the MNIST IDX files in $1, into
# run folders under $2 (default runs/mnist), then prints docs/results/README.md's table.
#   bash scripts/train_all.sh path/to/mnist [runs/mnist]
set -euo pipefail
data_dir=${1:?usage: bash scripts/train_all.sh MNIST_DIR [OUT_DIR]}
out=${2:-runs/mnist}
runs=()
for spec in vanilla multilayer conv sparse denoising vanilla:keras multilayer:keras sparse:keras; do
  name=${spec%%:*}; recipe=${spec#"$name"}
  workdir="$out/$name${recipe:+-${recipe#:}}"
  python -m experiments.main --config "experiments/configs/$name.py$recipe" \
      --workdir "$workdir" --config.data_dir="$data_dir"
  runs+=("$workdir")
done
python -m experiments.results_table "${runs[@]}"
