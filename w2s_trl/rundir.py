"""The run directory: stages talk only through its files (CONVENTIONS.md 1, 10).

Each stage `S` computes into `.work/S/out/` and, once complete, writes `stage.json` (its fingerprint, what it depends
on, its runtime) and renames the folder to `S/` in one step. So a killed run never leaves a half-written `S/` that
looks complete. Training checkpoints live in `.work/S/checkpoints/` and survive an interruption: the next run
resumes from the last one. A stage whose `stage.json` fingerprint matches is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from w2s_trl.redact import scrub

FINGERPRINT_VERSION = "1"  # bump when a stage's computation changes meaning


def fingerprint(inputs: dict[str, Any]) -> str:
    payload = json.dumps({"v": FINGERPRINT_VERSION, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class StageWork:
    """Where a running stage writes: `out` becomes the stage folder; `checkpoints` survives interruptions."""

    out: Path
    checkpoints: Path

    def last_checkpoint(self) -> str | None:
        """The newest COMPLETE checkpoint: transformers writes trainer_state.json after the weights and optimizer, so
        a save killed midway leaves a folder without it, and the checkpoint before it is used instead."""
        if not self.checkpoints.is_dir():
            return None
        from transformers.trainer_utils import sort_checkpoints

        for path in reversed(sort_checkpoints(str(self.checkpoints))):
            if (Path(path) / "trainer_state.json").exists():
                return path
        return None


MARKER = ".w2s-trl-run"  # in every run directory: w2s-trl writes (and deletes stage folders) only where it finds one


def claim_run_dir(root: Path) -> None:
    """Create the run directory, or accept an existing one that w2s-trl made (its marker, or a run made before markers
    existed: recipe.resolved.yaml); never write into a folder of the user's (`run.output_dir=. run.name=data` would
    otherwise replace files in ./data)."""
    from w2s_trl.errors import W2SError

    try:
        if root.exists() and not (root / MARKER).exists():
            if not root.is_dir():
                raise W2SError(f"{root}: exists and is not a folder; choose another run.name or run.output_dir")
            entries = sorted(p.name for p in root.iterdir())
            if entries and "recipe.resolved.yaml" not in entries:
                raise W2SError(f"{root}: exists and is not a w2s-trl run directory (no {MARKER}; it holds "
                               f"{', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''}); w2s-trl never writes "
                               "into a folder it did not create: choose another run.name or run.output_dir")  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text("w2s-trl run directory: stage folders here are created and replaced by w2s-trl\n")
    except OSError as e:
        raise W2SError(f"{root}: cannot create the run directory ({e.strerror or e}); check run.output_dir") from None


class RunDir:
    def __init__(self, root: Path, is_main: bool = True, barrier: Callable[[], None] = lambda: None):
        self.root = Path(root)
        self.is_main = is_main
        self.barrier = barrier
        if is_main:
            claim_run_dir(self.root)
        barrier()
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def stage_dir(self, name: str) -> Path:
        return self.root / name

    def record(self, name: str) -> dict | None:
        path = self.root / name / "stage.json"
        return json.loads(path.read_text()) if path.exists() else None

    def run(self, name: str, inputs: dict[str, Any], compute: Callable[[StageWork], dict | None],
            all_ranks: bool = False) -> Path:  # fmt: skip
        """Run `compute` unless a complete stage with the same fingerprint exists; return the stage folder.

        `inputs` must hold everything the result depends on (config sections, upstream fingerprints).
        `all_ranks`: training stages run on every accelerate process; other stages run on the main one only.
        """
        fp = fingerprint(inputs)
        final = self.stage_dir(name)
        done = self.record(name)
        if done and done.get("fingerprint") == fp:
            print(f"[w2s-trl] stage {name}: complete with the same inputs, skipped ({final})", flush=True)
            self.skipped.append(name)
            return final
        work_root = self.root / ".work" / name
        meta_path = work_root / "inputs.json"
        if self.is_main:
            if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") != fp:
                shutil.rmtree(work_root)  # checkpoints of different inputs are useless
            work_root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(meta_path, scrub({"fingerprint": fp, "inputs": inputs}))
            shutil.rmtree(work_root / "out", ignore_errors=True)
            (work_root / "out").mkdir()
        self.barrier()
        work = StageWork(out=work_root / "out", checkpoints=work_root / "checkpoints")
        print(f"[w2s-trl] stage {name}: running", flush=True)
        start = time.perf_counter()
        extra = compute(work) if (all_ranks or self.is_main) else None
        runtime = time.perf_counter() - start
        self.barrier()
        if self.is_main:
            record = {"stage": name, "fingerprint": fp, "runtime_s": round(runtime, 2), "inputs": inputs}
            record.update(extra or {})
            record = scrub(record)  # the fingerprint holds the inputs; the file never holds an environment secret
            write_json_atomic(work.out / "stage.json", record)
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)  # a nested stage name (weak/harmless) has a parent folder
            os.replace(work.out, final)
            shutil.rmtree(work_root, ignore_errors=True)
        self.barrier()
        self.ran.append(name)
        print(f"[w2s-trl] stage {name}: done in {runtime:.1f}s", flush=True)
        return final
