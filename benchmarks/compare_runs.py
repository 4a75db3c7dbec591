"""Are two `semedit bench` runs the same? Every kept output bit for bit, and every figure of results.json
except wall time and memory (which vary from run to run).

    python benchmarks/compare_runs.py RUN_A RUN_B      # exit 0: identical; 1: they differ
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

TIMING_KEYS = {"seconds", "peak_memory_mib", "wall_seconds"}


def _without_timing(x):
    if isinstance(x, dict):
        return {k: _without_timing(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [_without_timing(v) for v in x]
    return x


def compare(a: str, b: str) -> list[str]:
    """Lines describing every difference (none: the runs agree)."""
    out = []
    oa, ob = np.load(f"{a}/outputs.npz"), np.load(f"{b}/outputs.npz")
    if sorted(oa.files) != sorted(ob.files):
        out.append(f"different outputs kept: {sorted(set(oa.files) ^ set(ob.files))}")
    same = sorted(set(oa.files) & set(ob.files))
    out += [f"output {k} differs" for k in same if not np.array_equal(oa[k], ob[k])]
    ra, rb = (_without_timing(json.load(open(f"{run}/results.json"))) for run in (a, b))
    out += [f"results.json: {k} differs" for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)]
    print(f"{len(same)} outputs compared bit for bit, {len(set(ra) | set(rb))} results.json entries compared "
          f"(wall time and memory left out): {len(out)} difference(s)")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a")
    p.add_argument("run_b")
    args = p.parse_args()
    diffs = compare(args.run_a, args.run_b)
    print("\n".join(diffs))
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
