"""Reference log-probs computed once per run (SCIENCE.md 5: the reference is the base model, the adapter off).

The student and the ceiling train on the same w2s_train responses (the weak labels and the ground truth only order
them differently), and both evaluate on the same test rows when eval curves are on: their reference log-probs are the
same numbers. TRL's precomputed-reference path (`precompute_ref_log_probs`) computes them in one no-grad pass before
training instead of a reference forward in every step; `with_reference_cache` puts a file cache under that pass, keyed
by the exact token ids the reference reads, so the second training looks them up instead of recomputing.

The cache file belongs to one reference: its name hashes the strong model, its loading (quantization, chat template)
and the numeric mode (bf16/fp16), so a different reference never reads another's numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


def sequence_key(prompt_ids, response_ids) -> str:
    payload = np.asarray(list(prompt_ids) + [-1] + list(response_ids), dtype=np.int64).tobytes()
    return hashlib.sha1(payload).hexdigest()[:24]


def cache_path(folder: Path, identity: dict) -> Path:
    """The cache file of one reference: `identity` (model spec, loading, numeric mode) hashed into its name."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(folder) / f"ref_logps-{digest}.json"


def read_cache(path: Path) -> dict[str, float]:
    try:
        return json.loads(Path(path).read_text())["logps"]
    except (OSError, ValueError, KeyError):
        return {}  # absent or cut short by a kill: recomputed, never trusted half-written


def write_cache(path: Path, logps: dict[str, float], identity: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"identity": identity, "logps": logps}))
    os.replace(tmp, path)  # whole or absent


def with_reference_cache(trainer_cls: type) -> type:
    """`trainer_cls` (a TRL DPOTrainer or subclass) whose precompute pass reads and extends a cache file: rows whose
    chosen and rejected sequences are cached get their reference log-probs from it; only the others go through TRL's
    own pass. Takes `ref_cache=(path, identity)`."""

    class CachedReferenceTrainer(trainer_cls):
        def __init__(self, *args, ref_cache: tuple[Path, dict], **kwargs):
            self._ref_cache_path, self._ref_identity = ref_cache  # read by _precompute_ref_logps inside __init__
            super().__init__(*args, **kwargs)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            cache = read_cache(self._ref_cache_path)
            keys = {side: [sequence_key(p, r) for p, r in zip(dataset["prompt_ids"], dataset[f"{side}_ids"])]
                    for side in ("chosen", "rejected")}  # fmt: skip
            missing = [i for i in range(len(dataset)) if not all(keys[s][i] in cache for s in keys)]
            if missing:
                computed = super()._precompute_ref_logps(dataset.select(missing), name, batch_size)
                values = computed.select_columns(list(REF_COLUMNS)).to_dict()
                for j, i in enumerate(missing):
                    cache[keys["chosen"][i]] = float(values["ref_chosen_logps"][j])
                    cache[keys["rejected"][i]] = float(values["ref_rejected_logps"][j])
                if self.accelerator.is_main_process:
                    write_cache(self._ref_cache_path, cache, self._ref_identity)
                self.accelerator.wait_for_everyone()
            self.ref_cache_hits = getattr(self, "ref_cache_hits", 0) + len(dataset) - len(missing)
            out = dataset
            for column, side in zip(REF_COLUMNS, ("chosen", "rejected")):
                out = out.add_column(column, [cache[k] for k in keys[side]])
            return out

    CachedReferenceTrainer.__name__ = f"Cached{trainer_cls.__name__}"
    return CachedReferenceTrainer
