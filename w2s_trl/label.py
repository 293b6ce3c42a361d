"""Stage `label`: the weak reward model labels `w2s_train` pairs (SCIENCE.md 1).

For a source pair (a, b) = (GT chosen, GT rejected): delta = r_w(x, a) - r_w(x, b). The labelled row puts the weak
model's preferred response in `chosen` (a if delta > 0, else b: a tie counts as a wrong order) and keeps
  p_w          = weak probability that the labelled chosen beats the labelled rejected = sigma(|delta|) (0.5 on a tie)
  gt_label     = 1 if the labelled chosen is the ground-truth chosen, else 0
  weak_correct = gt_label == 1
  weak_margin  = r_w(labelled chosen) - r_w(labelled rejected) = |delta|
"""

from __future__ import annotations

from w2s_trl.metrics import sigmoid


def weak_label_rows(rows: list[dict], reward_gt_chosen: list[float], reward_gt_rejected: list[float]) -> list[dict]:
    """Pure: reorder each pair by the weak rewards and attach the weak-label columns."""
    if not (len(rows) == len(reward_gt_chosen) == len(reward_gt_rejected)):
        raise ValueError("rows and rewards must have the same length")
    out = []
    for row, ra, rb in zip(rows, reward_gt_chosen, reward_gt_rejected):
        delta = ra - rb
        keep = delta > 0
        labelled = dict(row)
        if not keep:
            labelled["chosen"], labelled["rejected"] = row["rejected"], row["chosen"]
        labelled.update(
            p_w=sigmoid(abs(delta)),
            gt_label=int(keep),
            weak_correct=bool(keep),
            weak_margin=abs(delta),
        )
        out.append(labelled)
    return out
