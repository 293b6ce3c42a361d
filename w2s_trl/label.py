"""Stage `label`: the weak reward model labels `w2s_train` pairs (SCIENCE.md 1).

For a source pair (a, b) = (GT chosen, GT rejected): delta = r_w(x, a) - r_w(x, b). The labelled row puts the weak
model's preferred response in `chosen` (a if delta > 0, b if delta < 0) and keeps
  p_w          = weak probability that the labelled chosen beats the labelled rejected = sigma(|delta|)
  gt_label     = 1 if the labelled chosen is the ground-truth chosen, else 0
  weak_correct = gt_label == 1
  weak_margin  = r_w(labelled chosen) - r_w(labelled rejected) = |delta|
A tie (delta == 0, e.g. two texts the weak model reads as the same) carries no weak signal: it is left out of the
student's rows and counted (`weak_ties`), never ordered by ground truth or by a fixed flip. A pair the weak model
could not score (a response longer than its max_length) is left out and counted too.
"""

from __future__ import annotations

from w2s_trl.metrics import bootstrap_indices, interval, resampled_mean, sigmoid

LABEL_BOOTSTRAP = (2000, 0)  # resamples of the scored w2s_train pairs and their seed, for the labels' accuracy interval


def weak_label_rows(rows: list[dict], reward_gt_chosen: list, reward_gt_rejected: list) -> tuple[list[dict], dict]:
    """Pure: reorder each pair by the weak rewards, attach the weak-label columns, leave ties and unscored pairs
    out. Returns (labelled rows, summary); the labels' agreement with ground truth carries a bootstrap 95% interval
    over the scored pairs (`weak_label_accuracy_ci`)."""
    if not (len(rows) == len(reward_gt_chosen) == len(reward_gt_rejected)):
        raise ValueError("rows and rewards must have the same length")
    out, ties, unscored, right = [], [], [], []  # right: per scored pair, the weak order is ground truth's (tie: no)
    for row, ra, rb in zip(rows, reward_gt_chosen, reward_gt_rejected):
        if ra is None or rb is None:
            unscored.append(row["id"])
            continue
        delta = ra - rb
        if delta == 0:
            ties.append(row["id"])
            right.append(False)
            continue
        keep = delta > 0
        right.append(bool(keep))
        labelled = dict(row)
        if not keep:
            labelled["chosen"], labelled["rejected"] = row["rejected"], row["chosen"]
        labelled.update(p_w=sigmoid(abs(delta)), gt_label=int(keep), weak_correct=bool(keep), weak_margin=abs(delta))
        out.append(labelled)
    scored, correct = len(right), sum(right)
    ci = (interval(correct / scored, resampled_mean(right, bootstrap_indices(scored, *LABEL_BOOTSTRAP)))["ci"]
          if scored else None)  # fmt: skip
    summary = {
        "rows": len(rows),
        "labelled": len(out),
        "weak_ties": len(ties),
        "tie_examples": ties[:5],
        "unscored": len(unscored),
        "unscored_examples": unscored[:5],
        # as on test: a tie counts as wrong; and among the rows the student trains on
        "weak_label_accuracy": correct / scored if scored else None,
        "weak_label_accuracy_ci": ci,
        "weak_label_accuracy_labelled": correct / len(out) if out else None,
    }
    return out, summary


def accuracy_stat(summary: dict) -> dict:
    """The labels' agreement with ground truth as a statistic with its interval ({value, ci}), from a label summary
    (or the `labels` block of metrics.json)."""
    return {"value": summary.get("weak_label_accuracy"), "ci": summary.get("weak_label_accuracy_ci")}


def describe(summary: dict) -> str:
    from w2s_trl.report import fmt_interval

    acc_text = "none" if summary["weak_label_accuracy"] is None else fmt_interval(accuracy_stat(summary))
    line = (f"[w2s-trl] label: weak labels agree with ground truth on {acc_text} of {summary['rows'] - summary['unscored']}"
            f" scored w2s_train pairs (ties counted wrong); {summary['weak_ties']} ties left out"
            f"{' (e.g. ' + ', '.join(summary['tie_examples']) + ')' if summary['tie_examples'] else ''}; "
            f"{summary['unscored']} unscored left out; the student trains on {summary['labelled']} pairs")  # fmt: skip
    return line


def label_with_source(source, rows: list[dict], out_dir, max_length: int | None) -> dict:
    """Score `rows` with a reward source, write the labelled rows (`w2s_train.labelled.jsonl`), and return the stage
    record: the summary, truncation counts, and each objective's reward statistics when the source has several.
    Every objective's reward is kept on the labelled rows (`rewards`: {objective: [r(chosen), r(rejected)]}, in the
    labelled order)."""
    from pathlib import Path

    from w2s_trl.data import write_jsonl
    from w2s_trl.truncation import TruncationCount

    count = TruncationCount("label (weak scoring of w2s_train responses)",
                            max_length or getattr(source, "max_length", None))  # fmt: skip
    parts = source.score_pair_components(rows, count)
    labelled, summary = weak_label_rows(rows, *parts["total"])
    count.report()
    print(describe(summary), flush=True)
    components = {k: v for k, v in parts.items() if k != "total"}
    if components:
        index = {row["id"]: i for i, row in enumerate(rows)}
        for row in labelled:
            i, swapped = index[row["id"]], not row["gt_label"]
            row["rewards"] = {k: [c[i], r[i]][::-1] if swapped else [c[i], r[i]] for k, (c, r) in components.items()}
        summary["objectives"] = objective_summaries(rows, components)
    write_jsonl(Path(out_dir) / "w2s_train.labelled.jsonl", labelled)
    return {**summary, "truncation": count.as_dict()}


def objective_summaries(rows: list[dict], components: dict[str, tuple[list, list]]) -> dict:
    """Per objective: mean reward of the ground-truth chosen and rejected sides, and how often its reward orders a
    pair as the row's own objective's ground truth does (ties wrong)."""
    out = {}
    for name, (chosen, rejected) in components.items():
        pairs = [(c, r) for c, r in zip(chosen, rejected) if c is not None and r is not None]
        if not pairs:
            out[name] = {"n": 0}
            continue
        out[name] = {
            "n": len(pairs),
            "mean_chosen": sum(c for c, _ in pairs) / len(pairs),
            "mean_rejected": sum(r for _, r in pairs) / len(pairs),
            "agrees_with_gt": sum(c > r for c, r in pairs) / len(pairs),
        }
    return out
