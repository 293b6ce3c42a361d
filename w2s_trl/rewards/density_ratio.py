"""`density_ratio` (SCIENCE.md 3): r(x, y) = logp_S(y | c(x)) - logp_W(y | c(x)), normalised by `sum` (default) or
`mean` (each logp over its own response-token count). c(x) may add a criteria system prompt chosen by the prompt's
domain (from a router) and k in-context exemplars, identical for S and W. Pair forms:
    models   : two causal LMs, each with its own tokenizer and chat template;
    adapter  : S = base + LoRA adapter, W = the same base with the adapter disabled (one model in memory);
    personas : one model under an aligned (S) and an unaligned (W) system prompt: the one form where S and W see
               different contexts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

from pydantic import Field, field_validator, model_validator

from w2s_trl.models import check_model_spec
from w2s_trl.rewards.base import RewardSource, RewardSpecBase, SourceContext, register_reward
from w2s_trl.rewards.routers import RouterSpec, build_router, last_user_text
from w2s_trl.schema import Strict
from w2s_trl.scoring import Messages

# ----------------------------------------------------------------------------------------------------------------------
# The specification


class CausalSide(Strict):
    model: str = Field(description="causal LM spec: hub id, path, embedded:smollm2-135m-instruct, tiny:causal-lm")
    trust_remote_code: bool = False

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        return check_model_spec(v, kind="causal")


DENSITY_RATIO_FORMS = {
    "models": ("strong", "weak"),
    "adapter": ("base", "adapter"),
    "personas": ("model", "strong_system", "weak_system"),
}


class DensityRatioSpec(RewardSpecBase):
    """r(x, y) = logp_S(y | c(x)) - logp_W(y | c(x)) (SCIENCE.md 3). File fields are paths (relative to the spec
    file, its parent folder or the current directory)."""

    type: Literal["density_ratio"] = "density_ratio"
    pair: Literal["models", "adapter", "personas"] = "models"
    strong: CausalSide | None = Field(None, description="models form: the better-aligned model S")
    weak: CausalSide | None = Field(None, description="models form: the less-aligned model W")
    base: str | None = Field(None, description="adapter form: the base model (W = adapter disabled)")
    adapter: str | None = Field(None, description="adapter form: LoRA adapter folder (S = adapter enabled)")
    model: str | None = Field(None, description="personas form: the one model")
    strong_system: str | None = Field(None, description="personas form: text file with the aligned persona (S)")
    weak_system: str | None = Field(None, description="personas form: text file with the unaligned persona (W)")
    normalize: Literal["sum", "mean"] = "sum"
    criteria: dict[str, str] = Field(default_factory=dict, description="domain -> criteria system-prompt text file")
    exemplars: dict[str, str] = Field(default_factory=dict, description="domain -> YAML file of {prompt, good, bad}")
    k: int = Field(0, ge=0, description="in-context exemplars per prompt (from its domain's file)")
    router: RouterSpec = Field(default_factory=RouterSpec)
    score_batch_size: int = Field(
        64, gt=0, description="rows per batch: larger batches share more context and run fewer, bigger forwards"
    )
    precision: Literal["float32", "bfloat16"] = Field("float32", description="bfloat16: autocast, faster, less exact")

    def files(self) -> list[str]:
        """Every file or folder the spec names (its scores depend on their contents)."""
        named = [self.adapter, self.strong_system, self.weak_system, *self.criteria.values(), *self.exemplars.values()]
        return [f for f in named if f is not None]

    def model_specs(self) -> list[str]:
        sides = [s.model for s in (self.strong, self.weak) if s is not None]
        return sides + [m for m in (self.base, self.model, self.router.model) if m is not None]

    def smoke(self) -> "DensityRatioSpec":
        from w2s_trl.errors import RecipeError

        if self.pair == "adapter":
            raise RecipeError("--smoke cannot swap the base of a trained adapter for a tiny model; use the models form")
        spec = self.model_copy(deep=True)
        # two different tiny models: S == W would score every pair exactly 0 (all ties, nothing to train on)
        for side, tiny in ((spec.strong, "tiny:causal-lm"), (spec.weak, "tiny:causal-lm-b")):
            if side is not None:
                side.model = tiny
        if spec.model is not None:
            spec.model = "tiny:causal-lm"
        if spec.router.model is not None:
            spec.router.model = "tiny:causal-lm"
        return spec

    @classmethod
    def resolve_files(cls, raw: dict, anchor: Path) -> dict:
        """Make the file fields absolute, searched from `anchor` (the file that names them)."""
        from w2s_trl.recipe import find_relative

        def fix(value):
            if isinstance(value, str) and not Path(value).is_absolute():
                found = find_relative(value, anchor)
                return str(found) if found else value
            return value

        for key in ("adapter", "strong_system", "weak_system"):
            if key in raw:
                raw[key] = fix(raw[key])
                if raw[key] is None:
                    del raw[key]
        for key in ("criteria", "exemplars"):
            if isinstance(raw.get(key), dict):
                raw[key] = {d: fix(v) for d, v in raw[key].items()}
        return raw

    @model_validator(mode="after")
    def _check_form(self) -> "DensityRatioSpec":
        needed = DENSITY_RATIO_FORMS[self.pair]
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"pair '{self.pair}' needs {', '.join(needed)}; missing: {', '.join(missing)}")
        extra = [f for form in DENSITY_RATIO_FORMS.values() for f in form if f not in needed and getattr(self, f)]
        if extra:
            raise ValueError(f"pair '{self.pair}' does not use {', '.join(extra)}; remove them or change pair")
        for spec in (self.base, self.model):
            if spec is not None:
                check_model_spec(spec, kind="causal")
        for f in self.files():
            if not Path(f).exists():
                raise ValueError(f"file '{f}' not found")
        if self.k and not self.exemplars:
            raise ValueError(f"k is {self.k} but no exemplars are given: add exemplars (domain -> file) or set k: 0")
        return self


# ----------------------------------------------------------------------------------------------------------------------
# Contexts and the source


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


@register_reward("density_ratio", DensityRatioSpec)
class DensityRatioSource(RewardSource):

    def __init__(self, spec: DensityRatioSpec):
        import contextlib

        from w2s_trl.models import load_causal_lm, load_tokenizer
        from w2s_trl.scoring import autocast_for

        self.spec = spec
        self.router = build_router(spec.router, [*spec.criteria, *spec.exemplars])
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

    @classmethod
    def build(cls, spec: DensityRatioSpec, context: SourceContext, key: str) -> "DensityRatioSource":
        return cls(spec)

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
