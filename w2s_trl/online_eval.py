"""What an online-RL student writes, before and after training (issue 9): completions sampled on `test` prompts from
the base and the student, judged by ground truth where a row allows it (judge.py) and scored by each objective of the
reward it trained on (weight-0 objectives too: what the student does to an objective it was not paid for). Every
number has its paired bootstrap 95% interval (the same resamples for both models), and the student - base difference
has one too.

Prompts: the distinct prompts of `test` (at most `evaluate.generations`, in a seeded order), cut from the left to the
training prompt budget. A prompt shared by several rows (a harmful request asked for both objectives) is sampled once
and judged by each of its rows: the same completion can be right for one objective and wrong for the other, and the
bootstrap resamples prompts, so rows that share a completion move together.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from w2s_trl.judge import is_refusal, judge_all, judge_kind
from w2s_trl.metrics import bootstrap_indices, cluster_resampled_mean, interval

MODELS = ("base", "student")


def pick_prompts(rows: Sequence[dict], limit: int, seed: int) -> list[str]:
    """`limit` distinct prompts of `rows` (their repr, a stable key), in a seeded order."""
    keys = sorted({repr(r["prompt"]) for r in rows})
    random.Random(seed).shuffle(keys)
    return keys[:limit]


def mean_interval(values: Sequence[float], clusters: Sequence[int], idx: np.ndarray, mask=None) -> dict:
    v = np.asarray(values, dtype=float)
    m = np.ones(len(v), bool) if mask is None else np.asarray(mask, bool)
    value = float(v[m].mean()) if m.any() else None
    return {**interval(value, cluster_resampled_mean(v, clusters, idx, m)), "n": int(m.sum())}


def paired(values: dict[str, Sequence[float]], clusters: Sequence[int], idx: np.ndarray, mask=None) -> dict:
    """Each model's mean with its interval and, when both are there, student - base on the same resamples."""
    block = {m: mean_interval(v, clusters, idx, mask) for m, v in values.items()}
    if "base" in values and "student" in values:
        diff = np.subtract(values["student"], values["base"])
        block["student - base"] = mean_interval(diff, clusters, idx, mask)
    return block


def judged_summary(rows: Sequence[dict], judged: dict[str, list], resamples: int, seed: int) -> dict:
    """Share of judged completions that are right, per model, objective and check, with intervals; rows no check can
    judge are counted, not scored. Resampled by prompt (rows sharing a prompt share its completion), paired."""
    kinds = [judge_kind(r) for r in rows]
    keep = [i for i, k in enumerate(kinds) if k is not None]
    out = {"rows": len(rows), "judged": len(keep), "by": {}}
    if not keep:
        return out
    prompt_of = {}
    clusters = [prompt_of.setdefault(repr(rows[i]["prompt"]), len(prompt_of)) for i in keep]
    idx = bootstrap_indices(len(prompt_of), resamples, seed)
    right = {m: np.array([bool(judged[m][i]) for i in keep], float) for m in judged}
    objective = [rows[i].get("objective") or "unknown" for i in keep]
    groups = {"all": None}
    groups.update({f"objective={o}": [x == o for x in objective] for o in sorted(set(objective))})
    groups.update({f"check={k}": [kinds[i] == k for i in keep] for k in sorted({kinds[i] for i in keep})})
    for name, mask in groups.items():
        out["by"][name] = paired(right, clusters, idx, mask)
    return out


def refusal_summary(texts: dict[str, list[str]], resamples: int, seed: int) -> dict:
    """Share of sampled completions that refuse (judge.is_refusal), per model and student - base, paired by prompt:
    what the judged accuracy of harmless rows rests on (a model that never refuses is right exactly on the benign
    prompts, whatever else it writes)."""
    refuses = {m: [float(is_refusal(t)) for t in v] for m, v in texts.items()}
    n = len(next(iter(refuses.values())))
    return paired(refuses, list(range(n)), bootstrap_indices(n, resamples, seed))


def reward_summary(rewards: dict[str, dict[str, list]], resamples: int, seed: int) -> dict:
    """{objective: {base, student, student - base, unscored}}: mean reward of the sampled completions, with
    intervals (resampled by prompt, paired), over the prompts where both completions could be scored."""
    out = {}
    for name, per_model in rewards.items():
        both = [i for i in range(len(per_model["base"])) if all(per_model[m][i] is not None for m in per_model)]
        values = {m: np.array([per_model[m][i] for i in both], float) for m in per_model}
        block = paired(values, list(range(len(both))), bootstrap_indices(len(both), resamples, seed))
        out[name] = {**block, "unscored": len(per_model["base"]) - len(both)}
    return out


def evaluate_generations(recipe, test: list[dict], adapter, source, max_length: int | None) -> tuple[dict, list]:
    """(metrics["online"], one record per (row, model) for generations.jsonl)."""
    from peft import PeftModel

    from w2s_trl.align import load_strong_base, online_budget
    from w2s_trl.annotate import sample
    from w2s_trl.training.online import objective_rewards, online_prompts

    e, seed = recipe.evaluate, recipe.run.seed
    budget, completion_tokens = online_budget(recipe, max_length)
    keys = set(pick_prompts(test, e.generations, seed))
    chosen = [r for r in test if repr(r["prompt"]) in keys]
    base, tok = load_strong_base(recipe)
    fitted, count = online_prompts(chosen, tok, budget, "evaluate (sampled completions' prompts)")
    count.report()
    cut = {repr(r["prompt"]): f["prompt"] for f in fitted for r in chosen if r["id"] == f["id"]}
    keys = sorted(cut)
    prompts = [cut[k] for k in keys]
    temperature = float(recipe.align.online_args().get("temperature", 1.0))

    def draw(model) -> list[str]:  # one completion per prompt, the same seed for every model, as in training
        out = []
        for i in range(0, len(prompts), e.batch_size):
            out += [s[0] for s in sample(model, tok, prompts[i : i + e.batch_size], 1, completion_tokens, temperature,
                                         1.0, seed + i, top_k=0)]  # fmt: skip
        return out

    print(f"[w2s-trl] evaluate: sampling {len(prompts)} test prompts from base and student", flush=True)
    texts = {"base": draw(base)}
    texts["student"] = draw(PeftModel.from_pretrained(base, str(adapter)))
    funcs, weights = objective_rewards(source)
    completions = {m: [[{"role": "assistant", "content": t}] for t in texts[m]] for m in MODELS}
    rewards = {f.__name__: {m: f.source(prompts, completions[m]) for m in MODELS} for f in funcs}  # None: unscored
    position = {k: i for i, k in enumerate(keys)}
    rows = [r for r in chosen if repr(r["prompt"]) in position]
    judged = {m: judge_all(rows, [texts[m][position[repr(r["prompt"])]] for r in rows]) for m in MODELS}
    records = []
    for r, verdicts in zip(rows, zip(*judged.values())):
        i = position[repr(r["prompt"])]
        for m, verdict in zip(MODELS, verdicts):
            records.append({"id": r["id"], "objective": r.get("objective"), "model": m, "completion": texts[m][i],
                            "check": judge_kind(r), "right": verdict,
                            **{f"reward/{name}": rewards[name][m][i] for name in rewards}})  # fmt: skip
    metrics = {
        "prompts": len(prompts),
        "prompt_truncation": count.as_dict(),
        "max_new_tokens": completion_tokens,
        "temperature": temperature,
        "seed": seed,
        "judged": judged_summary(rows, judged, e.bootstrap, e.bootstrap_seed),
        "refusals": refusal_summary(texts, e.bootstrap, e.bootstrap_seed),
        "rewards": reward_summary(rewards, e.bootstrap, e.bootstrap_seed),
        "reward_weights": dict(zip(rewards, weights)),
    }
    return metrics, records
