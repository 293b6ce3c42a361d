"""Stage `align` (student and ceiling): preference-train the strong model with LoRA through TRL.

- `dpo`: `trl.DPOTrainer`; the reference is the base model with the LoRA adapter disabled (SCIENCE.md 5).
- `simpo`: `trl.experimental.cpo.CPOTrainer` with loss_type="simpo", cpo_alpha=0.0, the recipe's beta and simpo_gamma
  (the absolute margin gamma): loss = -log sigma(beta * (mean_logp(y_w) - mean_logp(y_l)) - gamma). Reference-free.
The student trains on the labels of `w2s_train`, the ceiling on its ground truth: same code, other rows.

Rows are cut to `max_length` before TRL sees them (prompt from the left, the same cut for chosen and rejected, never
the response: truncation.py): TRL's DPO keeps the start of a long sequence, which would cut the response away.
"""

from __future__ import annotations

from pathlib import Path

from w2s_trl.recipe import MIN_PROMPT_TOKENS, Recipe
from w2s_trl.rundir import StageWork

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


def lora_config(recipe: Recipe):
    """TRL's `get_peft_config` of the strong section (bias none, task CAUSAL_LM, rsLoRA/DoRA when asked)."""
    from trl import get_peft_config

    from w2s_trl.models import trl_model_config

    lora = recipe.strong.lora
    config = get_peft_config(trl_model_config(recipe.strong.quantization, lora))
    if isinstance(lora.target_modules, list):  # ModelConfig turns a one-item list into a string, which PEFT reads as
        config.target_modules = set(lora.target_modules)  # a regex on the full module path: matches nothing
    return config


# trainers that run peft's prepare_model_for_kbit_training on a quantized model themselves (TRL's CPOTrainer does;
# DPO, GRPO and RLOO in TRL 1.x do not): w2s-trl prepares the model for the others only, never twice
PREPARES_KBIT = ("simpo",)


def load_strong_base(recipe: Recipe, prepare: bool = True):
    from w2s_trl.models import load_causal_lm, load_tokenizer

    strong = recipe.strong
    model = load_causal_lm(strong.model, strong.quantization, strong.trust_remote_code)
    if strong.quantization.quantized and prepare:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model, load_tokenizer(strong.model, strong.trust_remote_code, chat_template=strong.chat_template)


# SimPO (TRL's CPO trainer) adds a BOS and an EOS token around what the chat template renders
TRAINER_EXTRA_TOKENS = {"dpo": 0, "simpo": 2}


def fit_training_rows(recipe: Recipe, rows: list[dict], tokenizer, max_length: int | None, stage: str):
    """Rows cut to fit `max_length` as the trainer will tokenize them, and their TruncationCount."""
    from w2s_trl.truncation import LeftCutter, TruncationCount, causal_length, fit_rows

    count = TruncationCount(f"{stage} (training rows)", max_length)
    if max_length is None:
        for r in rows:
            count.add(r["id"], False, False)
        return list(rows), count
    budget = max_length - TRAINER_EXTRA_TOKENS[recipe.align.trainer]
    return fit_rows(rows, causal_length(tokenizer), LeftCutter(tokenizer), budget, count), count


def make_trainer(recipe: Recipe, rows: list[dict], output_dir: str, run_name: str, model=None, tokenizer=None,
                 max_length: int | None = None, stage: str = "align", conflict_alpha: float = 0.0,
                 eval_rows: list[dict] | None = None, ref_cache_dir: Path | None = None):  # fmt: skip
    """The TRL trainer for `align.trainer`, ready to `.train()` (also used by bench/align_step.py), and the
    truncation count of its rows. `conflict_alpha` > 0 adds the explicit conflict term (training/trainers.py); rows
    then carry `gt_label` (1 where a row has none: ground-truth rows). `eval_rows` (test, ground truth): TRL evaluates
    on them every `logging_steps`, so `eval_rewards/*` curves (DPO: reward accuracy and margins) sit beside training's.
    DPO precomputes its reference log-probs (TRL's `precompute_ref_log_probs`, on unless the recipe says otherwise):
    one no-grad pass before training instead of a reference forward per step, and with `ref_cache_dir` a file cache
    that the run's other DPO trainings (student and ceiling: the same responses) read instead of recomputing."""
    from datasets import Dataset
    from transformers import set_seed

    from w2s_trl.trainer_args import build_trl_config, check_nothing_dropped
    from w2s_trl.training.fused_head import compact_trainer

    set_seed(recipe.run.seed)  # LoRA weights are initialised when the trainer wraps the model, before its own seeding
    if model is None:
        model, tokenizer = load_strong_base(recipe, prepare=recipe.align.trainer not in PREPARES_KBIT)
    rows, count = fit_training_rows(recipe, rows, tokenizer, max_length, stage)
    count.report()
    args = recipe.align.trl_args(max_length)
    if recipe.align.trainer == "dpo":
        args = {"precompute_ref_log_probs": True, **args}
    if recipe.align.length_grouping:
        from w2s_trl.trainer_args import length_grouped_training
        from w2s_trl.truncation import causal_length

        length_of = causal_length(tokenizer)
        lengths = [max(length_of(r["prompt"] + r["chosen"]), length_of(r["prompt"] + r["rejected"])) for r in rows]
        rows, args = length_grouped_training(rows, lengths, args, recipe.run.seed)
    columns = {k: (lambda r, k=k: r[k]) for k in PREFERENCE_COLUMNS}
    if conflict_alpha:
        columns["gt_label"] = lambda r: int(r.get("gt_label", 1))
    dataset = shared_dataset(Dataset.from_list([{k: get(r) for k, get in columns.items()} for r in rows]), output_dir)
    eval_dataset = None
    if eval_rows:
        eval_rows, _ = fit_training_rows(recipe, eval_rows, tokenizer, max_length, f"{stage} (evaluation rows)")
        eval_dataset = Dataset.from_list([{k: get(r) for k, get in columns.items()} for r in eval_rows])
        args = {"eval_strategy": "steps", **args}  # eval_steps: logging_steps unless the recipe sets it
    config = build_trl_config(recipe.align.trainer, args, output_dir, recipe.run.seed, recipe.tracking.report_to,
                              run_name, recipe.tracking.project)  # fmt: skip
    from w2s_trl.training.trainers import trainer_class, trainer_kwargs

    Trainer, extra = trainer_class(recipe.align.trainer, conflict_alpha), trainer_kwargs(conflict_alpha)
    precomputed = getattr(config, "precompute_ref_log_probs", False)  # a reference inside the loss would run unpacked
    if recipe.align.share_prompt and (recipe.align.trainer == "simpo" or recipe.align.trainer == "dpo" and precomputed):
        from w2s_trl.training.shared_prompt import with_shared_prompt

        Trainer = with_shared_prompt(Trainer)
    if ref_cache_dir is not None and precomputed:
        from w2s_trl.training.reference import cache_path, with_reference_cache

        identity = reference_identity(recipe, args, model)
        Trainer, extra = with_reference_cache(Trainer), {**extra, "ref_cache": (cache_path(ref_cache_dir, identity), identity)}
    # TRL's fused head scores every position off Triton; here only the labelled ones (reference pass and training)
    trainer = compact_trainer(lambda: Trainer(
        model=model, args=config, train_dataset=dataset, eval_dataset=eval_dataset, processing_class=tokenizer,
        peft_config=lora_config(recipe), **extra,
    ))  # fmt: skip
    check_nothing_dropped(trainer, len(rows), stage)
    return trainer, count


def reference_identity(recipe: Recipe, args: dict, model) -> dict:
    """What the reference log-probs depend on: the base weights (the hub commit they came from; a local folder's weight
    files by size and time, so a folder saved again in place is another reference), how they are loaded, and the
    trainer arguments (numeric mode, max_length, ld_alpha, batch sizes) and the forward's layout (share_prompt: the
    same values up to rounding); not the stage, row order or conflict term."""
    from w2s_trl.models import WEIGHT_SUFFIXES, embedded_revision, resolve_model_path

    strong = recipe.strong
    folder = Path(resolve_model_path(strong.model))
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.glob("*")
                   if f.suffix in WEIGHT_SUFFIXES) if folder.is_dir() else []  # fmt: skip
    return {"model": strong.model, "revision": embedded_revision(strong.model), "weights": files,
            "commit": getattr(getattr(model, "config", None), "_commit_hash", None),
            "chat_template": strong.chat_template, "quantization": strong.quantization.model_dump(),
            "trainer": recipe.align.trainer, "share_prompt": recipe.align.share_prompt, "args": args,
            "lm_head": "labelled positions"}  # fmt: skip


def shared_dataset(dataset, folder: str):
    """With several processes, the dataset saved once under the stage's work folder and loaded by every process: TRL's
    precomputed reference log-probs are a datasets cache file that every process opens, and an in-memory dataset
    caches into a temporary folder of its own process (the other processes then fail to find the file)."""
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes == 1:
        return dataset
    from datasets import load_from_disk

    path = Path(folder) / "train_dataset"
    if state.is_main_process:
        dataset.save_to_disk(str(path))
    state.wait_for_everyone()
    return load_from_disk(str(path))


def train_policy(recipe: Recipe, rows: list[dict], work: StageWork, run_name: str, max_length: int | None,
                 stage: str, conflict_alpha: float = 0.0, eval_rows: list[dict] | None = None,
                 ref_cache_dir: Path | None = None) -> dict:  # fmt: skip
    from w2s_trl.trainer_args import run_training

    if not rows:
        from w2s_trl.errors import W2SError

        raise W2SError(f"{stage}: no training rows (every weak label a tie or unscored?): see the label stage's "
                       "counts in the log and stage.json; a reward source that scores both sides alike labels nothing")
    trainer, count = make_trainer(recipe, rows, str(work.checkpoints), run_name, max_length=max_length, stage=stage,
                                  conflict_alpha=conflict_alpha, eval_rows=eval_rows, ref_cache_dir=ref_cache_dir)  # fmt: skip
    record = {**run_training(trainer, work, "adapter", run_name), "truncation": count.as_dict()}
    if hasattr(trainer, "ref_cache_hits"):
        record["reference_cache_hits"] = trainer.ref_cache_hits
    return record


def adapter_dir(stage_dir: Path) -> Path:
    return stage_dir / "adapter"


# ----------------------------------------------------------------------------------------------------------------------
# Online RL (SCIENCE.md 5): the student samples completions of w2s_train prompts and a reward source scores them


def online_budget(recipe: Recipe, max_length: int | None) -> tuple[int | None, int]:
    """(prompt token budget, completion tokens): prompt + completion fit the resolved `max_length`."""
    from w2s_trl.errors import W2SError

    completion = recipe.align.completion_tokens()
    if max_length is None:
        return None, completion
    if max_length - completion < MIN_PROMPT_TOKENS:
        raise W2SError(f"align.args.max_length {max_length} leaves {max_length - completion} tokens for the prompt "
                       f"after max_completion_length {completion}: raise max_length or lower max_completion_length")
    return max_length - completion, completion


def train_online_policy(recipe: Recipe, rows: list[dict], source, work: StageWork, run_name: str,
                        max_length: int | None, stage: str) -> dict:  # fmt: skip
    """GRPO / RLOO through TRL, or the project's PPO, on the distinct prompts of `rows`, rewarded by `source` (one
    reward function per objective). Writes the adapter, the training log (history.jsonl) and its reward curves."""
    import json

    from accelerate import PartialState
    from transformers import set_seed

    from w2s_trl.training.online import objective_rewards, online_prompts

    set_seed(recipe.run.seed)
    model, tok = load_strong_base(recipe)
    tok.padding_side = "left"  # generation continues every prompt at the same column
    budget, _ = online_budget(recipe, max_length)
    prompts, count = online_prompts(rows, tok, budget, stage)
    count.report()
    if not prompts:
        from w2s_trl.errors import W2SError

        raise W2SError(f"{stage}: no prompt fits the prompt budget of {budget} tokens: raise align.args.max_length")
    funcs, weights = objective_rewards(source)
    print(f"[w2s-trl] {stage}: {recipe.align.trainer} on {len(prompts)} prompts, rewards "
          + ", ".join(f"{f.__name__} x {w:g}" for f, w in zip(funcs, weights)), flush=True)  # fmt: skip
    state = PartialState()
    if recipe.align.trainer == "ppo":
        from w2s_trl.training.ppo import run_ppo

        if state.num_processes > 1:
            from w2s_trl.errors import W2SError

            raise W2SError("align.trainer ppo runs in one process (its loop is not distributed): launch it without "
                           "several processes, or use grpo / rloo, which TRL distributes")  # fmt: skip

        history = run_ppo(recipe, model, tok, prompts, funcs, weights, work, run_name, lora_config(recipe))
        result = {"global_step": len(history)}
    else:
        history, result = _train_trl_online(recipe, model, tok, prompts, funcs, weights, work, run_name)
    if state.is_main_process:
        from w2s_trl.plots import plot_online_history

        (work.out / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        plot_online_history(history, [f.__name__ for f in funcs], recipe.align.trainer, work.out / "reward_curve.png")
    return {**result, "prompts": len(prompts), "rewards": {f.__name__: w for f, w in zip(funcs, weights)},
            "truncation": count.as_dict()}  # fmt: skip


def _train_trl_online(recipe: Recipe, model, tok, prompts, funcs, weights, work: StageWork, run_name: str):
    from datasets import Dataset

    from w2s_trl.trainer_args import build_trl_config, run_training
    from w2s_trl.training.fused_head import compact_trainer
    from w2s_trl.training.trainers import trainer_class

    args = {**recipe.align.online_args(), "reward_weights": weights}  # the objectives' weights (recipe check)
    if "wandb" in recipe.tracking.report_to:
        args.setdefault("log_completions", True)  # a table of prompts, completions and rewards per logging step
    config = build_trl_config(recipe.align.trainer, args, str(work.checkpoints), recipe.run.seed,
                              recipe.tracking.report_to, run_name, recipe.tracking.project)  # fmt: skip
    dataset = Dataset.from_list([{"prompt": p["prompt"]} for p in prompts])
    trainer = compact_trainer(lambda: trainer_class(recipe.align.trainer)(
        model=model, reward_funcs=funcs, args=config, train_dataset=dataset, processing_class=tok,
        peft_config=lora_config(recipe)))  # fmt: skip
    result = run_training(trainer, work, "adapter", run_name)
    return [h for h in trainer.state.log_history], result
