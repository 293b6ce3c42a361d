"""No connection leaves the machine when nothing needs the Hub: the run's own switches (not the test session's) make
huggingface_hub and datasets offline and silence TRL's start-up telemetry. The pipeline runs in a subprocess whose
socket layer records and refuses every connection or name lookup beyond loopback."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "dpo_weak_rm.yaml"

GUARD = r"""
import json, socket, sys
attempts = []
LOCAL = ("127.0.0.1", "::1", "localhost")
real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
        attempts.append(f"connect {address[0]}:{address[1]}")
        raise OSError("network blocked by the test")
    return real_connect(self, address)
def lookup(host, *args, **kwargs):
    if host not in LOCAL and host is not None:
        attempts.append(f"lookup {host}")
        raise socket.gaierror("name lookup blocked by the test")
    return real_lookup(host, *args, **kwargs)
socket.socket.connect, socket.getaddrinfo = connect, lookup
from w2s_trl.cli import train_main
code = train_main(sys.argv[1:])
import huggingface_hub.constants as hub
print("RESULT " + json.dumps({"code": code, "attempts": attempts, "offline": hub.HF_HUB_OFFLINE,
                              "telemetry_off": hub.HF_HUB_DISABLE_TELEMETRY}))
"""


def guarded_run(args: list[str]) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_", "HF_DATASETS_", "TRANSFORMERS_OFFLINE"))}
    proc = subprocess.run([sys.executable, "-c", GUARD, *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=REPO)  # fmt: skip
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-3000:]
    return json.loads(line[len("RESULT ") :]), proc.stderr


def test_a_local_run_never_touches_the_network(tmp_path):
    result, _ = guarded_run([str(RECIPE), "--smoke", f"run.output_dir={tmp_path}", "tracking.report_to=[]",
                             "--stop-after", "student"])  # fmt: skip
    assert result == {"code": 0, "attempts": [], "offline": True, "telemetry_off": True}


def test_offline_on_with_an_uncached_hub_model_fails_at_once_without_a_connection(tmp_path):
    """run.offline=on (the documented override) with a hub model that is not cached: one clear error naming the
    model, no retries, no connection attempt."""
    result, err = guarded_run([str(RECIPE), "run.offline=on", "strong.model=nobody-org/not-cached-model",
                               f"run.output_dir={tmp_path}", "tracking.report_to=[]", "--stop-after", "data"])
    assert result["code"] == 2 and result["attempts"] == [] and result["offline"] is True
    assert "model 'nobody-org/not-cached-model': cannot load" in err and "run.offline=off" in err
