"""Generated malformed input (recipes, overrides, command-line arguments, data files), each run through the real
command line in this process: every case ends in one clean error line (exit 2: no traceback, nothing "unexpected"),
and no file outside the run directory changes (a user's folder beside the run directory is watched).

The cases are the shapes a careful tester tried by hand (issue 11) plus a systematic sweep of bad values over the
recipe's fields; the count is asserted so the sweep cannot shrink silently."""

import json
import math
from pathlib import Path

import pytest
import yaml

from w2s_trl.cli import train_main
from w2s_trl.score import main as score_main

REPO = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((REPO / "recipes" / "dpo_weak_rm.yaml").read_text())
BASE["run"]["output_dir"], BASE.setdefault("tracking", {})["report_to"] = "runs", []  # a case may replace either
GOOD_ROW = {"prompt": "q", "chosen": "a", "rejected": "b"}

# field -> bad values (each one case, written into a recipe file)
BAD_FIELDS = {
    "run.seed": [-1, 2**64, "abc", 1.5, [1], None],
    "run.name": ["", ".", "..", "../../x", "/abs/x", "a/b", "x" * 300, "new\nline", "-dash"],
    "run.output_dir": ["", "/proc", "/dev/null", "/etc"],
    "data.size": [0, -5, "many", [3]],
    "data.seed": ["x", 1.5],
    "data.fractions.test": [0, 1.5, -0.1, "x", math.nan],
    "data.on_invalid": ["ignore", 1],
    "data.objectives": [[], ["honest"], 5],
    "data.source": ["", "/etc", "/etc/passwd", "recipes/dpo_weak_rm.yaml"],
    "data.datasets": [[], [{"path": ""}], [{"path": "a.jsonl", "fraction": -1}], [{"nope": 1}]],
    "strong.model": ["", "/etc", "/etc/passwd", ".", "x" * 400, "embedded:nope", "tiny:reward-model", 5],
    "strong.lora.r": [0, -1, "big"],
    "strong.lora.target_modules": [[], [""], 5],
    "strong.lora.dropout": [1.5, math.nan, -0.1],
    "strong.quantization.compute_dtype": ["int3"],
    "strong.chat_template": ["", "{% for m in messages %}", "{{ 'constant' }}"],
    "align.trainer": ["ppo2", 3],
    "align.args.beta": [-1, 0, math.nan, math.inf, "high"],
    "align.args.learning_rate": ["fast", -1, math.inf],
    "align.args.per_device_train_batch_size": [0, -1, 2.5, "two"],
    "align.args.gradient_accumulation_steps": [0],
    "align.args.max_length": [0, -1, "long"],
    "align.args.max_steps": [0],
    "align.args.num_train_epochs": [0, -1],
    "align.args.loss_type": ["bogus", ["sigmoid", "bogus"]],
    "align.args.lr_scheduler_type": ["zigzag"],
    "align.args.push_to_hub": [True],
    "align.args.hub_token": ["hf_abcdefgh"],
    "align.args.api_key": ["k"],
    "align.args.deepspeed": ["ds.json"],
    "align.args.output_dir": ["/tmp/x"],
    "align.args.betta": [0.1],
    "align.args.warmup_ratio": [2.0],
    "align.args.bf16": ["maybe"],
    "label.best_of_n.temperature": [math.inf, 0, -1],
    "label.best_of_n.n": [1, 0],
    "label.best_of_n.top_p": [0, 2],
    "evaluate.bootstrap": [10, "many"],
    "tracking.report_to": [["comet"], 5],
    "hub.repo_id": ["bad repo name", "a/b/c"],
    "weak.reward": ["", "reward", "reward/nope.yaml", 5, {"type": "nope"}, {"model": "tiny:reward-model",
                                                                          "train": {"learning_rate": "fast"}}],
}


def set_path(raw: dict, dotted: str, value) -> dict:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


def recipe_cases() -> list[tuple[str, str, str | None]]:
    """(id, recipe text, the key the error must name): bad field values, then bad files."""
    import copy

    cases = []
    for field, values in BAD_FIELDS.items():
        for i, value in enumerate(values):
            raw = set_path(copy.deepcopy(BASE), field, value)
            cases.append((f"{field}[{i}]", yaml.safe_dump(raw), field.split(".")[-1]))
    text = (REPO / "recipes" / "dpo_weak_rm.yaml").read_text()
    cases += [
        ("duplicate-key", text + "\nrun:\n  name: again\n"),
        ("nested-5000", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("nested-mapping-40", "run:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(40)) + "  " * 41 + "v: 1\n"),
        ("top-level-list", "- a\n- b\n"),
        ("top-level-scalar", "42\n"),
        ("empty-file", ""),
        ("python-tag", "run: !!python/object/apply:os.system ['true']\n"),
        ("tab-indent", "run:\n\tname: x\n"),
        ("unclosed-bracket", "run: {name: x\n"),
        ("unknown-section", text + "\nextras: {a: 1}\n"),
        ("binary", "\x00\x01\x02"),
    ]
    return [c if len(c) == 3 else (*c, None) for c in cases]


OVERRIDES = [
    "run.seed=[", "run.seed=!!python/name:os.system", "run.seed={a: [}", "run.name=../../x", "run.name=/abs",
    "run.name=.", "run.name=..", "run.name=", "run.name=" + "n" * 300, "run.name=a\nb", "run.name=a\x00b",
    "run.name=\udcff", "run.output_dir=/proc", "run.output_dir=/dev/null", "run.output_dir=", "align.args.beta=-1",
    "align.args.beta=nan", "align.args.beta=.inf", "align.args.learning_rate=fast", "align.args.deepspeed=x.json",
    "align.args.push_to_hub=true", "align.args.hub_token=abcdefgh", "align.args.per_device_train_batch_size=0",
    "align.args.max_length=0", "align.args.loss_type=bogus", "strong.model=/etc", "strong.model=/etc/passwd",
    "strong.model=.", "strong.model=", "strong.model=" + "m" * 400, "strong.lora.target_modules=[]",
    "run.seed=18446744073709551616", "label.best_of_n.temperature=inf", "weak.reward=", "weak.reward=reward",
    "weak.reward.train.learning_rate=fast", "nosuch.key=1", "run.nosuch=1", "no_equals_sign", "run.offline=maybe",
    "data.fractions={weak_train: 0.5, w2s_train: 0.5, test: 0.5}", "data.source=/etc", "data.size=0",
    "evaluate.bootstrap=5", "tracking.report_to=[comet]", "align.trainer=bogus", "align.args.betta=0.1",
    "hub.repo_id=not a repo",
]

CLI_ARGS = [  # (id, argv for train_main) beyond recipes and overrides
    ("no-recipe", []),
    ("recipe-is-dir", ["recipes"]),
    ("recipe-missing", ["nope.yaml"]),
    ("two-recipes", ["recipes/dpo_weak_rm.yaml", "recipes/ppo_weak_rm.yaml"]),
    ("stop-after-bogus", ["recipes/dpo_weak_rm.yaml", "--stop-after", "bogus"]),
    ("flag-without-value", ["recipes/dpo_weak_rm.yaml", "--beta"]),
    ("flag-unknown-field", ["recipes/dpo_weak_rm.yaml", "--betta", "0.1"]),
    ("flag-bad-value", ["recipes/dpo_weak_rm.yaml", "--learning_rate=fast"]),
    ("empty-recipe-path", [""]),
    ("recipe-non-utf8", ["BAD_UTF8"]),
]

SCORE_ARGS = [
    ("size-0", ["reward/weak_rm_minilm.yaml", "--data", "testbed:hh", "--size", "0"]),
    ("limit-negative", ["reward/weak_rm_minilm.yaml", "--data", "testbed:hh", "--limit", "-100"]),
    ("limit-0", ["reward/weak_rm_minilm.yaml", "--data", "testbed:hh", "--limit", "0"]),
    ("out-missing-folder", ["reward/weak_rm_minilm.yaml", "--data", "testbed:hh", "--out", "no/such/dir/x.json"]),
    ("out-is-dir", ["reward/weak_rm_minilm.yaml", "--data", "testbed:hh", "--out", "."]),
    ("split-bogus-on-file", ["reward/weak_rm_minilm.yaml", "--data", "rows.jsonl", "--split", "bogus"]),
    ("reward-is-dir", ["reward", "--data", "testbed:hh"]),
    ("reward-empty", ["", "--data", "testbed:hh"]),
    ("reward-missing", ["reward/nope.yaml", "--data", "testbed:hh"]),
    ("data-missing-file", ["reward/weak_rm_minilm.yaml", "--data", "missing.jsonl"]),
    ("size-not-int", ["reward/weak_rm_minilm.yaml", "--data", "testbed:hh", "--size", "many"]),
]


def data_cases() -> list[tuple[str, str, bytes]]:
    """(id, file name, bytes): files with no valid row (an error under either on_invalid), broken files, ids that
    clash. Every row shape the data tests skip one by one is here the whole file."""
    rows = {
        "broken-json": b'{"prompt": "q", "chosen": ',
        "list-line": b"[1, 2]",
        "string-line": b'"text"',
        "null-line": b"null",
        "number-line": b"7",
        "hh-no-rejected": json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: a"}).encode(),
        "pku-id-5": json.dumps({"prompt": "q", "response_0": "a", "response_1": "b", "safer_response_id": 5,
                                "better_response_id": 0}).encode(),
        "pku-id-neg": json.dumps({"prompt": "q", "response_0": "a", "response_1": "b", "safer_response_id": -1,
                                  "better_response_id": 0}).encode(),
        "pku-id-x": json.dumps({"prompt": "q", "response_0": "a", "response_1": "b", "safer_response_id": "x",
                                "better_response_id": 0}).encode(),
        "content-int": json.dumps({"prompt": "q", "chosen": [{"role": "assistant", "content": 3}], "rejected": "b"}).encode(),
        "content-null": json.dumps({"prompt": "q", "chosen": [{"role": "assistant", "content": None}],
                                    "rejected": "b"}).encode(),
        "role-bogus": json.dumps({"prompt": "q", "chosen": [{"role": "bogus", "content": "a"}], "rejected": "b"}).encode(),
        "chosen-empty-list": json.dumps({"prompt": "q", "chosen": [], "rejected": "b"}).encode(),
        "chosen-equals-rejected": json.dumps({"prompt": "q", "chosen": "same", "rejected": "same"}).encode(),
        "empty-response": json.dumps({"prompt": "q", "chosen": "", "rejected": "b"}).encode(),
        "no-prompt-strings": json.dumps({"chosen": "a", "rejected": "b"}).encode(),
        "prompt-only": json.dumps({"prompt": "q"}).encode(),
        "unknown-columns": json.dumps({"question": "q", "answer": "a"}).encode(),
        "deep-nesting": b"[" * 5000 + b"]" * 5000,
    }
    cases = [(f"row-{k}", "rows.jsonl", v + b"\n") for k, v in rows.items()]
    dup = b"".join(json.dumps({"id": "same", "prompt": f"q{i}", "chosen": "a", "rejected": "b"}).encode() + b"\n"
                   for i in range(60))  # fmt: skip
    cases += [
        ("duplicate-ids-different-content", "rows.jsonl", dup),
        ("non-utf8-jsonl", "rows.jsonl", b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'),
        ("empty-jsonl", "rows.jsonl", b""),
        ("blank-lines-only", "rows.jsonl", b"\n\n  \n"),
        ("fake-parquet", "rows.parquet", b"not parquet at all"),
        ("json-number", "rows.json", b"42"),
        ("json-broken", "rows.json", b'[{"prompt": '),
        ("json-list-of-strings", "rows.json", b'["a", "b"]'),
        ("csv-suffix", "rows.csv", b"prompt,chosen,rejected\nq,a,b\n"),
        ("txt-suffix", "rows.txt", b"hello"),
    ]
    return cases


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working directory with the repo's recipes and rewards, a user's own `data/` folder beside `runs/`, and a
    snapshot function of every file outside `runs/`."""
    import shutil

    for name in ("recipes", "reward"):
        shutil.copytree(REPO / name, tmp_path / name)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("a user's file")
    (tmp_path / "rows.jsonl").write_text(json.dumps(GOOD_ROW) + "\n")
    (tmp_path / "BAD_UTF8").write_bytes(b"run:\n  name: caf\xe9\n")
    monkeypatch.chdir(tmp_path)

    def snapshot():
        return {str(p.relative_to(tmp_path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")
                if p.is_file() and p.relative_to(tmp_path).parts[0] != "runs"}  # fmt: skip

    return tmp_path, snapshot


def problem(code: int, capsys, case: str, names: str | None = None) -> str | None:
    """What is wrong with a case's outcome (None: a clean error that names `names`, the key at fault, if given)."""
    out = capsys.readouterr()
    text = out.out + out.err
    if names is not None and code == 2 and names not in out.err:
        return f"{case}: the error does not name '{names}': {out.err[-500:]}"
    if code != 2:
        return f"{case}: exit {code}: {text[-800:]}"
    if "Traceback" in text or "unexpected" in out.err:
        return f"{case}: {text[-800:]}"
    if not any(line.startswith(("error:", "usage:")) for line in out.err.splitlines()):
        return f"{case}: no error line: {out.err[-500:]}"
    return None


def test_generated_malformed_inputs_fail_cleanly_and_touch_nothing_else(sandbox, capsys):
    root, snapshot = sandbox
    before = snapshot()
    run_args = ["run.output_dir=runs", "tracking.report_to=[]"]
    counts, problems = {}, []
    # the positive control: the unmodified base recipe, as every case runs it, succeeds (so a case's exit 2 is its own)
    (root / "case.yaml").write_text(yaml.safe_dump(BASE))
    assert train_main(["case.yaml", "--smoke", "--stop-after", "data"]) == 0, capsys.readouterr().err[-2000:]
    capsys.readouterr()

    def train(case, argv, names=None):
        try:
            code = train_main(argv)
        except SystemExit as e:  # argparse's own errors (usage + message, exit 2)
            code = e.code
        problems.append(problem(code, capsys, case, names))

    for case, text, names in recipe_cases():
        (root / "case.yaml").write_bytes(text.encode("utf-8", "surrogateescape"))
        train(case, ["case.yaml", "--smoke", "--stop-after", "data"], names)
    counts["recipes"] = len(recipe_cases())
    for override in OVERRIDES:
        train(override, ["recipes/dpo_weak_rm.yaml", *run_args, override, "--smoke", "--stop-after", "data"])
    train("output-dir-dot-name-data", ["recipes/dpo_weak_rm.yaml", "run.output_dir=.", "run.name=data", "--stop-after",
                                       "data", "tracking.report_to=[]"])  # a user's folder: never written into
    counts["overrides"] = len(OVERRIDES) + 1
    for case, argv in CLI_ARGS:
        train(case, argv)
    counts["cli"] = len(CLI_ARGS)
    for case, argv in SCORE_ARGS:
        try:
            code = score_main(argv)
        except SystemExit as e:
            code = e.code
        problems.append(problem(code, capsys, case))
    counts["score"] = len(SCORE_ARGS)
    for on_invalid in ("skip", "error"):
        for case, name, payload in data_cases():
            (root / "input").mkdir(exist_ok=True)
            (root / "input" / name).write_bytes(payload)
            train(f"{case} ({on_invalid})", ["recipes/dpo_weak_rm.yaml", f"data.source=input/{name}",
                                             f"data.on_invalid={on_invalid}", "--smoke", "--stop-after", "data",
                                             *run_args])  # fmt: skip
            (root / "input" / name).unlink()
    counts["data"] = 2 * len(data_cases())
    problems = [p for p in problems if p]
    assert not problems, f"{len(problems)} cases:\n" + "\n".join(problems)
    after = {k: v for k, v in snapshot().items() if k not in ("case.yaml",) and not k.startswith("input")}
    assert after == {k: v for k, v in before.items() if k != "case.yaml"}  # nothing outside runs/ changed
    assert sum(counts.values()) >= 200, counts
    print(counts)
