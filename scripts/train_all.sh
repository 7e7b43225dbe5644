#!/usr/bin/env bash
# Trains the five article configs with aejax's defaults, the three the article gives
# Keras numbers for with the Keras recipe (":keras"), the deep autoencoder and TopK,
# each as one sweep over $SEEDS seeds (default 5: --config.sweep=seed=0:5), on the
# MNIST IDX files in $1, into run folders under $2 (default runs/mnist); then prints
# docs/results/README.md's table, every figure as mean ± std over the seeds.
#   bash scripts/train_all.sh path/to/mnist [runs/mnist]
#   CONFIGS="vanilla multilayer" bash scripts/train_all.sh path/to/mnist
set -euo pipefail
data_dir=${1:?usage: bash scripts/train_all.sh MNIST_DIR [OUT_DIR]}
out=${2:-runs/mnist}
seeds=${SEEDS:-5}
configs=${CONFIGS:-vanilla multilayer conv sparse denoising vanilla:keras multilayer:keras sparse:keras deep topk}
runs=()
for spec in $configs; do
  name=${spec%%:*}; recipe=${spec#"$name"}
  workdir="$out/$name${recipe:+-${recipe#:}}"
  python -m experiments.main --config "experiments/configs/$name.py$recipe" \
      --workdir "$workdir" --config.data_dir="$data_dir" --config.sweep="seed=0:$seeds"
  runs+=("$workdir")
done
python -m experiments.results_table "${runs[@]}"
