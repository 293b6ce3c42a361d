"""How the main job's stages grow with its sizes: the pipeline at several multiples of the recipe's split sizes.

    python bench/scaling.py [--scales 0.25 0.5 1 2 4] [--recipe recipes/dpo_weak_rm.yaml]

Each scale k runs the recipe end to end in a fresh run directory with `data.max_rows` (weak_train, w2s_train, test)
multiplied by k and `data.size` raised so the splits can fill; everything else (models, epochs, batch sizes, bootstrap)
stays. Prints each stage's runtime (stage.json) per scale and its growth factor between consecutive scales; a factor
near the size factor means linear cost. Run by hand; the 1x point alone is the main job (~11 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
STAGES = ("data", "weak", "label", "student", "ceiling", "evaluate")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=str(REPO / "recipes" / "dpo_weak_rm.yaml"))
    p.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    a = p.parse_args()
    raw = yaml.safe_load(Path(a.recipe).read_text())
    limits = raw["data"]["max_rows"]
    fractions = raw["data"].get("fractions", {"weak_train": 0.4, "w2s_train": 0.35, "test": 0.25})
    rows = {}
    with tempfile.TemporaryDirectory(prefix="w2s-scaling-") as tmp:
        for k in a.scales:
            sized = {s: max(8, round(n * k)) for s, n in limits.items()}
            size = max(raw["data"].get("size", 1200), *(round(1.3 * n / fractions[s]) for s, n in sized.items()))
            args = [f"data.max_rows.{s}={n}" for s, n in sized.items()] + [f"data.size={size}",
                    f"run.output_dir={tmp}", f"run.name=scale-{k:g}", "tracking.report_to=[]"]  # fmt: skip
            start = time.perf_counter()
            out = subprocess.run([sys.executable, str(REPO / "w2s_trl" / "train.py"), a.recipe, *args],
                                 capture_output=True, text=True)  # fmt: skip
            wall = time.perf_counter() - start
            if out.returncode != 0:
                print(f"scale {k:g}: failed: {out.stderr.strip().splitlines()[-1:]}")
                return 1
            root = Path(tmp) / f"scale-{k:g}"
            times = {s: json.loads((root / s / "stage.json").read_text())["runtime_s"] for s in STAGES
                     if (root / s / "stage.json").exists()}  # fmt: skip
            rows[k] = {**times, "wall": wall, "sizes": sized}
            print(f"scale {k:g} (weak_train {sized['weak_train']}, w2s_train {sized['w2s_train']}, test "
                  f"{sized['test']}): wall {wall:.0f} s; " + ", ".join(f"{s} {t:.0f} s" for s, t in times.items()),
                  flush=True)  # fmt: skip
    scales = sorted(rows)
    print(f"\n{'stage':<10}" + "".join(f"{f'{k:g}x s':>10}" for k in scales)
          + "".join(f"{f'{b:g}/{c:g}':>10}" for b, c in zip(scales[1:], scales)))
    for s in (*STAGES, "wall"):
        values = [rows[k].get(s) for k in scales]
        growth = [f"{y / x:.2f}x" if x and y else "-" for x, y in zip(values, values[1:])]
        print(f"{s:<10}" + "".join(f"{v:>10.0f}" if v is not None else f"{'-':>10}" for v in values)
              + "".join(f"{g:>10}" for g in growth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
