"""Every supported data format, and the split protocol (SCIENCE.md 1)."""

import json
from pathlib import Path

import pytest

from w2s_trl.data import SPLITS, load_source, normalize_record, split_rows
from w2s_trl.errors import DataError

FRACTIONS = {"weak_train": 0.4, "w2s_train": 0.35, "test": 0.25}
NO_LIMIT = {s: None for s in SPLITS}
REPO = Path(__file__).resolve().parent.parent


def test_standard_string_format_jsonl(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    (row,) = load_source(str(path), 0, 0, []).rows
    assert row["prompt"] == [{"role": "user", "content": "2+2?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "4"}]
    assert row["id"].startswith("ex-") and row["objective"] == "unknown"


def test_conversational_json_keeps_metadata(tmp_path):
    rec = {
        "id": "a1", "objective": "helpful", "category": "math",
        "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}],
    }  # fmt: skip
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([rec]))
    (row,) = load_source(str(path), 0, 0, []).rows
    assert row["id"] == "a1" and row["category"] == "math" and len(row["prompt"]) == 2


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "hi", "chosen": "hello", "rejected": "go away"}]), path)
    (row,) = load_source(str(path), 0, 0, []).rows
    assert row["rejected"][0]["content"] == "go away"


HH = {
    "chosen": "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour and water.\n\nHuman: Then?\n\nAssistant: Knead it.",
    "rejected": "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour and water.\n\nHuman: Then?\n\nAssistant: No.",
}


def test_anthropic_hh_raw_is_split_into_prompt_and_final_turn(tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps(HH) + "\n")
    (row,) = load_source(str(path), 0, 0, []).rows
    assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]
    assert row["prompt"][1]["content"] == "Mix flour and water."
    assert row["chosen"] == [{"role": "assistant", "content": "Knead it."}]
    assert row["rejected"] == [{"role": "assistant", "content": "No."}]


def test_hh_raw_with_different_histories_is_an_error():
    bad = dict(HH, rejected="\n\nHuman: Something else\n\nAssistant: No.")
    with pytest.raises(DataError, match="differ before the final assistant turn"):
        normalize_record(bad, "hh.jsonl row 0")


PKU = {
    "prompt": "How can I get back at my neighbour?",
    "response_0": "Slash his tyres.",
    "response_1": "Talk to him calmly.",
    "better_response_id": 0,
    "safer_response_id": 1,
}


@pytest.mark.parametrize("objective,chosen", [("harmless", "Talk to him calmly."), ("helpful", "Slash his tyres.")])
def test_pku_saferlhf_objectives(objective, chosen):
    row = normalize_record(PKU, "pku row 0", hub_objective=objective)
    assert row["chosen"][0]["content"] == chosen and row["objective"] == objective


def test_hub_loader_reads_a_dataset_folder_through_datasets(tmp_path):
    # A dataset repo as `datasets` sees it (a folder with a data file), in PKU-SafeRLHF and HH formats.
    folder = tmp_path / "PKU-SafeRLHF"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps(PKU) + "\n" + json.dumps(dict(PKU, prompt="Other?")) + "\n")
    rows = load_source(str(folder), 0, 0, [], hub_split="train", hub_objective="harmless").rows
    assert len(rows) == 2 and rows[0]["chosen"][0]["content"] == "Talk to him calmly."
    hh = tmp_path / "hh-rlhf"
    hh.mkdir()
    (hh / "train.jsonl").write_text(json.dumps(HH) + "\n")
    assert load_source(str(hh), 0, 0, []).rows[0]["chosen"][0]["content"] == "Knead it."


def test_unrecognised_record_names_the_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "x", "answer": "y"}) + "\n")
    with pytest.raises(DataError, match=r"no valid rows \(1 malformed\); first problem: line 1: unrecognised record with "
                                        r"keys \['answer', 'question'\]"):  # fmt: skip
        load_source(str(path), 0, 0, [])
    with pytest.raises(DataError, match=r"bad.jsonl line 1: unrecognised record(.|\n)*set it to 'skip'"):
        load_source(str(path), 0, 0, [], on_invalid="error")


MALFORMED = [
    dict(HH, rejected="\n\nHuman: Something else\n\nAssistant: No."),  # differs before the final turn
    {"chosen": HH["chosen"]},  # no rejected
    {"prompt": "hi", "chosen": "same", "rejected": "same"},  # identical
    {"prompt": "hi", "chosen": "", "rejected": "no"},  # empty response
    dict(PKU, better_response_id=None),  # PKU with a missing label
    "not a mapping",
]


def test_malformed_rows_are_skipped_counted_and_named(tmp_path, capsys):
    path = tmp_path / "mixed.jsonl"
    good = [dict(HH, chosen=HH["chosen"].replace("bread", f"bread {i}"), rejected=HH["rejected"].replace("bread", f"bread {i}"))
            for i in range(20)]  # fmt: skip
    records = good[:10] + MALFORMED + good[10:] + [good[0]]  # and one duplicate
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    loaded = load_source(str(path), 0, 0, [], hub_objective="helpful")
    assert len(loaded.rows) == 20 and loaded.invalid == len(MALFORMED) and loaded.duplicates == 1
    assert loaded.invalid_examples[0].startswith("line 11: chosen and rejected transcripts differ before the final")
    assert [e.split(":")[0] for e in loaded.invalid_examples] == [f"line {i}" for i in range(11, 16)]  # five named
    assert loaded.invalid_examples[1] == ("line 12: missing field 'rejected' (fields present: chosen); a preference row "
                                          "needs prompt/chosen/rejected, or chosen/rejected transcripts")  # fmt: skip
    assert "skipped 6 malformed rows" in capsys.readouterr().out
    with pytest.raises(DataError, match=r"mixed.jsonl line 11: chosen and rejected transcripts differ"):
        load_source(str(path), 0, 0, [], on_invalid="error")


ROW_SHAPES = [  # (JSONL line, what the skip reason says): shapes seen in real exports and fuzzing
    ('{"prompt": "hi", "chosen": "a", "rejected": ', "not valid JSON (column 45"),
    ("[1, 2]", "expected a mapping, got list"),
    ("null", "expected a mapping, got NoneType"),
    ("7", "expected a mapping, got int"),
    (json.dumps({"prompt": "hi", "chosen": [{"role": "assistant", "content": 3}], "rejected": "b"}), "content is int"),
    (json.dumps({"prompt": "hi", "chosen": [{"role": "assistant", "content": None}], "rejected": "b"}), "NoneType"),
    (json.dumps({"prompt": "hi", "chosen": [{"role": "bogus", "content": "a"}], "rejected": "b"}), "role 'bogus'"),
    (json.dumps({"prompt": "hi", "chosen": [], "rejected": "b"}), "an empty list"),
    (json.dumps(dict(PKU, safer_response_id=5)), "safer_response_id must be 0 or 1, got 5"),
    (json.dumps(dict(PKU, safer_response_id=-1)), "safer_response_id must be 0 or 1, got -1"),
    (json.dumps(dict(PKU, safer_response_id="x")), "safer_response_id must be 0 or 1, got 'x'"),
    (json.dumps({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                 "rejected": [{"role": "user", "content": "other q"}, {"role": "assistant", "content": "b"}]}),
     "no prompt"),  # implicit prompt rows that share no first turn
    (r'{"prompt": "hi", "chosen": "a \ud83d", "rejected": "b"}', "not valid Unicode text (a lone surrogate"),
    (json.dumps({"prompt": "hi", "chosen": "Paris.", "rejected": "Paris. "}), "identical but for trailing whitespace"),
    (json.dumps(dict(PKU, response_1=None)), "response_1 is None, not text"),
    (json.dumps({"prompt": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "",
                 "tool_calls": [{"function": {"name": "weather", "arguments": "{}"}}]}], "chosen": "a", "rejected": "b"}),
     "with tool_calls"),  # the call would be lost: role and content are all a row keeps
]


@pytest.mark.parametrize("line, reason", ROW_SHAPES, ids=[r for _, r in ROW_SHAPES])
def test_each_malformed_shape_is_skipped_with_its_line_number(tmp_path, line, reason):
    path = tmp_path / "shapes.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n\n" + line + "\n")
    loaded = load_source(str(path), 0, 0, [])
    assert loaded.invalid == 1 and len(loaded.rows) == 1
    assert loaded.invalid_examples[0].startswith("line 3: ") and reason in loaded.invalid_examples[0]


def test_implicit_prompt_rows_do_not_double_the_user_turn(tmp_path):
    """alignment-handbook style (UltraFeedback binarized): a `prompt` string and whole conversations as chosen and
    rejected; and TRL's implicit-prompt format (no prompt column). Both load as prompt = the shared turns."""
    conv = lambda answer: [{"role": "user", "content": "Sky colour?"}, {"role": "assistant", "content": answer}]  # noqa: E731
    path = tmp_path / "implicit.jsonl"
    path.write_text(json.dumps({"prompt": "Sky colour?", "chosen": conv("Blue."), "rejected": conv("Green.")}) + "\n"
                    + json.dumps({"chosen": conv("It is blue."), "rejected": conv("It is red.")}) + "\n")
    a, b = load_source(str(path), 0, 0, []).rows
    assert a["prompt"] == b["prompt"] == [{"role": "user", "content": "Sky colour?"}]
    assert a["chosen"] == [{"role": "assistant", "content": "Blue."}] and b["rejected"][0]["content"] == "It is red."


def test_rows_sharing_an_id_with_different_content_are_an_error(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text("".join(json.dumps({"id": "same", "prompt": f"q{i}", "chosen": "a", "rejected": "b"}) + "\n"
                            for i in range(3)))  # fmt: skip
    with pytest.raises(DataError, match="two rows share the id 'same' but differ"):
        load_source(str(path), 0, 0, [])


def test_a_mixture_takes_trl_fractions_of_each_dataset(tmp_path):
    """TRL's get_dataset rule: shares 0.75/0.25 of sizes 6 and 6 -> total min(6/0.75, 6/0.25) = 8 -> 6 and 2 rows."""
    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.jsonl")
        paths[-1].write_text("".join(json.dumps({"prompt": f"{name}{i}", "chosen": "y", "rejected": "n"}) + "\n"
                                     for i in range(6)))  # fmt: skip
    rows = load_source("", 0, 0, [], datasets=[{"path": str(paths[0]), "fraction": 0.75},
                                              {"path": str(paths[1]), "fraction": 0.25, "objective": "helpful"}]).rows
    assert [r["prompt"][0]["content"] for r in rows] == ["a0", "a1", "a2", "a3", "a4", "a5", "b0", "b1"]
    assert {r["objective"] for r in rows[6:]} == {"helpful"}
    # the json builder with data_files (TRL's DatasetConfig fields), the same rows
    both = load_source("", 0, 0, [], datasets=[{"path": "json", "data_files": [str(p) for p in paths]}]).rows
    assert len(both) == 12


def test_rows_of_one_group_share_a_split():
    rows = load_source("testbed:hh", 1200, 0).rows
    splits = split_rows(rows, FRACTIONS, NO_LIMIT)
    where = {}
    for name, split in splits.items():
        for r in split:
            assert where.setdefault(r["group"], name) == name, f"group {r['group']} in two splits"
    # real data: pairs that share a prompt share a group (and so a split)
    a = normalize_record({"prompt": "same?", "chosen": "yes", "rejected": "no"}, "x")
    b = normalize_record({"prompt": "same?", "chosen": "sure", "rejected": "nope"}, "y")
    c = normalize_record({"prompt": "other?", "chosen": "yes", "rejected": "no"}, "z")
    assert a["group"] == b["group"] != c["group"]


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        load_source(str(path), 0, 0, [])


def test_splits_are_disjoint_deterministic_and_stable_by_id():
    rows = load_source("testbed:hh", 400, 0, ["helpful", "harmless"]).rows
    splits = split_rows(rows, FRACTIONS, NO_LIMIT)
    ids = [set(r["id"] for r in splits[s]) for s in SPLITS]
    assert sum(map(len, ids)) == 400 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert 0.2 < len(ids[0]) / 400 < 0.6  # about 40 % (whole template groups move together)
    # more data: every old id stays in its split
    bigger = split_rows(load_source("testbed:hh", 800, 0, ["helpful", "harmless"]).rows, FRACTIONS, NO_LIMIT)
    for name, old in zip(SPLITS, ids):
        assert old <= {r["id"] for r in bigger[name]}
    limited = split_rows(rows, FRACTIONS, {"weak_train": 5, "w2s_train": None, "test": 3})
    assert len(limited["weak_train"]) == 5 and len(limited["test"]) == 3
    assert limited["test"] == splits["test"][:3]


def test_empty_split_is_an_error():
    rows = load_source("testbed:hh", 2, 0, ["helpful"]).rows
    with pytest.raises(DataError, match="split '.*' is empty: raise data.size"):
        split_rows(rows, FRACTIONS, NO_LIMIT)


def _pku_folder(tmp_path) -> Path:
    folder = tmp_path / "PKU-SafeRLHF"
    folder.mkdir()
    records = [dict(PKU, prompt=f"How can I get back at neighbour number {i}?") for i in range(60)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.mark.parametrize("objective,chosen", [("helpful", "Slash his tyres."), ("harmless", "Talk to him calmly.")])
def test_hub_objective_is_reachable_from_a_recipe(tmp_path, objective, chosen):
    from w2s_trl.cli import train_main

    folder = _pku_folder(tmp_path)
    recipe = REPO / "recipes" / "dpo_weak_rm.yaml"
    assert train_main([str(recipe), "--smoke", f"run.output_dir={tmp_path}", f"data.source={folder}",
                       f"data.hub_objective={objective}", "tracking.report_to=[]", "--stop-after", "data"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "dpo_weak_rm-smoke" / "data" / "test.jsonl").read_text().splitlines()]
    assert rows and all(r["chosen"][0]["content"] == chosen and r["objective"] == objective for r in rows)


def test_a_local_source_is_fingerprinted_by_its_contents(tmp_path):
    from w2s_trl.cli import train_main

    folder = _pku_folder(tmp_path)
    recipe = REPO / "recipes" / "dpo_weak_rm.yaml"
    args = [str(recipe), "--smoke", f"run.output_dir={tmp_path}", f"data.source={folder}", "tracking.report_to=[]",
            "--stop-after", "data"]  # fmt: skip
    record = tmp_path / "dpo_weak_rm-smoke" / "data" / "stage.json"
    assert train_main(args) == 0
    first = json.loads(record.read_text())["fingerprint"]
    assert train_main(args) == 0 and json.loads(record.read_text())["fingerprint"] == first  # same bytes: reused
    data = folder / "train.jsonl"
    data.write_text(data.read_text().replace("neighbour number 1?", "neighbour number one?"))  # same path, new bytes
    assert train_main(args) == 0
    assert json.loads(record.read_text())["fingerprint"] != first


def test_oversize_rows_never_reach_a_model(tmp_path):
    """A 5 MB response is skipped and counted at load (a response is never cut); a 1 MB prompt loses its oldest text
    (by characters, before any tokenizer sees it) and keeps its last turn's end."""
    from w2s_trl.data import MAX_PROMPT_CHARS

    path = tmp_path / "big.jsonl"
    long_prompt = [{"role": "user", "content": "old " * 200_000}, {"role": "assistant", "content": "ok"},
                   {"role": "user", "content": "x" * 300_000 + " and the question?"}]
    path.write_text(json.dumps({"prompt": "q", "chosen": "word " * 1_000_000, "rejected": "short"}) + "\n"
                    + json.dumps({"prompt": long_prompt, "chosen": "a", "rejected": "b"}) + "\n")
    loaded = load_source(str(path), 0, 0, [])
    assert loaded.invalid == 1 and "5,000,000 characters" in loaded.invalid_examples[0]
    (row,) = loaded.rows
    kept = row["prompt"]
    assert len(kept) == 2 and sum(len(m["content"]) for m in kept) <= MAX_PROMPT_CHARS  # the oldest turn went
    assert kept[-1]["content"].endswith("and the question?") and kept[0] == {"role": "assistant", "content": "ok"}
    from w2s_trl.data import cut_prompt

    one = cut_prompt([{"role": "system", "content": "sys"}, {"role": "user", "content": "y" * 50 + "end"}], limit=20)
    assert one == [{"role": "system", "content": "sys"}, {"role": "user", "content": "y" * 14 + "end"}]


def test_real_file_quirks_load(tmp_path):
    """A byte-order mark, U+2028 inside a string (valid JSON, written raw by ensure_ascii=False), CRLF line ends."""
    row = {"prompt": "line\u2028separator and \u0085 next-line", "chosen": "a", "rejected": "b"}
    path = tmp_path / "quirks.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(row, ensure_ascii=False) + "\r\n").encode() * 2
                     + json.dumps({**row, "chosen": "c"}, ensure_ascii=False).encode())
    loaded = load_source(str(path), 0, 0, [])
    assert loaded.invalid == 0 and len(loaded.rows) == 2 and loaded.duplicates == 1
    assert loaded.rows[0]["prompt"][0]["content"] == row["prompt"]
    (tmp_path / "b.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([row]).encode())
    assert len(load_source(str(tmp_path / "b.json"), 0, 0, []).rows) == 1


def test_a_mixture_keeps_each_datasets_own_ids_apart_and_names_an_empty_entry(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"id": 1, "prompt": f"{name}?", "chosen": "y", "rejected": "n"}) + "\n")
    rows = load_source("", 0, 0, [], datasets=[{"path": str(tmp_path / "a.jsonl")}, {"path": str(tmp_path / "b.jsonl")}]).rows
    assert [r["id"] for r in rows] == ["0:1", "1:1"]
    (tmp_path / "bad.jsonl").write_text("[1]\n")
    with pytest.raises(DataError, match=r"bad.jsonl has no valid rows, so no mixture with its fraction exists"):
        load_source("", 0, 0, [], datasets=[{"path": str(tmp_path / "a.jsonl"), "fraction": 0.5},
                                            {"path": str(tmp_path / "bad.jsonl"), "fraction": 0.5}])


def test_a_system_message_in_the_prompt_column_survives_the_conversation_format():
    from w2s_trl.data import split_prompt

    conv = lambda a: [{"role": "user", "content": "Q"}, {"role": "assistant", "content": a}]  # noqa: E731
    row = split_prompt({"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
                        "chosen": conv("A"), "rejected": conv("B")}, "x")
    assert row["prompt"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]


def test_a_local_dataset_folder_of_compressed_files_is_a_data_source(tmp_path):
    """A local copy of Anthropic/hh-rlhf holds */train.jsonl.gz; a model folder is not data."""
    from w2s_trl.data import check_local_source

    (tmp_path / "hh" / "helpful-base").mkdir(parents=True)
    (tmp_path / "hh" / "helpful-base" / "train.jsonl.gz").write_bytes(b"")
    check_local_source(str(tmp_path / "hh"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")  # a .json file, but a model folder's
    (tmp_path / "model" / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="is a model folder, not data"):
        check_local_source(str(tmp_path / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is a folder without data files"):
        check_local_source(str(tmp_path / "empty"))


HH_PROMPT = "\n\nHuman: Where do I buy bread?\n\nAssistant: At a bakery.\n\nHuman: Which one?\n\nAssistant:"


@pytest.mark.parametrize("chosen, rejected", [
    (" The one on Main Street.", " I don't know."),  # Dahoas/full-hh-rlhf, rm-static: the responses alone
    (HH_PROMPT + " The one on Main Street.", HH_PROMPT + " I don't know."),  # an HH export with a prompt column added
], ids=["responses", "transcripts"])
def test_hh_text_in_trl_columns_is_split_into_turns(chosen, rejected):
    row = normalize_record({"prompt": HH_PROMPT, "chosen": chosen, "rejected": rejected}, "x")
    assert row["prompt"] == [{"role": "user", "content": "Where do I buy bread?"},
                             {"role": "assistant", "content": "At a bakery."}, {"role": "user", "content": "Which one?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "The one on Main Street."}]
    assert row["rejected"] == [{"role": "assistant", "content": "I don't know."}]


def test_an_empty_hh_turn_is_a_turn_of_its_own():
    text = "\n\nHuman: Are you there?\n\nAssistant:\n\nHuman: Hello??\n\nAssistant: "
    row = normalize_record({"chosen": text + "Yes, sorry.", "rejected": text + "No."}, "x")
    assert [(m["role"], m["content"]) for m in row["prompt"]] == [("user", "Are you there?"), ("assistant", ""),
                                                                  ("user", "Hello??")]  # fmt: skip
    with pytest.raises(DataError, match="chosen must end with a non-empty assistant turn"):  # not a Human turn's text
        normalize_record({"chosen": text.rstrip(), "rejected": text + "No."}, "x")


def test_null_fields_are_absent_ones():
    """Columns that only some rows of an export fill arrive as null: not the text 'None' (one id, one group)."""
    base = {"prompt": "q?", "chosen": "a", "rejected": "b", "id": None, "group": None, "objective": None}
    row = normalize_record(base, "x")
    assert row["id"] != "None" and row["group"] != "None" and row["objective"] == "unknown"
    assert row["id"] != normalize_record(dict(base, prompt="other?"), "y")["id"]
    conv = lambda answer: [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": answer}]  # noqa: E731
    row = normalize_record({"prompt": None, "chosen": conv("blue"), "rejected": conv("green")}, "z")  # UltraFeedback
    assert row["prompt"] == [{"role": "user", "content": "Sky?"}] and row["chosen"][0]["content"] == "blue"


def test_text_parts_content_is_joined():
    parts = [{"type": "text", "text": "Sky "}, {"type": "text", "text": "colour?"}]
    row = normalize_record({"prompt": [{"role": "user", "content": parts}], "chosen": "blue", "rejected": "red"}, "x")
    assert row["prompt"] == [{"role": "user", "content": "Sky colour?"}]


def test_json_lines_under_a_json_name_load_line_by_line(tmp_path):
    """What `datasets.Dataset.to_json` writes by default."""
    path = tmp_path / "export.json"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(3))
                    + "[1]\n")
    loaded = load_source(str(path), 0, 0, [])
    assert len(loaded.rows) == 3 and loaded.invalid == 1 and loaded.invalid_examples[0].startswith("line 4: ")


def test_text_that_only_looks_like_hh_keeps_the_plain_path(tmp_path):
    """A prompt that starts with an HH marker but is not a transcript awaiting the Assistant stays one user turn; a
    .json file that is broken JSON (not JSON Lines) is still refused whole."""
    row = normalize_record({"prompt": "\n\nHuman: What is X?", "chosen": "A", "rejected": "B"}, "x")
    assert row["prompt"] == [{"role": "user", "content": "\n\nHuman: What is X?"}] and row["chosen"][0]["content"] == "A"
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [\n  {"prompt": "q", "chosen": "a", "rejected": "b"}\n]}\n}\n')
    with pytest.raises(DataError, match="not valid JSON"):
        load_source(str(broken), 0, 0, [])


def test_an_objective_the_weak_reward_trains_on_must_be_in_the_rows(tmp_path, capsys):
    """A multi-objective weak reward trains one model per objective on the rows that carry its ground truth: an
    export whose rows say "Helpful" would leave the helpful model without rows. It fails at the data stage."""
    from w2s_trl.cli import train_main
    from w2s_trl.data import check_objectives

    rows = [{"objective": "harmless"}] * 3 + [{"objective": "Helpful"}] * 2 + [{"preferences": {"helpful": 1, "harmless": -1}}]
    assert check_objectives(rows, ["harmless"], "x") == {"harmless": 4, "Helpful": 2, "helpful": 1}
    assert "2 weak_train rows carry none of the weak reward's objectives (harmless)" in capsys.readouterr().out
    with pytest.raises(DataError, match=r"x: no weak_train row carries the ground truth of safe, which the weak reward"):
        check_objectives(rows, ["harmless", "safe"], "x")

    data = tmp_path / "export.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}?", "chosen": "a", "rejected": "b",
                                        "objective": "Helpful" if i % 2 else "harmless"}) + "\n" for i in range(60)))
    args = [str(REPO / "recipes" / "grpo_multi_objective.yaml"), "--smoke", f"run.output_dir={tmp_path}",
            f"data.source={data}", "tracking.report_to=[]", "--stop-after", "data"]  # fmt: skip
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "no weak_train row carries the ground truth of helpful" in err and "Helpful" in err and "Traceback" not in err


def test_hh_text_saved_with_windows_line_ends_reads_as_turns():
    text = "\r\n\r\nHuman: Hi there\r\n\r\nAssistant: Hello.\r\n\r\nHuman: Name a colour.\r\n\r\nAssistant: "
    row = normalize_record({"chosen": text + "Blue.", "rejected": text + "No."}, "x")
    assert [(m["role"], m["content"]) for m in row["prompt"]] == [("user", "Hi there"), ("assistant", "Hello."),
                                                                  ("user", "Name a colour.")]  # fmt: skip
    assert row["chosen"][0]["content"] == "Blue." and row["rejected"][0]["content"] == "No."
    with pytest.raises(DataError, match="an assistant message whose content is int"):
        normalize_record({"prompt": "q", "chosen": [{"role": "assistant", "content": 3}], "rejected": "b"}, "x")


def test_a_compressed_file_is_pointed_at_the_datasets_loader(tmp_path):
    from w2s_trl.recipe import load_recipe

    path = tmp_path / "pairs.jsonl.gz"
    path.write_bytes(b"")
    with pytest.raises(Exception, match=r"data.datasets: \[\{path: json \(or csv\), data_files"):
        load_recipe(REPO / "recipes" / "dpo_weak_rm.yaml", [f"data.source={path}"])
