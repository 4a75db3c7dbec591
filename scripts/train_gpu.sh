#!/usr/bin/env bash
# Continue three toon-64 models side by side on one GPU, each inside a wall-clock budget: the U-Net
# (from the committed weights, on the committed text encoder), the CLIP's vision side (text tower frozen,
# so the U-Net and ControlNets stay valid) and the evaluator. Renders the caches it lacks first.
# Usage: bash scripts/train_gpu.sh OUT_DIR [END_SECONDS]
# Each model trains for the time left until END_SECONDS after the start (default 540), less 75 s for
# loading, evaluating and saving (`--time-budget`); run again on the same machine, each resumes from its
# checkpoint. Writes OUT_DIR/{unet,clip,evaluator}.tar (fp16 weights, loss log, train config, report)
# and the logs. Learning rates: U_LR, CLIP_LR, EVAL_LR; U_FACE: the U-Net's --face-loss-weight (default 0).
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
# train PART ARGS...: `semedit train PART ARGS` from the family's weights, in the background, logging to OUT/PART.log
train() {
    local part=$1; shift
    local minutes; minutes=$(minutes_left)
    stamp "$part: $minutes min"
    $py -m semedit.cli train "$part" --init-from "$family/$part" --steps 100000 --batch-size "$batch" \
        --time-budget "$minutes" --run-dir "runs/gpu_$part" --out "$out/${part}_weights" "$@" > "$out/$part.log" 2>&1 &
    pids="${pids:-} $!"
}

# the caches of `semedit train data` (same counts and seeds); only the U-Net needs the diptychs, so it starts last
stamp "rendering train + held-out caches ($workers workers)"
$py -c "from semedit.training.data import RenderCache as R
R.build('runs/cache/train', 40000, seed=1, workers=$workers)
R.build('runs/cache/heldout', 2000, seed=2, workers=$workers)"

train clip --freeze-text-tower --image-attribute-weight 1 --every-value-negatives --no-text-encoder --lr "${CLIP_LR:-1.5e-4}"
train evaluator --lr "${EVAL_LR:-1e-3}" --seed 4
stamp "rendering diptych cache"
$py -c "from semedit.training.data import PairCache; PairCache.build('runs/cache/pairs', 10000, seed=3, workers=$workers)"
train unet --lr "${U_LR:-2e-4}" --seed 4 --face-loss-weight "${U_FACE:-0}"
for pid in $pids; do wait "$pid"; stamp "pid $pid exited with $?"; done

for m in unet clip evaluator; do
    cp runs/gpu_$m/log.jsonl runs/gpu_$m/train_config.json runs/gpu_$m/report.json "$out/${m}_weights/" 2>/dev/null
    tar cf "$out/$m.tar" -C "$out" "${m}_weights" && rm -rf "${out:?}/${m}_weights"
done
stamp "done"; ls -la "$out"
