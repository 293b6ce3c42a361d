"""Stage `data`: load a preference source into one row format and split it by stable groups (SCIENCE.md 1, 7).

Row format (shared by ground truth and weak labels): `id`, `objective`, `category`, `subtlety`, `group` (rows of
one group share a split: the same prompt, or a testbed template family), and TRL's conversational preference columns
`prompt`, `chosen`, `rejected` (lists of {role, content} messages). A row must differ in its final assistant turn only;
malformed rows are skipped and counted, or fatal with `data.on_invalid: error`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from w2s_trl.errors import DataError, path_exists

SPLITS = ("weak_train", "w2s_train", "test")
# a turn marker is followed by a space, or ends the text or its line: an empty turn ("\n\nAssistant:\n\nHuman: ...")
# is a turn of its own, not text glued to the previous one
HH_TURN = re.compile(r"\n\n(Human|Assistant):(?: |(?=\n)|$)")


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
    if len(chosen) < 2:
        raise DataError(f"{where}: the transcript has no Human turn before the final Assistant turn")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


PKU_KEYS = {"helpful": "better_response_id", "harmless": "safer_response_id"}


def _response_id(record: dict, key: str) -> int:
    value = record[key]
    if value not in (0, 1) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{key} must be 0 or 1, got {repr(value)[:30]}")
    return int(value)


def from_pku_saferlhf(record: dict, objective: str) -> dict:
    best = _response_id(record, PKU_KEYS[objective])
    for key in ("prompt", "response_0", "response_1"):
        if not isinstance(record[key], str):
            raise TypeError(f"{key} is {repr(record[key])[:30]}, not text")
    responses = [record["response_0"], record["response_1"]]
    # both ground truths, relative to this row's chosen: +1 the objective prefers chosen, -1 it prefers rejected
    preferences = {obj: 1 if _response_id(record, key) == best else -1 for obj, key in PKU_KEYS.items() if key in record}
    return {
        "prompt": [{"role": "user", "content": record["prompt"]}],
        "chosen": [{"role": "assistant", "content": responses[best]}],
        "rejected": [{"role": "assistant", "content": responses[1 - best]}],
        "objective": objective,
        "category": "pku-saferlhf",
        "preferences": preferences,
    }


ROLES = ("system", "user", "assistant", "tool")
NULLABLE = ("id", "group", "objective", "category", "subtlety")  # metadata whose null means "absent"


def _as_messages(value, role: str) -> list[dict[str, str]]:
    """A string (one message of `role`) or a non-empty list of {role, content} messages with a known role and text
    content; anything else raises TypeError naming what was found."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise TypeError("an empty list" if isinstance(value, list) else type(value).__name__)
    out = []
    for m in value:
        if not isinstance(m, dict) or not {"role", "content"} <= set(m):
            raise TypeError(f"a message without role/content ({str(m)[:60]})")
        if m["role"] not in ROLES:
            raise TypeError(f"a message with role {str(m['role'])[:30]!r} (allowed: {', '.join(ROLES)})")
        who = f"{'an' if m['role'][:1] in 'aeiou' else 'a'} {m['role']} message"
        if m.get("tool_calls") or m.get("function_call"):  # only role and content are kept: the call would vanish
            raise TypeError(f"{who} with tool_calls (the row keeps role and content only, so the call it makes would "
                            "be lost); leave such rows out or write the call into the content")
        content = m["content"]
        if isinstance(content, list) and content and all(  # HF / OpenAI text parts: [{"type": "text", "text": ...}]
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise TypeError(f"{who} whose content is {type(content).__name__}, not text")
        out.append({"role": m["role"], "content": content})
    return out


def normalize_record(record: dict, where: str, hub_objective: str = "harmless", objective: str | None = None) -> dict:
    """Any supported record -> the row format (id, objective, category, subtlety and group filled if missing); a
    malformed record raises a DataError that names it."""
    try:
        row = _normalize(record, where, hub_objective)
        if objective is not None and record.get("objective") is None:  # a subset that is one objective (HH harmless-base)
            row["objective"] = objective
        return row
    except KeyError as e:
        keys = ", ".join(sorted(map(str, record))) if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{where}: missing field {e} (fields present: {keys}); a preference row needs prompt/chosen/"
                        "rejected, or chosen/rejected transcripts") from None  # fmt: skip
    except (TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{where}: malformed record ({type(e).__name__}: {e})") from None


def _normalize(record: dict, where: str, hub_objective: str) -> dict:
    # a null metadata field (a column that only some rows of a parquet / HF export fill) is an absent one, not the text
    # "None": null ids would all share the id 'None', null groups would put every such row into one split; so is a
    # null prompt beside conversations that hold their prompt (UltraFeedback). Other nulls are reported as what they are
    absent = {k for k in NULLABLE if k in record and record[k] is None}
    if record.get("prompt", "") is None and _conversational(record):
        absent.add("prompt")
    record = {k: v for k, v in record.items() if k not in absent}
    if any(isinstance(record.get(k), str) and "\r\n\r\nHuman:" in record[k] for k in ("prompt", "chosen")):
        # HH text saved with Windows line ends inside the strings: the turn markers are "\n\nHuman:" once normalised
        record = {k: v.replace("\r\n", "\n") if k in ("prompt", "chosen", "rejected") and isinstance(v, str) else v
                  for k, v in record.items()}  # fmt: skip
    if {"response_0", "response_1", "safer_response_id"} <= set(record):
        row = from_pku_saferlhf(record, hub_objective)
    elif "prompt" not in record and isinstance(record.get("chosen"), str) and "\n\nHuman:" in record["chosen"]:
        row = from_hh_raw(record, where)
    elif _hh_prompt(record):
        row = from_hh_raw(_hh_with_prompt(record), where)
    elif {"chosen", "rejected"} <= set(record) and ("prompt" in record or _conversational(record)):
        row = split_prompt(record, where)
    else:
        raise DataError(
            f"{where}: unrecognised record with keys {sorted(record)}; expected TRL preference columns "
            "{prompt, chosen, rejected} (or conversational chosen/rejected with the prompt inside), Anthropic HH "
            "{chosen, rejected} transcripts, or PKU-SafeRLHF columns"
        )
    check_row(row, where)
    for key in ("objective", "category", "subtlety"):
        row[key] = str(record.get(key, row.get(key, "unknown")))
    row["id"] = str(record["id"]) if "id" in record else content_id(row)
    # rows that share a prompt share a split (several pairs per prompt, as in UltraFeedback); a source may group more
    row["group"] = str(record["group"]) if "group" in record else prompt_group(row["prompt"])
    return row


def _hh_prompt(record: dict) -> bool:
    """TRL's standard columns holding Anthropic HH text: `prompt` is a transcript ('\\n\\nHuman: ...\\n\\nAssistant:'),
    as in Dahoas/full-hh-rlhf and rm-static (chosen/rejected are the responses) or HH exports that add a prompt column
    (chosen/rejected are the whole transcripts again)."""
    prompt = record.get("prompt")
    return (isinstance(prompt, str) and prompt.lstrip(" ").startswith("\n\nHuman:")
            and prompt.rstrip(" ").endswith("\n\nAssistant:")
            and all(isinstance(record.get(k), str) for k in ("chosen", "rejected")))  # fmt: skip


def _hh_with_prompt(record: dict) -> dict:
    """Whole transcripts for `from_hh_raw`: a side that already holds the transcript is kept, a response is appended to
    the prompt (one space after a closing 'Assistant:', as in the raw format)."""
    prompt = record["prompt"]
    out = {}
    for side in ("chosen", "rejected"):
        text = record[side]
        if not text.lstrip(" ").startswith("\n\nHuman:"):
            text = prompt + (" " if prompt.endswith(":") and not text[:1].isspace() else "") + text
        out[side] = text
    return out



def _conversational(record: dict) -> bool:
    return all(isinstance(record.get(k), list) and record[k] and isinstance(record[k][0], dict)
               for k in ("chosen", "rejected"))  # fmt: skip


def split_prompt(record: dict, where: str) -> dict:
    """TRL's preference formats -> prompt messages + one final assistant message per side. Implicit-prompt rows
    (chosen/rejected are whole conversations, alignment-handbook style, with or without a `prompt` column that
    repeats the first user turn) go through `trl.extract_prompt`: the shared prefix of the two conversations is the
    prompt, so the user turn is never doubled. What is left of each side must be one assistant message."""
    from trl.data_utils import extract_prompt

    try:
        chosen = _as_messages(record["chosen"], "assistant")
        rejected = _as_messages(record["rejected"], "assistant")
        prompt = _as_messages(record["prompt"], "user") if "prompt" in record else []
    except TypeError as e:
        raise DataError(f"{where}: prompt/chosen/rejected must be strings or lists of {{role, content}}, got {e}")
    if chosen == rejected:
        raise DataError(f"{where}: chosen and rejected are identical")
    if len(chosen) > 1 or len(rejected) > 1 or chosen[0]["role"] != "assistant":  # the prompt is (also) inside
        if prompt and chosen[: len(prompt)] == prompt and rejected[: len(prompt)] == prompt:
            chosen, rejected = chosen[len(prompt) :], rejected[len(prompt) :]
        elif prompt and chosen[:1] == rejected[:1] and chosen[0]["role"] != "assistant":
            # the prompt column repeats the conversation's first turns (UltraFeedback binarized: prompt "Q",
            # chosen [user Q, assistant A]); keep what the conversation does not (a leading system message)
            overlap = next((k for k in range(min(len(prompt), len(chosen)), 0, -1)
                            if prompt[-k:] == chosen[:k] == rejected[:k]), 0)  # fmt: skip
            prompt = prompt[:-overlap] if overlap else []
        extracted = extract_prompt({"chosen": prompt + chosen, "rejected": prompt + rejected})
        prompt, chosen, rejected = extracted["prompt"], extracted["chosen"], extracted["rejected"]
    if not prompt:
        raise DataError(f"{where}: no prompt: the row needs a `prompt`, or chosen/rejected conversations that start "
                        "with the same user turn")
    if len(chosen) != 1 or len(rejected) != 1:
        raise DataError(f"{where}: chosen and rejected differ before their final assistant turn "
                        f"({len(chosen)} and {len(rejected)} differing messages); a pair may differ in its last turn only")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


# No model here reads further than ~32k tokens (~130k characters); a longer response could never be scored whole (a
# response is never cut, SCIENCE.md 7) and would only make a stage allocate for it. A prompt is cut from the left.
MAX_RESPONSE_CHARS = 200_000
MAX_PROMPT_CHARS = 400_000


def check_row(row: dict, where: str) -> None:
    """A pair must differ in its final assistant turn only (SCIENCE.md 7); anything else is malformed. A response
    longer than any model reads is malformed too; an overlong prompt loses its oldest text (`cut_prompt`)."""
    for side in ("chosen", "rejected"):
        messages = row[side]
        if not messages or messages[-1]["role"] != "assistant" or not str(messages[-1]["content"]).strip():
            raise DataError(f"{where}: {side} must end with a non-empty assistant turn")
        size = len(messages[-1]["content"])
        if size > MAX_RESPONSE_CHARS:
            raise DataError(f"{where}: the {side} response has {size:,} characters, more than any model reads "
                            f"({MAX_RESPONSE_CHARS:,}); a response is never cut, so the pair is left out")
    for m in (*row["prompt"], *row["chosen"], *row["rejected"]):
        try:
            str(m["content"]).encode("utf-8")
        except UnicodeEncodeError as e:  # JSON's "\ud83d" escape alone (an emoji cut in half): no tokenizer takes it
            raise DataError(f"{where}: the {m['role']} message {str(m['content'])[:30]!r}... is not valid Unicode "
                            f"text (a lone surrogate at character {e.start}: an emoji cut in half?); repair or drop "
                            "the row") from None
    row["prompt"] = cut_prompt(row["prompt"])
    # "Paris." and "Paris. " are one answer (a WordPiece reward model reads the same tokens: a sure tie), not a
    # preference; leading whitespace can matter (code indentation)
    bare = lambda side: [(m["role"], str(m["content"]).rstrip()) for m in row[side]]  # noqa: E731
    if bare("chosen") == bare("rejected"):
        differ = " but for trailing whitespace" if row["chosen"] != row["rejected"] else ""
        raise DataError(f"{where}: chosen and rejected are identical{differ}")


def cut_prompt(prompt: list[dict], limit: int = MAX_PROMPT_CHARS) -> list[dict]:
    """A prompt of more than `limit` characters without its oldest turns (a leading system message kept), then
    without the start of its oldest remaining turn: the left cut every stage makes by tokens, done once by
    characters so no tokenizer is handed megabytes."""
    if sum(len(m["content"]) for m in prompt) <= limit:
        return prompt
    head = prompt[:1] if prompt[0]["role"] == "system" and len(prompt) > 1 else []
    if head and len(head[0]["content"]) > limit // 2:  # a system message alone may not take the whole budget
        head = [{**head[0], "content": head[0]["content"][-(limit // 2) :]}]
    rest = prompt[len(head) :]
    while len(rest) > 1 and sum(len(m["content"]) for m in head + rest) > limit:
        rest = rest[1:]
    over = sum(len(m["content"]) for m in head + rest) - limit
    if over > 0:
        rest = [{**rest[0], "content": rest[0]["content"][over:]}, *rest[1:]]
    return head + rest


def prompt_group(prompt: list[dict]) -> str:
    return "p-" + hashlib.sha1(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:12]


def content_id(row: dict) -> str:
    payload = json.dumps([row["prompt"], row["chosen"], row["rejected"]], sort_keys=True)
    return "ex-" + hashlib.sha1(payload.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------------------------------
# Loading


LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")  # files read directly (line numbers); others go through `datasets`
MAX_FILE_BYTES = 2 * 1024**3  # a data file larger than this is read through `datasets` (data.datasets[].data_files)


def read_local_file(path: Path) -> list[tuple[str, object]]:
    """(where, record) per record of a local file, `where` 1-based ("line 11" of a JSONL file, "row 3" of the rest).
    A JSONL line that is not JSON becomes a DataError in place of its record, so one bad line is skipped and counted
    like any malformed row instead of failing the file (and is reported with its own line number)."""
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{suffix}'; use {', '.join(LOCAL_SUFFIXES)}")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DataError(f"{path}: {path.stat().st_size / 1024**3:.1f} GiB is too large to read at once; list it "
                            "under data.datasets with data_files so `datasets` reads it in chunks")
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return [(f"row {i}", r) for i, r in enumerate(pq.read_table(path).to_pylist(), 1)]
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark is not part of the data
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the file as UTF-8") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    except Exception as e:  # noqa: BLE001 - pyarrow raises its own types for a file that is not parquet
        raise DataError(f"{path}: cannot read as parquet: {type(e).__name__}: {e}") from None
    lines = False
    if suffix == ".json":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            # JSON Lines under a .json name (what datasets' Dataset.to_json writes by default): read line by line
            first = text.lstrip().split("\n", 1)[0]
            lines = isinstance(e, json.JSONDecodeError) and e.msg == "Extra data" and _is_record(first)
            if not lines:
                raise DataError(f"{path}: not valid JSON: {e}") from None
    if suffix == ".json" and not lines:
        if isinstance(data, dict):
            data = data.get("data") or data.get("rows") or [data]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of records (or {{\"data\": [...]}}), got {type(data).__name__}")
        return [(f"row {i}", r) for i, r in enumerate(data, 1)]
    out = []
    for i, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 and friends may sit inside a string
        line = line.removesuffix("\r")
        if line.strip():
            try:
                out.append((f"line {i}", json.loads(line)))
            except (json.JSONDecodeError, RecursionError) as e:
                msg = f"column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                out.append((f"line {i}", DataError(f"not valid JSON ({msg})")))
    return out


def _is_record(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (json.JSONDecodeError, RecursionError):
        return False


def read_hub_dataset(dataset_id: str, split: str, name: str | None = None, data_dir: str | None = None,
                     data_files=None, columns: list[str] | None = None) -> list[dict]:  # fmt: skip
    """A dataset through `datasets.load_dataset` (hub id, saved repo folder, or a builder such as `json`/`parquet`
    with `data_files`), the same call as TRL's `get_dataset`; `columns` selects columns like TRL's DatasetConfig."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, name, split=split, data_dir=data_dir, data_files=data_files)
        if columns:
            ds = ds.select_columns(columns)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; the user needs the id and the cause
        where = "".join(f", {k} '{v}'" for k, v in (("name", name), ("data_dir", data_dir), ("data_files", data_files))
                        if v)  # fmt: skip
        raise DataError(f"data source '{dataset_id}' (split '{split}'{where}): cannot load: {e}") from None
    return ds.to_list()


@dataclass
class Loaded:
    """A source's rows in the row format, and what was left out on the way (SCIENCE.md 7)."""

    rows: list[dict]
    invalid: int = 0
    invalid_examples: list[str] = field(default_factory=list)  # "line 17: why"
    duplicates: int = 0

    def summary(self) -> dict:
        return {"rows": len(self.rows), "invalid": self.invalid, "invalid_examples": self.invalid_examples,
                "duplicates": self.duplicates}  # fmt: skip


DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow", ".csv", ".tsv", ".txt", ".gz", ".bz2", ".xz", ".zst", ".zip")
DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json", "README.md")


def check_local_source(source: str) -> None:
    """At recipe load: a source that exists on disk must be a data file of a supported type or a dataset folder (data
    files within two levels, as a saved hub repo has), not any folder or file (`/etc`, a model folder)."""
    path = Path(source)
    if source == "testbed:hh" or not path_exists(source):
        return
    if path.is_file():
        if path.suffix.lower() not in LOCAL_SUFFIXES:
            raise ValueError(f"'{source}' is a {path.suffix or 'suffix-less'} file; a data file is one of "
                             f"{', '.join(LOCAL_SUFFIXES)}. Compressed or CSV files load through `datasets`: "
                             f"data.datasets: [{{path: json (or csv), data_files: [{source}]}}]")  # fmt: skip
        return
    from w2s_trl.models import WEIGHT_SUFFIXES

    weights = [p for p in path.glob("*") if p.suffix in WEIGHT_SUFFIXES]
    if (path / "config.json").is_file() and weights:
        raise ValueError(f"'{source}' is a model folder, not data (config.json and {weights[0].name}); give a data "
                         "file, a dataset folder or a hub dataset id")  # fmt: skip
    found = any(p.suffix.lower() in DATA_SUFFIXES or p.name in DATASET_MARKERS
                for pattern in ("*", "*/*", "*/*/*") for p in path.glob(pattern))  # fmt: skip
    if not found:
        raise ValueError(f"'{source}' is a folder without data files ({', '.join(DATA_SUFFIXES)} within two levels); "
                         "give a data file, a saved dataset repo folder, or a hub id")


def single_source(source: str, hub_split: str = "train", hub_name: str | None = None,
                  hub_data_dir: str | dict[str, str] | None = None, objectives: Iterable[str] = ()) -> list[dict]:  # fmt: skip
    """`data.source` with its hub_* fields as entries of `data.datasets` (TRL's DatasetConfig fields + objective): a
    data_dir mapping is one entry per objective (HH-RLHF: {harmless: harmless-base, helpful: helpful-base})."""
    if isinstance(hub_data_dir, dict):
        return [{"path": source, "name": hub_name, "data_dir": d, "split": hub_split, "objective": obj}
                for obj, d in hub_data_dir.items() if obj in set(objectives)]  # fmt: skip
    return [{"path": source, "name": hub_name, "data_dir": hub_data_dir, "split": hub_split}]


def read_entry(entry: dict) -> list[tuple[str, object]]:
    """(where, record) of one `data.datasets` entry: a local file directly (line numbers, malformed lines counted),
    anything else (hub id, saved repo folder, builder + data_files) through `datasets.load_dataset`."""
    path = Path(entry["path"])
    if path_exists(path, "file") and not entry.get("data_files"):
        records = read_local_file(path)
        if entry.get("columns"):
            keep = entry["columns"]
            records = [(w, {k: r[k] for k in keep if k in r} if isinstance(r, dict) else r) for w, r in records]
        return records
    rows = read_hub_dataset(entry["path"], entry.get("split") or "train", entry.get("name"), entry.get("data_dir"),
                            entry.get("data_files"), entry.get("columns"))  # fmt: skip
    return [(f"row {i}", r) for i, r in enumerate(rows, 1)]


def mixture_counts(sizes: list[int], fractions: list[float]) -> list[int]:
    """TRL's `get_dataset` rule for `fraction`: shares normalised to one, the mixture as large as it can be without
    oversampling any dataset; each dataset keeps its first round(share * total) rows."""
    weights = [f / sum(fractions) for f in fractions]
    total = min(n / w for n, w in zip(sizes, weights) if w > 0)
    return [min(n, round(w * total)) for n, w in zip(sizes, weights)]


def load_source(source: str, size: int = 0, seed: int = 0, objectives: Iterable[str] = ("helpful", "harmless"),
                hub_split: str = "train", hub_objective: str = "harmless", on_invalid: str = "skip",
                testbed_options=None, hub_name: str | None = None,
                hub_data_dir: str | dict[str, str] | None = None, datasets: list[dict] | None = None) -> Loaded:  # fmt: skip
    """All valid rows of a source (or of the mixture `datasets`: entries with TRL's DatasetConfig fields and an
    optional `objective`), ids unique. A malformed row is skipped and counted (`on_invalid: skip`, with a few named
    in the log) or stops the load (`error`); a source with no valid row is always an error, and so are two rows that
    share an id but not their content."""
    if not datasets and source == "testbed:hh":
        from w2s_trl.testbed import generate_testbed

        rows = generate_testbed(size=size, seed=seed, objectives=list(objectives), options=testbed_options)
        return Loaded(attach_preferences(rows))
    entries = datasets or single_source(source, hub_split, hub_name, hub_data_dir, objectives)
    label = source if not datasets else "data.datasets"
    out, parts = Loaded([]), []
    for n, entry in enumerate(entries):
        name = entry["path"] + (f" ({entry['objective']})" if entry.get("objective") else "")
        part = []
        for where, record in read_entry(entry):
            where = f"{name} {where}"
            try:
                if isinstance(record, DataError):
                    raise DataError(f"{where}: {record}")
                if not isinstance(record, dict):
                    raise DataError(f"{where}: expected a mapping, got {type(record).__name__}")
                row = normalize_record(record, where, hub_objective, entry.get("objective"))
                if len(entries) > 1 and "id" in record:
                    row["id"] = f"{n}:{row['id']}"  # datasets that each number their rows 1, 2, ... do not clash
                part.append(row)
            except DataError as e:
                if on_invalid == "error":
                    raise DataError(f"{e} (data.on_invalid is 'error'; set it to 'skip' to skip and count such rows)") from None
                out.invalid += 1
                if len(out.invalid_examples) < 5:
                    out.invalid_examples.append(str(e).removeprefix(f"{source} ") if not datasets else str(e))
        parts.append(part)
    if datasets and any(e.get("fraction") is not None for e in datasets):
        empty = [e["path"] for e, part in zip(datasets, parts) if not part]
        if empty:  # TRL's rule would shrink the whole mixture to nothing
            raise DataError(f"data.datasets: {', '.join(empty)} has no valid rows, so no mixture with its fraction "
                            "exists; fix or remove it")  # fmt: skip
        parts = [part[:k] for part, k in zip(parts, mixture_counts([len(p) for p in parts], [e["fraction"] for e in datasets]))]
    seen: dict[str, str] = {}
    for row in (row for part in parts for row in part):
        content = content_id(row)
        if row["id"] in seen:
            if seen[row["id"]] != content:
                raise DataError(f"{label}: two rows share the id '{row['id'][:80]}' but differ in prompt, chosen or "
                                "rejected; give them distinct ids (or drop the `id` field to derive one from content)")
            out.duplicates += 1
            continue
        seen[row["id"]] = content
        out.rows.append(row)
    attach_preferences(out.rows)
    if not out.rows:
        first = f"; first problem: {out.invalid_examples[0]}" if out.invalid_examples else ""
        raise DataError(f"{label}: no valid rows ({out.invalid} malformed){first}")
    if out.invalid:
        share = out.invalid / (out.invalid + len(out.rows) + out.duplicates)
        loud = "WARNING: " if share > 0.10 else ""
        print(f"[w2s-trl] data: {loud}skipped {out.invalid} malformed rows of {label} ({share:.1%}), e.g. "
              + "; ".join(out.invalid_examples[:3]), flush=True)  # fmt: skip
    return out


def attach_preferences(rows: list[dict]) -> list[dict]:
    """Each row's ground truth per objective, relative to its own chosen/rejected: `preferences` = {objective: +1 if
    the objective prefers the row's chosen, -1 if its rejected}. Rows that share a prompt and both responses (a
    testbed conflict row and its harmless twin; one record labelled for two objectives) pool what they know, so a
    `gold` reward of the competing objective can score a target-objective pair. In place; returns the rows."""
    pooled: dict[tuple, dict] = {}

    def key(row):
        sides = sorted([json.dumps(row["chosen"], sort_keys=True), json.dumps(row["rejected"], sort_keys=True)])
        return json.dumps(row["prompt"], sort_keys=True), sides[0], sides[1]

    for row in rows:
        first = json.dumps(row["chosen"], sort_keys=True)
        known = pooled.setdefault(key(row), {})
        for obj, pref in (row.get("preferences") or {row.get("objective", "unknown"): 1}).items():
            known.setdefault(obj, (first, pref))  # the first row to state an objective's order wins
    for row in rows:
        mine = json.dumps(row["chosen"], sort_keys=True)
        row["preferences"] = {obj: pref if side == mine else -pref for obj, (side, pref) in pooled[key(row)].items()}
    return rows


def known_objectives(row: dict) -> dict:
    """{objective: +1 / -1} for each objective whose ground truth the row carries (relative to its chosen)."""
    return row.get("preferences") or {row.get("objective"): 1}


def objective_rows(rows: list[dict], objective: str) -> list[dict]:
    """The rows that know `objective`'s ground truth (`preferences`), oriented by it (chosen = what that objective
    prefers; `objective` set to it), one per distinct (prompt, chosen, rejected). Rows without it are left out."""
    out, seen = [], set()
    for row in rows:
        prefs = known_objectives(row)
        pref = prefs.get(objective)
        if pref is None:
            continue
        oriented = {**row, "objective": objective, "preferences": {k: v * pref for k, v in prefs.items()}}
        if row.get("objective") != objective:  # the same pair, read for another objective: its own id
            oriented["id"] = f"{row['id']}@{objective}"
        if pref < 0:
            oriented["chosen"], oriented["rejected"] = row["rejected"], row["chosen"]
        key = json.dumps([oriented["prompt"], oriented["chosen"], oriented["rejected"]], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(oriented)
    return out


def check_objectives(rows: list[dict], needed: list[str], source: str) -> dict[str, int]:
    """Rows per objective whose ground truth they carry (`preferences`, else `objective`); an error, at the data
    stage, when an objective that a weak reward model trains on has none (an export's "Helpful" is not "helpful")."""
    counts: dict[str, int] = {}
    for row in rows:
        for objective in known_objectives(row):
            counts[str(objective)] = counts.get(str(objective), 0) + 1
    present = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"
    missing = [o for o in needed if not counts.get(o)]
    if missing:
        raise DataError(f"{source}: no weak_train row carries the ground truth of {', '.join(missing)}, which the weak "
                        f"reward trains a model on (rows by objective: {present}); give each row an `objective` field "
                        f"({' or '.join(needed)}) or a `preferences` mapping of them")  # fmt: skip
    other = sum(1 for row in rows if not set(known_objectives(row)) & set(needed))
    if other:
        print(f"[w2s-trl] data: {other} weak_train rows carry none of the weak reward's objectives ({', '.join(needed)})"
              f" and train no weak model (rows by objective: {present})")  # fmt: skip
    return counts


def split_of(key: str, fractions: dict[str, float], salt: str = "w2s") -> str:
    """Deterministic split of one group key: the hash places it in [0, 1), fractions cut that interval in SPLITS
    order."""
    u = int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:12], 16) / 16**12
    edge = 0.0
    for name in SPLITS:
        edge += fractions[name]
        if u < edge:
            return name
    return SPLITS[-1]


def split_rows(rows: list[dict], fractions: dict[str, float], max_rows: dict[str, int | None],
               seed: int = 0) -> dict[str, list[dict]]:  # fmt: skip
    """Disjoint splits by group (a row's `group`, else its id), so that rows sharing a prompt or a template never
    straddle two splits. Stable: a row's split depends on its group and the data seed only. `max_rows` keeps the first
    rows of a split in hash order of (group, id), so twins of a group stay together."""
    salt = "w2s" if seed == 0 else f"w2s-{seed}"
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for row in rows:
        out[split_of(row.get("group", row["id"]), fractions, salt)].append(row)
    digest = lambda text: hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()  # noqa: E731
    for name in SPLITS:
        out[name].sort(key=lambda r: (digest(r.get("group", r["id"])), digest(r["id"])))
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
