"""w2s-trl: weak-to-strong alignment on Hugging Face TRL.

Modules follow the pipeline: data -> weak -> label -> align -> evaluate -> report (see pipeline.py).
Nothing is loaded at import time.
"""

__version__ = "0.1.0"
