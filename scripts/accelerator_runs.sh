#!/usr/bin/env bash
# The runs of one session on a lent accelerator (one GPU), inside a wall-clock budget:
#
#   bash scripts/accelerator_runs.sh path/to/mnist OUT_DIR [BUDGET_SECONDS=540]
#
# 1. The speed table: `experiments.benchmark` (the four article models, beside PyTorch
#    eager on the same device; both input modes where `--input` exists), alone on the
#    device.
# 2. Probes: three epochs each of the VAE and the IWAE (k = 50), run together, to size
#    their runs to what is left of the budget.
# 3. The VAE and the IWAE with `num_epochs` sized so (at most Burda et al.'s 3,280),
#    together on the one device (with DEEP_RECIPES=1, deep-autoencoder recipes too).
#    Every command is printed before it runs: each figure's reproduction is that line.
# 4. At the deadline whatever still trains is stopped, and a VAE/IWAE run without its
#    results is evaluated from its newest checkpoint (`experiments.evaluate_run`).
# 5. OUT_DIR gets logs.tar.gz, commands.txt, the benchmark's JSON and runs.tar.gz (each
#    run's results.json, metrics.jsonl, config.json and pictures; the VAE's and IWAE's
#    checkpoints too).
set -uo pipefail
data=${1:?usage: bash scripts/accelerator_runs.sh MNIST_DIR OUT_DIR [BUDGET_SECONDS]}
out=${2:?usage: bash scripts/accelerator_runs.sh MNIST_DIR OUT_DIR [BUDGET_SECONDS]}
budget=${3:-540}
start=$(date +%s)
runs=${RUNS_DIR:-/tmp/aejax_runs}
python=${PYTHON:-python3}
logs="$out/logs"
mkdir -p "$out" "$runs" "$logs"
export PYTHONUNBUFFERED=1
left() { echo $(( budget - ($(date +%s) - start) )); }
say() { echo "[$(( $(date +%s) - start ))s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$python" -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__)"

# 1. Speed, alone on the device (the default matmul precision, as a user gets it).
inputs=""
"$python" -m experiments.benchmark --helpfull 2>/dev/null | grep -q -- "--input" && inputs="--input=device,stream"
if [ -z "${SKIP_BENCHMARK:-}" ]; then  # SKIP_BENCHMARK=1: training only
say "benchmark"
# BENCHMARK_ARGS: e.g. "--models=vanilla --num_images=2000" for a dry run on a CPU.
( set -x; timeout 150 "$python" -m experiments.benchmark --data_dir="$data" \
    ${BENCHMARK_ARGS---compare=torch} $inputs --json="$out/benchmark.json" ) > "$logs/benchmark.log" 2>&1
say "benchmark: exit $?"; grep -v "^[IW][0-9]" "$logs/benchmark.log" | tail -30
fi

# Training: float32 matmuls at full precision, as on a CPU; several processes share the GPU.
export JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_MEM_FRACTION=0.1
train() {  # train NAME ARGS...: one CLI run into $runs/NAME, logged to $out/NAME.log;
  # run it in the background or a subshell (it execs)
  local name=$1; shift
  echo "python -m experiments.main --workdir=runs/$name $* --config.data_dir=path/to/mnist" \
      >> "$out/commands.txt"
  # exec: the background job is the python process itself, so a kill reaches it.
  exec "$python" -m experiments.main --workdir="$runs/$name" "$@" --config.data_dir="$data" \
      > "$logs/$name.log" 2>&1
}
seconds_per_epoch() {  # the median seconds of a run's epochs after the first, else $2
  "$python" -c "import json,statistics,sys; s=[json.loads(l)['seconds'] for l in open(sys.argv[1])][1:]; print(statistics.median(s))" "$1/metrics.jsonl" 2>/dev/null || echo "$2"
}

# 2. Probes.
say "probes"
VAE=(--config=experiments/configs/vae.py)
IWAE=(--config=experiments/configs/vae.py:iwae)
PROBE=(--config.num_epochs=3 --config.model.eval_nll_samples=10)
probes=()
train probe_vae "${VAE[@]}" "${PROBE[@]}" & probes+=($!)
train probe_iwae "${IWAE[@]}" "${PROBE[@]}" & probes+=($!)
for _ in $(seq 90); do [ -n "$(jobs -rp)" ] || break; sleep 1; done
kill -9 "${probes[@]}" 2>/dev/null; wait
# A probe that did not finish: a guess on the slow side.
vae_s=$(seconds_per_epoch "$runs/probe_vae" 0.5); iwae_s=$(seconds_per_epoch "$runs/probe_iwae" 2.0)
# The deep runs share the device for the first minute or two: leave a margin.
for_training=$(( $(left) - 75 ))
vae_epochs=$("$python" -c "print(max(10, min(3280, int($for_training * 0.75 / $vae_s))))")
iwae_epochs=$("$python" -c "print(max(10, min(3280, int($for_training * 0.75 / $iwae_s))))")
say "probe s/epoch: vae $vae_s, iwae $iwae_s; $for_training s to train: vae $vae_epochs epochs, iwae $iwae_epochs"

# 3. The runs.
say "training"
pids=()
train vae "${VAE[@]}" --config.num_epochs="$vae_epochs" --config.checkpoint_every=50 & pids+=($!)
train iwae "${IWAE[@]}" --config.num_epochs="$iwae_epochs" --config.checkpoint_every=50 & pids+=($!)
# Deep-autoencoder recipes only when asked (DEEP_RECIPES=1): on an H200, three of them
# beside the VAE and IWAE slowed the VAE's epoch from 0.087 s (the probe, two
# processes) to 0.41 s: each process's scan is latency-bound, and they take turns.
if [ -n "${DEEP_RECIPES:-}" ]; then
  # The weight decay named on each line: these were tried when the config's was 0.05.
  DEEP=(--config=experiments/configs/deep.py --config.checkpoint_every=50)
  train deep_e150 "${DEEP[@]}" --config.num_epochs=150 --config.weight_decay=0.05 & pids+=($!)
  train deep_e150_noise0.1 "${DEEP[@]}" --config.num_epochs=150 --config.weight_decay=0.05 \
      --config.corruption.name=gaussian --config.corruption.level=0.1 & pids+=($!)
  train deep_e300_wd0.1 "${DEEP[@]}" --config.num_epochs=300 --config.weight_decay=0.1 & pids+=($!)
fi

# 4. The deadline.
while [ "$(left)" -gt 45 ] && [ -n "$(jobs -rp)" ]; do sleep 5; done
if [ -n "$(jobs -rp)" ]; then
  say "deadline: stopping $(jobs -rp | wc -l) runs"; kill $(jobs -rp) 2>/dev/null; sleep 3
  kill -9 $(jobs -rp) 2>/dev/null
fi
wait
for name in vae iwae; do
  if [ ! -f "$runs/$name/results.json" ] && [ -d "$runs/$name/checkpoints" ]; then
    say "evaluating $name from its newest checkpoint"
    echo "python -m experiments.evaluate_run --workdir=runs/$name --data_dir=path/to/mnist" >> "$out/commands.txt"
    timeout 60 "$python" -m experiments.evaluate_run --workdir="$runs/$name" --data_dir="$data" \
        --json="$runs/$name/evaluate_run.json" > "$logs/${name}_evaluate.log" 2>&1
  fi
done

# 5. What comes back.
for run in "$runs"/*/; do
  "$python" - "$run" <<'EOF'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
lines = [json.loads(l) for l in open(run / "metrics.jsonl")] if (run / "metrics.jsonl").exists() else []
res = json.loads((run / "results.json").read_text()) if (run / "results.json").exists() else {}
ev = json.loads((run / "evaluate_run.json").read_text()) if (run / "evaluate_run.json").exists() else {}
mse = res.get("test", {}).get("mse")
print(run.name, "epochs", len(lines), "s/epoch", lines[-1]["seconds"] if lines else None,
      "test mse", mse, "sse/image", mse and mse * 784,
      "model_eval", res.get("model_eval") or ev.get("model_eval"))
EOF
done
tar -C "$runs" -czf "$out/runs.tar.gz" --exclude='probe_*' --exclude='*/checkpoints_corrupt' \
    --exclude='deep*/checkpoints' --exclude='*/tensorboard' .
tar -C "$out" -czf "$out/logs.tar.gz" logs && rm -rf "$logs"
ls -la "$out"; say "done"
