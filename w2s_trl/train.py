"""Entry point: `accelerate launch w2s_trl/train.py RECIPE.yaml [key.path=value ...] [--smoke]`.

Runs as a script (accelerate launch / python) and as `w2s-trl train`; all three share cli.train_main.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts w2s_trl/ itself first on sys.path, where our evaluate.py would shadow the
    # `evaluate` package that transformers may import. Import the package from the repo root instead.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    from w2s_trl.cli import train_main

    sys.exit(train_main(prog="w2s_trl/train.py"))
