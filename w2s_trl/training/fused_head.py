"""TRL's fused LM head on a CPU, scoring only the positions that carry a label.

TRL (1.16) projects only the labelled positions (label != -100) through the LM head when Triton runs it (CUDA, XPU);
on any other device it projects every position, prompt and padding included, so that tile shapes stay fixed for
compilers (Neuron). A CPU runs eagerly, so those positions are pure cost: in a DPO batch, whose prompts are longer than
its responses, most of the head's work, and fp32 tiles of [positions, 32768] whose temporaries set the step's peak
memory. `compact_on_cpu(model)` makes the model's fused forward take TRL's own compact path on a CPU: the same positions
scored by the same kernel, so the same values; other forwards, and other devices, are untouched. DPO precomputes its
reference log-probs inside the trainer's constructor, so `compact_trainer` runs the constructor under
`compact_cpu_head()` too: policy and reference then go through the same head code.
"""

from __future__ import annotations

import contextlib
import functools
import threading

_inside = threading.local()  # set while a wrapped model's fused forward runs


def _patch_trl() -> bool:
    """Let TRL's compact test answer yes for a CPU inside a wrapped forward; False if this TRL has no such test."""
    import trl.trainer.utils as trl_utils

    test = getattr(trl_utils, "_use_triton", None)
    if test is None:
        return False
    if not getattr(test, "w2s_compact", False):

        def compact(device) -> bool:
            return test(device) or (device.type == "cpu" and getattr(_inside, "on", False))

        compact.w2s_compact = True
        trl_utils._use_triton = compact
    return True


@contextlib.contextmanager
def compact_cpu_head():
    """Inside: TRL's fused head takes its compact path on a CPU (a no-op where this TRL has no such path)."""
    if not _patch_trl():
        yield
        return
    before, _inside.on = getattr(_inside, "on", False), True
    try:
        yield
    finally:
        _inside.on = before


def compact_on_cpu(model) -> bool:
    """Wrap the fused forward that TRL's trainer put on `model` (its base model under PEFT) in `compact_cpu_head`.
    True if wrapped (or already); False when this TRL has no compact path to switch (the forward is left as it is)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    fused = base.forward
    if getattr(fused, "w2s_compact", False):
        return True
    if not _patch_trl():
        return False

    @functools.wraps(fused)  # keeps the signature, which `generate` checks its kwargs against
    def forward(*args, **kwargs):
        if not kwargs.get("fused_lm_head"):
            return fused(*args, **kwargs)
        with compact_cpu_head():
            return fused(*args, **kwargs)

    forward.w2s_compact = True
    base.forward = forward
    return True


def compact_trainer(build):
    """`build()` (a TRL trainer's constructor call) run under `compact_cpu_head`, its model's fused forward wrapped."""
    with compact_cpu_head():
        trainer = build()
    compact_on_cpu(trainer.model)
    return trainer
