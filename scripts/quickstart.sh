#!/usr/bin/env bash
# The main job on the embedded default: render a grid of toon portraits with their maps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/semedit world sample -n 8 --seed 0 -o out/toon_samples.png --overwrite
