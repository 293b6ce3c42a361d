"""Randomized kill -9 / resume check of the smoke pipeline (run by hand; tests/test_pipeline.py has fixed points).

    python bench/kill_resume.py --trials 10 --kills 4 [--seed 0]

One uninterrupted run gives the reference metrics. Each trial then starts the same run, kills its process group with
SIGKILL after a random delay (uniform over the reference's wall time, so kills land in every stage and inside saves),
`--kills` times, restarting after each, and finally lets it finish. A trial passes when the final metrics equal the
reference's (runtime fields aside) and no stage that was complete before a kill was rewritten. Prints one line per
trial and a summary; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "dpo_weak_rm.yaml"


def command(out: Path) -> list[str]:
    return [sys.executable, str(REPO / "w2s_trl" / "train.py"), str(RECIPE), "--smoke", f"run.output_dir={out}",
            "tracking.report_to=[]", "align.args.max_steps=4"]  # fmt: skip


def metrics(root: Path) -> dict:
    m = json.loads((root / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in ("runtime_s", "cached_stages", "run")}


def stage_records(root: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in root.glob("*/stage.json")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--kills", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="w2s-kill-") as tmp:
        ref_out = Path(tmp) / "reference"
        start = time.perf_counter()
        subprocess.run(command(ref_out), check=True, capture_output=True)
        wall = time.perf_counter() - start
        reference = metrics(ref_out / "dpo_weak_rm-smoke")
        print(f"reference run: {wall:.1f}s")
        failures = 0
        for trial in range(a.trials):
            out = Path(tmp) / f"trial{trial}"
            root = out / "dpo_weak_rm-smoke"
            delays, problems = [], []
            for _ in range(a.kills):
                before = stage_records(root)
                delay = rng.uniform(0.5, wall)
                proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)  # fmt: skip
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                delays.append(round(delay, 1))
                rewritten = [s for s, r in before.items() if stage_records(root).get(s) != r]
                if rewritten:
                    problems.append(f"complete stages rewritten: {rewritten}")
            done = subprocess.run(command(out), capture_output=True, text=True)
            if done.returncode != 0:
                problems.append(f"final run failed: {done.stderr.strip().splitlines()[-1:]}")
            elif metrics(root) != reference:
                problems.append("metrics differ from the uninterrupted run")
            failures += bool(problems)
            print(f"trial {trial}: kills after {delays} s -> {'OK' if not problems else '; '.join(problems)}", flush=True)
        print(f"{a.trials - failures}/{a.trials} trials resumed to the reference metrics")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
