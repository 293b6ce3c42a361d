"""Entry point: `accelerate launch w2s_trl/train.py RECIPE.yaml [key.path=value ...] [--smoke]`.

Runs as a script (accelerate launch / python) and as `w2s-trl train`; all three share cli.train_main. No module of
the package is named like an installed package (`evaluate`, `datasets`), so running from inside w2s_trl/ shadows
nothing.
"""

import sys

if __name__ == "__main__":
    from w2s_trl.cli import train_main

    sys.exit(train_main(prog="w2s_trl/train.py"))
