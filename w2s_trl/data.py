"""Stage `data`: load a preference source into one row format and split it by stable ids (SCIENCE.md 1).

Row format (shared by ground truth and weak labels): `id`, `objective`, `category`, `subtlety`, and TRL's
conversational preference columns `prompt`, `chosen`, `rejected` (lists of {role, content} messages).

Sources:
  - `testbed:hh`                                    (w2s_trl.testbed)
  - local .jsonl/.json/.parquet files in TRL's standard ({prompt, chosen, rejected} strings) or conversational
    format, or the Anthropic HH raw format ({"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...});
  - hub datasets by id through `datasets` (Anthropic/hh-rlhf, PKU-Alignment/PKU-SafeRLHF, or any dataset in one of
    the formats above).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

from w2s_trl.errors import DataError

SPLITS = ("weak_train", "w2s_train", "test")
HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


# ----------------------------------------------------------------------------------------------------------------------
# Format conversion


def parse_hh_transcript(text: str, where: str) -> list[dict[str, str]]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{user: a}, {assistant: b}]."""
    parts = HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise DataError(f"{where}: not an Anthropic HH transcript (expected '\\n\\nHuman: ...\\n\\nAssistant: ...')")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def from_hh_raw(record: dict, where: str) -> dict:
    chosen = parse_hh_transcript(record["chosen"], f"{where} (chosen)")
    rejected = parse_hh_transcript(record["rejected"], f"{where} (rejected)")
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last turn of chosen and rejected must be the Assistant's")
    if chosen[:-1] != rejected[:-1]:
        raise DataError(f"{where}: chosen and rejected transcripts differ before the final assistant turn")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def from_pku_saferlhf(record: dict, objective: str) -> dict:
    key = {"helpful": "better_response_id", "harmless": "safer_response_id"}[objective]
    best = int(record[key])
    responses = [record["response_0"], record["response_1"]]
    return {
        "prompt": [{"role": "user", "content": record["prompt"]}],
        "chosen": [{"role": "assistant", "content": responses[best]}],
        "rejected": [{"role": "assistant", "content": responses[1 - best]}],
        "objective": objective,
        "category": "pku-saferlhf",
    }


def _as_messages(value, role: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise TypeError(type(value).__name__)


def normalize_record(record: dict, where: str, hub_objective: str = "harmless") -> dict:
    """Any supported record -> the row format (id, objective, category and subtlety filled if missing)."""
    if {"response_0", "response_1", "safer_response_id"} <= set(record):
        row = from_pku_saferlhf(record, hub_objective)
    elif "prompt" not in record and isinstance(record.get("chosen"), str) and "\n\nHuman:" in record["chosen"]:
        row = from_hh_raw(record, where)
    elif {"prompt", "chosen", "rejected"} <= set(record):
        try:
            row = {
                "prompt": _as_messages(record["prompt"], "user"),
                "chosen": _as_messages(record["chosen"], "assistant"),
                "rejected": _as_messages(record["rejected"], "assistant"),
            }
        except TypeError as e:
            raise DataError(f"{where}: prompt/chosen/rejected must be strings or lists of {{role, content}}, got {e}")
    else:
        raise DataError(
            f"{where}: unrecognised record with keys {sorted(record)}; expected TRL preference columns "
            "{prompt, chosen, rejected}, Anthropic HH {chosen, rejected} transcripts, or PKU-SafeRLHF columns"
        )
    for key in ("objective", "category", "subtlety"):
        row[key] = str(record.get(key, row.get(key, "unknown")))
    row["id"] = str(record["id"]) if "id" in record else content_id(row)
    return row


def content_id(row: dict) -> str:
    payload = json.dumps([row["prompt"], row["chosen"], row["rejected"]], sort_keys=True)
    return "ex-" + hashlib.sha1(payload.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------------------------------
# Loading


def read_local_file(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            lines = path.read_text().splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        if suffix == ".json":
            data = json.loads(path.read_text())
            return data if isinstance(data, list) else data.get("data") or data.get("rows") or [data]
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
    except (json.JSONDecodeError, OSError) as e:
        raise DataError(f"{path}: cannot read as {suffix[1:]}: {e}") from None
    raise DataError(f"{path}: unsupported file type '{suffix}'; use .jsonl, .json or .parquet")


def read_hub_dataset(dataset_id: str, split: str) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; the user needs the id and the cause
        raise DataError(f"data.source '{dataset_id}' (split '{split}'): cannot load from the hub: {e}") from None
    return ds.to_list()


def load_source(source: str, size: int, seed: int, objectives: Iterable[str], hub_split: str = "train",
                hub_objective: str = "harmless") -> list[dict]:  # fmt: skip
    """All rows of a source in the row format, ids unique."""
    if source == "testbed:hh":
        from w2s_trl.testbed import generate_testbed

        return generate_testbed(size=size, seed=seed, objectives=list(objectives))
    path = Path(source)
    # a file is read directly; a folder (a saved hub dataset repo) or an id goes through `datasets`
    records = read_local_file(path) if path.is_file() else read_hub_dataset(source, hub_split)
    rows, seen = [], set()
    for i, record in enumerate(records):
        row = normalize_record(record, f"{source} row {i}", hub_objective)
        if row["id"] in seen:
            continue
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise DataError(f"data.source '{source}': no rows")
    return rows


def split_of(example_id: str, fractions: dict[str, float], salt: str = "w2s") -> str:
    """Deterministic split of one id: the hash places it in [0, 1), fractions cut that interval in SPLITS order."""
    u = int(hashlib.sha256(f"{salt}:{example_id}".encode()).hexdigest()[:12], 16) / 16**12
    edge = 0.0
    for name in SPLITS:
        edge += fractions[name]
        if u < edge:
            return name
    return SPLITS[-1]


def split_rows(rows: list[dict], fractions: dict[str, float], max_rows: dict[str, int | None]) -> dict[str, list[dict]]:
    """Disjoint splits by id; `max_rows` keeps the first rows of a split in id order (stable, size-independent)."""
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for row in rows:
        out[split_of(row["id"], fractions)].append(row)
    for name in SPLITS:
        out[name].sort(key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
        if max_rows.get(name):
            out[name] = out[name][: max_rows[name]]
        if not out[name]:
            raise DataError(f"split '{name}' is empty: raise data.size or data.fractions.{name}")
    return out


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
