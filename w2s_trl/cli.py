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
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return p


OWN_FLAGS = {"--config", "--smoke", "--stop-after", "--debug", "--help", "-h"}


def trainer_flags(argv: list[str]) -> list[str]:
    """argv with TRL's habit, `--beta 0.2` or `--beta=0.2`, rewritten as the override `align.args.beta=0.2` (checked
    like any override: an unknown field fails at load with the close matches); everything else stays as it is."""
    out, i = [], 0
    while i < len(argv):
        flag = argv[i]
        name, eq, value = flag[2:].partition("=")
        if not flag.startswith("--") or len(flag) == 2 or flag.split("=")[0] in OWN_FLAGS:
            out.append(flag)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise W2SError(f"{flag} needs a value: {flag} VALUE or {flag}=VALUE")
            value, i = argv[i + 1], i + 1
        out.append(f"align.args.{name.replace('-', '_')}={value}")
        i += 1
    return out


def train_main(argv: list[str] | None = None, prog: str = "w2s-trl train") -> int:
    import os

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # before anything imports huggingface_hub (TRL's start-up
    parser = train_parser(prog)  # telemetry); the offline switch needs the recipe: pipeline.configure_environment
    try:
        argv = trainer_flags(sys.argv[1:] if argv is None else list(argv))
    except W2SError as e:
        parser.error(str(e))
    args = parser.parse_intermixed_args(argv)
    positional = [a for a in (args.recipe, *args.overrides) if a is not None]
    recipes = [a for a in positional if "=" not in a]  # key.path=value is an override wherever it stands
    overrides = [a for a in positional if "=" in a]
    recipe_path = args.config
    if len(recipes) > 1 or (recipes and args.config):
        parser.error(f"more than one recipe given: {', '.join(recipes + ([args.config] if args.config else []))}")
    elif recipes:
        recipe_path = recipes[0]
    if not recipe_path:
        parser.error("a recipe is required: w2s-trl train recipes/dpo_weak_rm.yaml")
    from w2s_trl.pipeline import run_pipeline
    from w2s_trl.recipe import load_recipe

    return guarded(lambda: run_pipeline(load_recipe(recipe_path, overrides, smoke=args.smoke), stop_after=args.stop_after),
                   args.debug)


def guarded(work, debug: bool = False) -> int:
    """Run `work`; a user error (W2SError) or a file system failure prints one line and exits 2, anything else one line
    and exit 1, with the traceback only under --debug. Completed stages stay complete either way: a stage is marked
    done only after it has written everything."""
    try:
        result = work()
    except W2SError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if debug:
            raise
        import errno

        where = f"{e.filename}: " if e.filename else ""
        disk = e.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)
        hint = (" (the disk is full or read-only, or the folder is not yours; " if disk else " (") + (
            "the stage that failed is not marked complete; completed stages are kept)")
        print(f"error: {where}{e.strerror or e}{hint}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - one readable line; the traceback is one flag away
        if debug:
            raise
        print(f"error: unexpected {type(e).__name__}: {str(e)[:500]} (a w2s-trl bug or an input it does not check "
              "yet: rerun with --debug for the traceback and report it)", file=sys.stderr)  # fmt: skip
        return 1
    return result if isinstance(result, int) else 0


def push_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="w2s-trl push", description="Push a finished run's LoRA adapters and model cards "
                                "to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`).")  # fmt: skip
    p.add_argument("run_dir", help="the run's folder (runs/<run.name>)")
    p.add_argument("--stage", action="append", choices=["student", "ceiling"],
                   help="a stage to push (repeatable; default: the recipe's hub.stages, else student)")  # fmt: skip
    p.add_argument("--repo-id", help="repo id or template with {user} {run} {stage} (default: the recipe's hub.repo_id)")
    p.add_argument("--base-model", help="hub id of the base weights (default: the recipe's hub.base_model, else the "
                   "strong model's or an embedded model's public id)")  # fmt: skip
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_true", default=None)
    vis.add_argument("--public", dest="private", action="store_false")
    args = p.parse_args(argv)
    from w2s_trl.hub import PushError, push_run

    try:
        urls = push_run(args.run_dir, args.stage, args.repo_id, args.private, args.base_model)
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
