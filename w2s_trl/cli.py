"""Command line: `w2s-trl train RECIPE.yaml [key.path=value ...] [--smoke]` (also `python w2s_trl/train.py ...` and
`accelerate launch w2s_trl/train.py ...`), and `w2s-trl push RUN_DIR [--stage student]` (adapters to the Hub)."""

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


def trainer_flags(extra: list[str]) -> list[str]:
    """TRL's habit, `--beta 0.2` or `--beta=0.2`, as the override `align.args.beta=0.2` (checked like any override:
    an unknown field fails at load with the close matches)."""
    out, i = [], 0
    while i < len(extra):
        flag = extra[i]
        if not flag.startswith("--") or len(flag) == 2:
            raise W2SError(f"unexpected argument '{flag}': overrides are key.path=value, trainer flags --field value")
        name, eq, value = flag[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise W2SError(f"{flag} needs a value: {flag} VALUE or {flag}=VALUE")
            value, i = extra[i + 1], i + 1
        out.append(f"align.args.{name.replace('-', '_')}={value}")
        i += 1
    return out


def train_main(argv: list[str] | None = None, prog: str = "w2s-trl train") -> int:
    parser = train_parser(prog)
    args, extra = parser.parse_known_intermixed_args(argv)
    try:
        overrides = list(args.overrides) + trainer_flags(extra)
    except W2SError as e:
        parser.error(str(e))
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


def push_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="w2s-trl push", description="Push a finished run's LoRA adapters and model cards "
                                "to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`).")  # fmt: skip
    p.add_argument("run_dir", help="the run's folder (runs/<run.name>)")
    p.add_argument("--stage", action="append", choices=["student", "ceiling"],
                   help="a stage to push (repeatable; default: the recipe's hub.stages, else student)")  # fmt: skip
    p.add_argument("--repo-id", help="repo id or template with {user} {run} {stage} (default: the recipe's hub.repo_id)")
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_true", default=None)
    vis.add_argument("--public", dest="private", action="store_false")
    args = p.parse_args(argv)
    from w2s_trl.hub import PushError, push_run

    try:
        urls = push_run(args.run_dir, args.stage, args.repo_id, args.private)
    except PushError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for stage, url in urls.items():
        print(f"[w2s-trl] hub: {stage} -> {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"train": train_main, "push": push_main}
    if not argv or argv[0] not in commands:
        print("usage: w2s-trl {train,push} ...\n  w2s-trl train RECIPE.yaml [key.path=value ...] [--smoke]\n"
              "  w2s-trl push RUN_DIR [--stage student] [--repo-id ID]", file=sys.stderr)  # fmt: skip
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
