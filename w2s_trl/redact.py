"""Secrets out of everything a run writes for others (model cards, W&B config and artifacts) and out of recipes.

A secret is named, not guessed from its value: a name ending in token / key / password / pwd / secret / credential(s) /
pat / auth as a whole word ("hub_token", "WANDB_API_KEY"), not one that merely contains it ("max_new_tokens", "keywords",
"TOKENIZERS_PARALLELISM") nor a tokenizer's special token ("pad_token"). Values of such environment variables are
blanked wherever they appear in text, and so are credentials inside URLs (https://user:password@host).
"""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_NAME = re.compile(r"(^|[_\-.])(token|key|apikey|password|passwd|pwd|secret|credentials?|pat|auth)$", re.I)
URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")  # https://user:password@host
SPECIAL_TOKENS = {"pad_token", "eos_token", "bos_token", "unk_token", "sep_token", "cls_token", "mask_token"}  # text
REMOVED = "<removed: secret>"


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None and name.lower() not in SPECIAL_TOKENS


def secret_values() -> list[str]:
    """Values of environment variables whose names look like secrets (long enough to be worth hiding)."""
    return [v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= 6]


def scrub(value: Any, secrets: list[str] | None = None) -> Any:
    """`value` with every entry under a secret-looking key replaced, and every secret value from the environment
    blanked wherever it appears in a string."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, dict):
        return {k: REMOVED if is_secret_name(str(k)) and v not in (None, "", False) else scrub(v, secrets)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, REMOVED)
        value = URL_CREDENTIALS.sub(REMOVED, value)
    return value
