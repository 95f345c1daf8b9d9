"""Shared storage for workers on several hosts: object-store URLs (``s3://bucket/prefix`` and any
other fsspec URL) for the landing folder, dbt's artifacts and the Data Docs.

A worker keeps working on local folders (DuckDB, dbt and Great Expectations read and write files):
the landing URL is mirrored into the worker's landing folder before a load, and the dbt artifacts
and the Data Docs are uploaded after the step that wrote them. Credentials and the endpoint come
from the object store's own environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...), never
from the settings. MLflow's artifacts go to their URL directly (``crm.settings``,
``ml.registry``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import fsspec

log = logging.getLogger(__name__)

# What the last mirror copied: remote path -> its version (ETag, else size and modification time).
MIRROR_STATE = ".mirror-state.json"
# Hidden files are files being written (erasure's rewrites, a mirror's downloads) or the mirror's state.
_HIDDEN = "."


def _filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def _version(info: dict) -> str:
    etag = info.get("ETag") or info.get("etag")
    return str(etag) if etag else f"{info.get('size')}:{info.get('LastModified') or info.get('mtime')}"


def mirror(url: str, local_dir: Path) -> dict[str, int]:
    """Make ``local_dir`` hold what ``url`` holds: download new and changed files (a re-delivered
    partition is a changed file), delete local files the store no longer has. Each download is
    written beside its target and renamed, so a load never reads half a file. Returns counts."""
    fs, root = _filesystem(url)
    if not fs.exists(root):
        raise FileNotFoundError(f"landing URL {url} does not exist (or is not readable with these credentials)")
    remote = {
        path[len(root) + 1 :]: info
        for path, info in fs.find(root, detail=True).items()
        if info.get("type", "file") == "file"
        and not any(part.startswith(_HIDDEN) for part in path[len(root) + 1 :].split("/"))
    }
    local_dir.mkdir(parents=True, exist_ok=True)
    state_path = local_dir / MIRROR_STATE
    state: dict[str, str] = json.loads(state_path.read_text()) if state_path.exists() else {}
    counts = {"downloaded": 0, "unchanged": 0, "deleted": 0}
    for relative, info in sorted(remote.items()):
        target, version = local_dir / relative, _version(info)
        if state.get(relative) == version and target.exists():
            counts["unchanged"] += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.download")
        fs.get_file(f"{root}/{relative}", str(partial))
        os.replace(partial, target)
        state[relative] = version
        counts["downloaded"] += 1
    for relative in sorted(set(state) - set(remote)):
        (local_dir / relative).unlink(missing_ok=True)
        del state[relative]
        counts["deleted"] += 1
    partial_state = state_path.with_name(f"{MIRROR_STATE}.tmp")
    partial_state.write_text(json.dumps(state, indent=0, sort_keys=True))
    os.replace(partial_state, state_path)
    log.info("mirrored %s into %s: %s", url, local_dir, counts)
    return counts


def upload(local_dir: Path, url: str, names: tuple[str, ...] = ()) -> int:
    """Copy the files of ``local_dir`` (or only its entries ``names``, files or folders) under ``url``,
    replacing what is there. Returns how many files were written."""
    fs, root = _filesystem(url)
    entries = [local_dir / name for name in names] if names else sorted(local_dir.iterdir())
    files = [
        path
        for entry in entries
        if entry.exists()
        for path in ([entry] if entry.is_file() else sorted(entry.rglob("*")))
        if path.is_file()
    ]
    for path in files:
        fs.put_file(str(path), f"{root}/{path.relative_to(local_dir).as_posix()}")
    log.info("uploaded %d files from %s to %s", len(files), local_dir, url)
    return len(files)


def write(url: str, relative: str, content: bytes) -> None:
    """Replace one file under ``url`` (an object is replaced whole: readers see the old or the new)."""
    fs, root = _filesystem(url)
    fs.pipe_file(f"{root}/{relative}", content)
