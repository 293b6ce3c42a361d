"""Routers: pick a prompt's domain (which picks a criteria prompt and exemplars, SCIENCE.md 3): by keywords, by
asking a causal LM, or one fixed domain."""

from __future__ import annotations

import re
from typing import Literal, Sequence

from pydantic import Field, model_validator

from w2s_trl.models import check_model_spec
from w2s_trl.schema import Strict
from w2s_trl.scoring import Messages


class RouterSpec(Strict):
    """Picks the prompt's domain, which picks the criteria prompt and exemplars."""

    type: Literal["none", "keywords", "prompted"] = "none"
    default: str = Field("chat", description="domain when nothing matches (or the LLM's answer names no domain)")
    keywords: dict[str, list[str]] = Field(default_factory=dict, description="keywords router: domain -> words")
    model: str | None = Field(None, description="prompted router: the causal LM that names the domain")

    @model_validator(mode="after")
    def _needs(self) -> "RouterSpec":
        if self.type == "keywords" and not self.keywords:
            raise ValueError("router.type 'keywords' needs router.keywords (domain -> list of words)")
        if self.type == "prompted":
            if not self.model:
                raise ValueError("router.type 'prompted' needs router.model (a causal LM spec)")
            check_model_spec(self.model, kind="causal")
        return self



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


def build_router(r: RouterSpec, domains: Sequence[str] = ()):
    """The router a spec names; `domains`: the domains its owner knows (criteria and exemplar files)."""
    if r.type == "keywords":
        return KeywordRouter(r.keywords, r.default)
    if r.type == "prompted":
        return PromptedRouter(r.model, sorted(set(domains) | set(r.keywords) | {r.default}), r.default)
    return NoRouter(r.default)
