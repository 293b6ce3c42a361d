"""Training: trainers by `align.trainer` (TRL's own, or a small subclass that adds one loss term) and the loss terms
as pure functions registered by name (CONVENTIONS 4, 5)."""
