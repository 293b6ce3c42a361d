"""Command line: `w2s-trl train RECIPE.yaml [key.path=value ...] [--smoke]` (also `python w2s_trl/train.py ...` and
`accelerate launch w2s_trl/train.py ...`)."""

from __future__ import annotations

import argparse
import sys

from w2s_trl.errors import W2SError


def train_parser(prog: str = "w2s-trl train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run a w2s-trl recipe end to end.")
    p.add_argument("recipe", nargs="?", help="recipe YAML (recipes/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, typed like the field")
    p.add_argument("--config", help="recipe YAML (TRL's spelling; same as the positional argument)")
    p.add_argument("--smoke", action="store_true", help="tiny local models, tiny splits: the same pipeline in seconds")
    from w2s_trl.pipeline import STAGE_NAMES

    p.add_argument("--stop-after", choices=STAGE_NAMES,
                   help="stop once this stage is complete (a later run resumes from there)")  # fmt: skip
    return p


def train_main(argv: list[str] | None = None, prog: str = "w2s-trl train") -> int:
    parser = train_parser(prog)
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides)
    recipe_path = args.config
    if args.recipe and "=" in args.recipe and args.config:
        overrides.insert(0, args.recipe)
    elif args.recipe and args.config:
        parser.error(f"two recipes given: {args.recipe} and --config {args.config}")
    elif args.recipe:
        recipe_path = args.recipe
    if not recipe_path:
        parser.error("a recipe is required: w2s-trl train recipes/dpo_weak_rm.yaml")
    from w2s_trl.pipeline import run_pipeline
    from w2s_trl.recipe import load_recipe

    try:
        recipe = load_recipe(recipe_path, overrides, smoke=args.smoke)
        run_pipeline(recipe, stop_after=args.stop_after)
    except W2SError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"train": train_main}
    if not argv or argv[0] not in commands:
        print("usage: w2s-trl {train} ...\n  w2s-trl train RECIPE.yaml [key.path=value ...] [--smoke]", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
