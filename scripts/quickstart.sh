#!/usr/bin/env bash
# The main job on the embedded default: a real edit of the example toon shipped with the package
# (ITO, text edit "red hair", on toon-64), with its mask and guidance image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/semedit edit ito src/semedit/examples/toon.png --set hair_colour=red -o out/edited.png \
  --save-intermediates --overwrite
