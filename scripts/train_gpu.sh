#!/usr/bin/env bash
# Continue two toon-64 models side by side on one GPU, each inside a wall-clock budget:
#   the U-Net (from the committed weights, on the committed text encoder) and the CLIP's vision side
#   (text tower frozen, so the U-Net and ControlNets stay valid). Renders the caches it lacks first.
# Usage: bash scripts/train_gpu.sh OUT_DIR [END_SECONDS]
# Each model trains for the time left until END_SECONDS after the start (default 540), less 75 s for
# loading, evaluating and saving (`--time-budget`). Writes OUT_DIR/unet.tar and OUT_DIR/clip.tar
# (fp16 weights, loss log, train config, report) and the two logs.
set -u
out=${1:?usage: bash scripts/train_gpu.sh OUT_DIR [END_SECONDS]}
end=$(( $(date +%s) + ${2:-540} ))
minutes_left() { python3 -c "print(max(0.2, ($end - $(date +%s) - 75) / 60))"; }
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
workers=${WORKERS:-$(nproc)}
batch=${BATCH:-256}
family=src/semedit/models/toon64
stamp() { echo "[$(date +%T)] $*"; }

# the caches of `semedit train data` (same counts and seeds); the CLIP needs no diptychs, so it starts first
stamp "rendering train + held-out caches ($workers workers)"
$py -c "from semedit.models.data import RenderCache as R
R.build('runs/cache/train', 40000, seed=1, workers=$workers)
R.build('runs/cache/heldout', 2000, seed=2, workers=$workers)"

clip_min=$(minutes_left)
stamp "clip: vision side, $clip_min min"
$py -m semedit.cli train clip --init-from $family/clip --freeze-text-tower --image-attribute-weight 1 \
    --every-value-negatives --no-text-encoder --steps 100000 --batch-size "$batch" --lr 2.5e-4 \
    --time-budget "$clip_min" \
    --run-dir runs/gpu_clip --out "$out/clip_weights" > "$out/clip.log" 2>&1 &
clip_pid=$!

stamp "rendering diptych cache"
$py -c "from semedit.models.data import PairCache; PairCache.build('runs/cache/pairs', 10000, seed=3, workers=$workers)"
unet_min=$(minutes_left)
stamp "unet: $unet_min min"
$py -m semedit.cli train unet --init-from $family/unet --steps 100000 --batch-size "$batch" --lr 3e-4 \
    --time-budget "$unet_min" --seed 3 --run-dir runs/gpu_unet --out "$out/unet_weights" > "$out/unet.log" 2>&1
stamp "unet exited with $?"
wait $clip_pid
stamp "clip exited with $?"

for m in unet clip; do
    cp runs/gpu_$m/log.jsonl runs/gpu_$m/train_config.json runs/gpu_$m/report.json "$out/${m}_weights/" 2>/dev/null
    tar cf "$out/$m.tar" -C "$out" "${m}_weights" && rm -rf "${out:?}/${m}_weights"
done
stamp "done"; ls -la "$out"
