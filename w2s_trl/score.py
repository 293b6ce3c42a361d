"""Score a reward source on preference pairs (SCIENCE.md 6).

    python -m w2s_trl.score REWARD.yaml --data SOURCE [--split S] [--limit N] [--out FILE.json]

SOURCE is anything `data.source` takes: testbed:hh, a local JSONL/JSON/parquet file (TRL preference formats or
Anthropic HH raw), a dataset folder or a hub id. --split: one of weak_train / w2s_train / test (the protocol split,
by stable ids) or, for a hub dataset, the split to read. Prints and writes accuracy (ties count as wrong), the number
of ties, the mean margin, and per-section accuracy with the macro average over sections when rows carry a section or
category. A prompt longer than the reward model allows loses its oldest turns; a pair whose response alone does not fit
is left out and counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from w2s_trl.errors import W2SError, path_exists

SECTION_KEYS = ("section", "category")


def sections_of(rows: list[dict]) -> tuple[str | None, list[str] | None]:
    for key in SECTION_KEYS:
        values = [str(r.get(key, "unknown")) for r in rows]
        if any(v != "unknown" for v in values):
            return key, values
    return None, None


def format_summary(summary: dict, section_key: str | None) -> str:
    lines = [
        f"pairs: {summary['n']}   accuracy: {summary['accuracy']:.4f}   ties: {summary['ties']}   "
        f"mean margin: {summary['mean_margin']:.4f}"
    ]
    if "sections" in summary:
        lines.append(f"\n{section_key:<24} {'n':>6} {'accuracy':>9}")
        for name, info in summary["sections"].items():
            lines.append(f"{name:<24} {info['n']:>6} {info['accuracy']:>9.4f}")
        lines.append(f"{'(macro average)':<24} {len(summary['sections']):>6} {summary['macro_accuracy']:>9.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m w2s_trl.score", description=__doc__.split("\n\n")[0])
    p.add_argument("reward", help="reward specification YAML (reward/*.yaml)")
    p.add_argument("--data", required=True, help="testbed:hh, a local file or folder, or a hub dataset id")
    p.add_argument("--split", help="weak_train | w2s_train | test, or a hub split name (default: all rows)")
    p.add_argument("--limit", type=int, help="score the first N pairs only")
    p.add_argument("--out", help="write the summary (and per-pair scores) to this JSON file")
    p.add_argument("--size", type=int, default=1200, help="testbed:hh only: pairs generated before splitting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    a = p.parse_args(argv)
    if a.size <= 0:
        p.error(f"--size {a.size}: must be 1 or more (pairs generated for testbed:hh)")
    if a.limit is not None and a.limit <= 0:
        p.error(f"--limit {a.limit}: must be 1 or more (omit it to score every pair)")
    if a.out:  # checked before minutes of scoring, not after
        out = Path(a.out)
        if out.is_dir() or not out.parent.is_dir():
            p.error(f"--out {a.out}: " + ("is a directory; give a file name, e.g. scores.json" if out.is_dir() else
                                          f"folder {out.parent} does not exist"))
    if a.split is not None and not a.split.strip():
        p.error("--split is empty")
    from w2s_trl.cli import guarded

    return guarded(lambda: _score(a), a.debug)


def _score(a) -> int:
    from w2s_trl.data import SPLITS, load_source, split_rows
    from w2s_trl.metrics import pair_score_summary
    from w2s_trl.models import is_hub_spec
    from w2s_trl.recipe import SplitFractions, load_reward_spec

    try:
        spec = load_reward_spec(a.reward)
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        if not any(is_hub_spec(s) for s in spec.model_specs()) and (a.data == "testbed:hh" or path_exists(a.data)):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        protocol_split = a.split in SPLITS
        if a.split and not protocol_split and (a.data == "testbed:hh" or path_exists(a.data, "file")):
            raise W2SError(f"--split {a.split}: {a.data} has no splits of its own; use weak_train, w2s_train or test "
                           "(the protocol's splits), or omit --split to score every row")  # fmt: skip
        loaded = load_source(a.data, a.size, a.seed, ["helpful", "harmless"],
                             hub_split=a.split if a.split and not protocol_split else "train")  # fmt: skip
        rows = loaded.rows
        if protocol_split:
            rows = split_rows(rows, SplitFractions().model_dump(), {s: None for s in SPLITS}, a.seed)[a.split]
        if a.limit:
            rows = rows[: a.limit]
        from w2s_trl.rewards import build_reward_source
        from w2s_trl.truncation import TruncationCount

        count = TruncationCount("score")
        chosen, rejected = build_reward_source(spec).score_pairs(rows, count)
    except W2SError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kept = [i for i in range(len(rows)) if chosen[i] is not None and rejected[i] is not None]
    if not kept:  # no accuracy exists: say why, not "an empty set of pairs" from deep inside the metrics
        max_length = getattr(spec, "max_length", None)  # the spec's own limit (a reward model's), if it has one
        limit = f" ({max_length} tokens)" if isinstance(max_length, int) else ""
        print(f"error: all {len(rows)} pairs were left out: each has a response longer than the reward source "
              f"reads{limit}; score shorter responses, or raise {a.reward}'s max_length if the model allows more",
              file=sys.stderr)  # fmt: skip
        return 2
    if len(kept) < len(rows):
        print(f"left out {len(rows) - len(kept)} pairs whose response alone is longer than the model allows")
    rows, chosen, rejected = [rows[i] for i in kept], [chosen[i] for i in kept], [rejected[i] for i in kept]
    section_key, sections = sections_of(rows)
    summary = pair_score_summary(chosen, rejected, sections)
    summary.update(reward=str(a.reward), data=a.data, split=a.split, section_key=section_key,
                   source=loaded.summary() | {"rows": len(loaded.rows)}, truncation=count.as_dict())  # fmt: skip
    print(format_summary(summary, section_key))
    if a.out:
        pairs = [{"id": r["id"], "chosen_score": c, "rejected_score": x} for r, c, x in zip(rows, chosen, rejected)]
        Path(a.out).write_text(json.dumps({**summary, "pairs": pairs}, indent=2) + "\n")
        print(f"\nwritten to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
