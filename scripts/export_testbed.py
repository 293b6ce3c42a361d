"""Write testbed:hh as a real-data-shaped file: Anthropic HH raw transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ..."),
long multi-turn histories, and a few malformed rows of the kinds real sets carry (a pair whose transcripts differ
before the final turn, a missing side, identical sides, an empty response).

    python scripts/export_testbed.py --out runs/hh_long.jsonl --size 2400 --history 6 14 --malformed 0.01
    accelerate launch w2s_trl/train.py recipes/dpo_weak_rm_long.yaml data.source=runs/hh_long.jsonl

The file carries no ids, objectives or groups, as a real HH file would not; the pipeline derives them (content ids,
prompt groups), so the run exercises exactly the path real data takes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def hh_transcript(messages: list[dict]) -> str:
    names = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{names[m['role']]}: {m['content']}" for m in messages)


def malformed(record: dict, kind: int) -> dict:
    """One of the defects real preference sets carry."""
    if kind == 0:  # the rejected transcript differs before its final turn
        return {**record, "rejected": record["rejected"].replace("\n\nHuman: ", "\n\nHuman: (edited) ", 1)}
    if kind == 1:  # a missing side
        return {"chosen": record["chosen"]}
    if kind == 2:  # identical sides
        return {**record, "rejected": record["chosen"]}
    head, _, _ = record["chosen"].rpartition("\n\nAssistant: ")  # an empty final response
    return {**record, "chosen": head + "\n\nAssistant: "}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=2400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history", type=int, nargs=2, default=(6, 14), metavar=("MIN", "MAX"),
                   help="neutral exchanges before each prompt")  # fmt: skip
    p.add_argument("--malformed", type=float, default=0.01, help="share of rows made malformed")
    p.add_argument("--objectives", nargs="+", default=["helpful", "harmless"])
    a = p.parse_args(argv)

    from w2s_trl.testbed import TestbedOptions, generate_testbed

    rows = generate_testbed(a.size, a.seed, a.objectives, TestbedOptions(history_turns=tuple(a.history)))
    rng = random.Random(a.seed)
    bad = set(rng.sample(range(len(rows)), round(a.malformed * len(rows))))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        for i, r in enumerate(rows):
            record = {"chosen": hh_transcript(r["prompt"] + r["chosen"]),
                      "rejected": hh_transcript(r["prompt"] + r["rejected"])}  # fmt: skip
            if i in bad:
                record = malformed(record, i % 4)
            fh.write(json.dumps(record) + "\n")
    print(f"wrote {len(rows)} rows ({len(bad)} malformed) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
