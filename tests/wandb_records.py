"""Read back what W&B wrote offline: the records of a `run-*.wandb` file (a LevelDB-style log of protobuf `Record`s
behind a 7-byte W&B header, in 32 KiB blocks), so tests check config, summary, tables, images and artifacts."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7  # LevelDB log: blocks, and each chunk's header (crc32 4, length 2, type 1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pos, pending = [], 7, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def read_run(run_dir: Path) -> dict:
    """{"config": {key: value}, "summary": {key: value}, "history_keys": set, "artifacts": [names], "files": [...]}."""
    file = next(Path(run_dir).glob("run-*.wandb"))
    config, summary, keys, artifacts = {}, {}, set(), []
    for r in records(file):
        kind = r.WhichOneof("record_type")
        if kind in ("config", "run"):  # the run record carries the config given to wandb.init
            updates = r.config.update if kind == "config" else r.run.config.update
            config.update({u.key: json.loads(u.value_json) for u in updates})
        elif kind == "summary":
            summary.update({(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in r.summary.update})
        elif kind == "history":
            keys.update(item.key or "/".join(item.nested_key) for item in r.history.item)
        elif kind == "artifact":
            artifacts.append((r.artifact.name, [e.path for e in r.artifact.manifest.contents]))
    return {"config": config, "summary": summary, "history_keys": keys, "artifacts": artifacts,
            "files": sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).glob("files/**/*") if p.is_file())}
