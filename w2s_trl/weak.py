"""Stage `weak`: train the weak reward model on `weak_train` ground truth with `trl.RewardTrainer`.

Rows are cut to `max_length` before TRL sees them (prompt from the left, never the response: truncation.py), so
RewardTrainer's own length filter, which drops longer rows silently, never fires; a row whose response alone is too
long is dropped and counted."""

from __future__ import annotations

from w2s_trl.recipe import RewardModelSpec
from w2s_trl.rundir import StageWork
from w2s_trl.scoring import reward_text
from w2s_trl.truncation import LeftCutter, TruncationCount, fit_prompt, reward_length


def reward_training_rows(tokenizer, rows: list[dict], max_length: int | None = None,
                         count: TruncationCount | None = None, columns: tuple[str, ...] = ()) -> list[dict]:  # fmt: skip
    """Implicit-prompt text pairs, rendered and cut exactly as `scoring.reward_scores` renders and cuts them (each
    text on its own: the reward model scores each response on its own), with the row's `columns` (gt_label, p_w)
    alongside."""
    length_of, cutter = reward_length(tokenizer), LeftCutter(tokenizer)
    out = []
    for r in rows:
        texts, truncated = {}, False
        for side in ("chosen", "rejected"):
            prompt = r["prompt"]
            if max_length is not None:
                prompt, cut = fit_prompt(length_of, cutter, r["prompt"], [r[side]], max_length)
                truncated |= cut
            texts[side] = None if prompt is None else reward_text(tokenizer, prompt + r[side])
        dropped = None in texts.values()
        if count is not None:
            count.add(r["id"], truncated, dropped)
        if not dropped:
            out.append({**texts, **{c: float(r.get(c, DEFAULTS[c])) for c in columns}})
    return out


DEFAULTS = {"gt_label": 1, "p_w": 1.0}  # a ground-truth row: chosen is the GT chosen, with certainty


def train_reward_model(spec: RewardModelSpec, rows: list[dict], work: StageWork, seed: int, report_to: list[str],
                       run_name: str, max_length: int, conflict_alpha: float = 0.0,
                       confidence: dict | None = None, project: str = "w2s-trl") -> dict:  # fmt: skip
    """Train, save to `work.out/model`, and return what stage.json should record. `conflict_alpha` adds the explicit
    conflict term (rows carry gt_label); `confidence` ({alpha_max, warmup_frac}) trains a reward-model student on the
    rows' soft weak labels p_w with the auxiliary confidence loss instead of Bradley-Terry."""
    from datasets import Dataset
    from transformers import set_seed
    from w2s_trl.models import load_reward_model
    from w2s_trl.training.trainers import trainer_class, trainer_kwargs
    from w2s_trl.trainer_args import build_trl_config, check_nothing_dropped, length_grouped_training, run_training

    set_seed(seed)  # the new reward head is initialised at load time
    model, tok = load_reward_model(spec.model, spec.trust_remote_code)
    count = TruncationCount("weak (reward-model training rows)", max_length)
    columns = ("p_w",) if confidence else ("gt_label",) if conflict_alpha else ()
    pairs = reward_training_rows(tok, rows, max_length, count, columns)
    count.report()
    if not pairs:
        from w2s_trl.errors import W2SError

        raise W2SError(f"{run_name}: no reward-model training rows: all {len(rows)} lost to max_length {max_length} "
                       "(a response alone longer than the window; ids above); raise the reward spec's max_length")
    args = {**spec.train, "max_length": max_length}
    if spec.length_grouping:  # a batch costs its longest text: random batches of 30- and 128-token texts pad most
        lengths = [max(len(tok(p["chosen"])["input_ids"]), len(tok(p["rejected"])["input_ids"])) for p in pairs]
        pairs, args = length_grouped_training(pairs, lengths, args, seed)
    config = build_trl_config("reward", args, str(work.checkpoints), seed, report_to, run_name, project)
    Trainer = trainer_class("reward", conflict_alpha, confidence=bool(confidence))
    trainer = Trainer(model=model, args=config, train_dataset=Dataset.from_list(pairs), processing_class=tok,
                      **trainer_kwargs(conflict_alpha, confidence))  # fmt: skip
    check_nothing_dropped(trainer, len(pairs), "weak")
    return {**run_training(trainer, work, "model", run_name), "truncation": count.as_dict()}
