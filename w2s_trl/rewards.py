"""Reward sources, one interface (CONVENTIONS.md 6).

Every source is a TRL-style callable `f(prompts, completions, **columns) -> list[float]` (so online RL can take it
unchanged) and scores preference pairs in one batched call (`score_pairs`). Built from a reward specification
(`reward/*.yaml` or inline in a recipe) by `build_reward_source`.

- `reward_model`: a sequence classifier with one output (the weak RM).
- `density_ratio` (SCIENCE.md 3): r(x, y) = logp_S(y | c(x)) - logp_W(y | c(x)), normalised by `sum` (default) or
  `mean` (each logp over its own response-token count). c(x) may add a criteria system prompt chosen by the prompt's
  domain (from a router) and k in-context exemplars, identical for S and W. Pair forms:
    models   : two causal LMs, each with its own tokenizer and chat template;
    adapter  : S = base + LoRA adapter, W = the same base with the adapter disabled (one model in memory);
    personas : one model under an aligned (S) and an unaligned (W) system prompt: the one form where S and W see
               different contexts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from w2s_trl.recipe import DensityRatioSpec, RewardModelSpec, RewardSpec
from w2s_trl.scoring import Messages

# ----------------------------------------------------------------------------------------------------------------------
# Inputs in TRL's two formats -> messages


def as_prompt(prompt) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def as_completion(completion) -> Messages:
    return [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)


class RewardSource:
    """Base class: subclasses implement `score(prompts, completions)` on message lists."""

    name = "reward"

    def score(self, prompts: Sequence[Messages], completions: Sequence[Messages], ids: Sequence[str] | None = None,
              count=None, partners: Sequence[Messages] | None = None) -> list[float | None]:  # fmt: skip
        """One reward per (prompt, completion); None where the completion alone does not fit the model (the prompt
        is cut from the left otherwise; `count`, a truncation.TruncationCount, records both). `partners`: per row,
        the other response of its pair; the prompt is then cut so that both fit (one prompt for both sides)."""
        raise NotImplementedError

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        return self.score([as_prompt(p) for p in prompts], [as_completion(c) for c in completions])

    def score_pairs(self, rows: Sequence[dict], count=None) -> tuple[list[float | None], list[float | None]]:
        """r(x, chosen) and r(x, rejected) for preference rows, in one batched call."""
        prompts = [r["prompt"] for r in rows]
        names = [str(r.get("id", i)) for i, r in enumerate(rows)]
        ids = [f"{n}/chosen" for n in names] + [f"{n}/rejected" for n in names]
        chosen, rejected = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
        # partners: a pair's two sides are cut to one prompt, so its margin compares responses, not contexts
        scores = self.score(prompts + prompts, chosen + rejected, ids, count, partners=rejected + chosen)
        return scores[: len(rows)], scores[len(rows) :]


class RewardModelSource(RewardSource):
    name = "reward_model"

    def __init__(self, spec: RewardModelSpec, model_path: str | None = None, max_length: int | None = None):
        from w2s_trl.models import load_reward_model, model_limit

        self.spec = spec
        self.model, self.tokenizer = load_reward_model(model_path or spec.model, spec.trust_remote_code)
        # `auto` resolves from the data (pipeline); scored alone, the model's own limit
        self.max_length = max_length or (spec.max_length if spec.max_length != "auto" else model_limit(self.model))

    def score(self, prompts, completions, ids=None, count=None, partners=None):
        from w2s_trl.scoring import reward_scores

        return reward_scores(self.model, self.tokenizer, prompts, completions, self.spec.score_batch_size,
                             self.max_length, "reward model", ids=ids, count=count, partners=partners)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Density ratio: contexts, routers, the source


def load_exemplars(path: Path) -> list[dict]:
    """An exemplar file: YAML list of {prompt, good, bad}."""
    import yaml

    from w2s_trl.errors import RecipeError

    items = yaml.safe_load(Path(path).read_text()) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) and {"prompt", "good", "bad"} <= set(i) for i in items):
        raise RecipeError(f"{path}: expected a YAML list of mappings with keys prompt, good, bad")
    return items


def render_exemplars(items: list[dict]) -> str:
    blocks = [f"Request: {e['prompt']}\nGood answer: {e['good']}\nBad answer: {e['bad']}" for e in items]
    return "Examples of good and bad answers:\n\n" + "\n\n".join(blocks)


def build_context(prompt: Messages, parts: Sequence[str]) -> Messages:
    """c(x): the prompt with the given system text parts (persona, criteria, exemplars) in front."""
    parts = [p.strip() for p in parts if p and p.strip()]
    if not parts:
        return list(prompt)
    if prompt and prompt[0]["role"] == "system":
        parts.append(prompt[0]["content"])
        prompt = prompt[1:]
    return [{"role": "system", "content": "\n\n".join(parts)}] + list(prompt)


def last_user_text(prompt: Messages) -> str:
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else ""


class KeywordRouter:
    """The first domain (in spec order) with a keyword in the last user turn (whole words, any case)."""

    def __init__(self, keywords: dict[str, list[str]], default: str):
        self.default = default
        self.patterns = [
            (domain, re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE))
            for domain, words in keywords.items()
            if words
        ]

    def route(self, prompts: Sequence[Messages]) -> list[str]:
        out = []
        for p in prompts:
            text = last_user_text(p)
            out.append(next((d for d, pat in self.patterns if pat.search(text)), self.default))
        return out


class PromptedRouter:
    """Asks a causal LM to name the domain; an answer naming no known domain falls back to the default."""

    def __init__(self, model_spec: str, domains: list[str], default: str, batch_size: int = 16):
        from w2s_trl.models import load_causal_lm, load_tokenizer

        self.model = load_causal_lm(model_spec)
        self.tokenizer = load_tokenizer(model_spec, padding_side="left")
        self.domains, self.default, self.batch_size = domains, default, batch_size

    def question(self, prompt: Messages) -> Messages:
        return [{"role": "user", "content": (
            f"Which category fits this request best: {', '.join(self.domains)}? Answer with the category name only.\n\n"
            f"Request: {last_user_text(prompt)}"
        )}]  # fmt: skip

    def parse(self, answer: str) -> str:
        found = [(answer.lower().find(d.lower()), d) for d in self.domains if d.lower() in answer.lower()]
        return min(found)[1] if found else self.default

    def route(self, prompts: Sequence[Messages]) -> list[str]:
        import torch

        from w2s_trl.scoring import render

        out = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [render(self.tokenizer, self.question(p), add_generation_prompt=True)
                     for p in prompts[start : start + self.batch_size]]  # fmt: skip
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=8, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)  # fmt: skip
            answers = self.tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out += [self.parse(a) for a in answers]
        return out


class NoRouter:
    def __init__(self, default: str):
        self.default = default

    def route(self, prompts: Sequence[Messages]) -> list[str]:
        return [self.default] * len(prompts)


def build_router(spec: DensityRatioSpec):
    r = spec.router
    if r.type == "keywords":
        return KeywordRouter(r.keywords, r.default)
    if r.type == "prompted":
        domains = sorted(set(spec.criteria) | set(spec.exemplars) | set(r.keywords) | {r.default})
        return PromptedRouter(r.model, domains, r.default)
    return NoRouter(r.default)


class DensityRatioSource(RewardSource):
    name = "density_ratio"

    def __init__(self, spec: DensityRatioSpec):
        import contextlib

        from w2s_trl.models import load_causal_lm, load_tokenizer
        from w2s_trl.scoring import autocast_for

        self.spec = spec
        self.router = build_router(spec)
        self.criteria = {d: Path(p).read_text() for d, p in spec.criteria.items()}
        self.exemplars = {d: load_exemplars(Path(p))[: spec.k] for d, p in spec.exemplars.items()} if spec.k else {}
        self.autocast = autocast_for(spec.precision)
        self.persona = {"strong": "", "weak": ""}
        self.side_context = {"strong": contextlib.nullcontext, "weak": contextlib.nullcontext}
        if spec.pair == "models":
            self.strong = load_causal_lm(spec.strong.model, trust_remote_code=spec.strong.trust_remote_code)
            self.strong_tok = load_tokenizer(spec.strong.model, spec.strong.trust_remote_code)
            if spec.weak.model == spec.strong.model and spec.weak.trust_remote_code == spec.strong.trust_remote_code:
                self.weak, self.weak_tok = self.strong, self.strong_tok  # one copy in memory
            else:
                self.weak = load_causal_lm(spec.weak.model, trust_remote_code=spec.weak.trust_remote_code)
                self.weak_tok = load_tokenizer(spec.weak.model, spec.weak.trust_remote_code)
        elif spec.pair == "adapter":
            from peft import PeftModel

            base = load_causal_lm(spec.base)
            self.strong = self.weak = PeftModel.from_pretrained(base, spec.adapter)
            self.strong_tok = self.weak_tok = load_tokenizer(spec.base)
            self.side_context["weak"] = self.strong.disable_adapter  # W = the same weights, adapter disabled
        else:  # personas
            self.strong = self.weak = load_causal_lm(spec.model)
            self.strong_tok = self.weak_tok = load_tokenizer(spec.model)
            self.persona = {"strong": Path(spec.strong_system).read_text(), "weak": Path(spec.weak_system).read_text()}

    def contexts(self, prompts: Sequence[Messages], side: str, domains: Sequence[str] | None = None) -> list[Messages]:
        """c(x) for one side; identical for S and W except in the personas form."""
        domains = self.router.route(prompts) if domains is None else domains
        out = []
        for prompt, domain in zip(prompts, domains):
            shots = self.exemplars.get(domain)
            parts = [self.persona[side], self.criteria.get(domain, ""), render_exemplars(shots) if shots else ""]
            out.append(build_context(prompt, parts))
        return out

    def side_logprobs(self, prompts, completions, side: str, domains=None, ids=None, count=None, partners=None):
        """logp of each completion under one side; a context longer than the side's model allows loses its oldest
        turns (the system text of c(x) is kept until last), never the completion."""
        from w2s_trl.models import model_limit
        from w2s_trl.scoring import response_logprobs

        model, tok = (self.strong, self.strong_tok) if side == "strong" else (self.weak, self.weak_tok)
        with self.side_context[side]():
            contexts = self.contexts(prompts, side, domains)
            return response_logprobs(model, tok, contexts, completions, self.spec.score_batch_size, ids=ids,
                                     desc=f"density ratio ({side})", autocast_dtype=self.autocast,
                                     max_length=model_limit(model), count=count, partners=partners)  # fmt: skip

    def score(self, prompts, completions, ids=None, count=None, partners=None):
        domains = self.router.route(prompts)  # once: both sides see the same criteria and exemplars
        s_sum, s_n = self.side_logprobs(prompts, completions, "strong", domains, ids, count, partners)
        w_sum, w_n = self.side_logprobs(prompts, completions, "weak", domains, ids, partners=partners)
        return density_ratio(s_sum, s_n, w_sum, w_n, self.spec.normalize)


def density_ratio(s_sum: Sequence[float], s_n: Sequence[int], w_sum: Sequence[float], w_n: Sequence[int],
                  normalize: str) -> list[float]:  # fmt: skip
    """r = logp_S - logp_W (sum), or each divided by its own response-token count (mean); None where either side
    could not score the row."""
    out = []
    for s, ns, w, nw in zip(s_sum, s_n, w_sum, w_n):
        if s is None or w is None:
            out.append(None)
        else:
            out.append(s / ns - w / nw if normalize == "mean" else s - w)
    return out


def build_reward_source(spec: RewardSpec, model_path: str | None = None, max_length: int | None = None) -> RewardSource:
    """A reward source from its specification; `model_path` replaces a reward model's weights (a trained weak RM),
    `max_length` its resolved token budget (`max_length: auto` resolved from the data)."""
    if isinstance(spec, DensityRatioSpec):
        return DensityRatioSource(spec)
    return RewardModelSource(spec, model_path, max_length)
