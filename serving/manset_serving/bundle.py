"""A bundle folder, read through its manifest and nothing else.

manifest.json lists every file of the bundle with its SHA-256. A file is read only when the
manifest lists it, only from inside the folder (no `..`, no absolute path, no symbolic link),
and only as the bytes that were hashed, so a file cannot change between the check and its use.
A file the manifest does not list is never read. Any fault is a BundleError: one line naming
the bundle and the file.
"""

import hashlib
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # manifest["format_version"]; bumped when a reader could misread a bundle
MAX_MANIFEST_BYTES = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}")


class BundleError(ValueError):
    """A bundle that is missing, altered or malformed."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_name(name: object) -> bool:
    """A plain relative path inside the folder: no '..', no absolute path, no drive, no '\\'."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and ":" not in p.parts[0] and \
        name == p.as_posix()


class Bundle:
    """An opened bundle: its manifest, checked for shape, and its files on request."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifest = self._read_manifest()

    def error(self, what: str, name: str | None = None) -> BundleError:
        where = self.folder / name if name else self.folder
        return BundleError(f"{where}: {what}")

    def _read_manifest(self) -> dict[str, Any]:
        if not self.folder.is_dir():
            raise self.error("no such bundle folder; export one with `manset run` or "
                             "`manset train`")
        raw = self._read_file(MANIFEST, MAX_MANIFEST_BYTES, missing="not a manset bundle (no "
                              "manifest.json); export one with `manset run` or `manset train`")
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.error(f"not valid JSON ({e})", MANIFEST) from e
        if not isinstance(manifest, dict):
            raise self.error("the manifest must be a JSON object", MANIFEST)
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise self.error(f"format_version {version!r}, this reader knows {FORMAT_VERSION}; "
                             "re-export the bundle with this manset version", MANIFEST)
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            raise self.error("'files' must map file names to SHA-256 digests", MANIFEST)
        for name, digest in files.items():
            if not _safe_name(name) or name == MANIFEST:
                raise self.error(f"file entry {name!r} is not a plain path inside the bundle",
                                 MANIFEST)
            if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                raise self.error(f"file entry {name!r} has no SHA-256 digest", MANIFEST)
        for key in ("model", "task"):
            if not isinstance(manifest.get(key), str):
                raise self.error(f"'{key}' must be a string", MANIFEST)
        return manifest

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def run_id(self) -> str | None:
        run = self.manifest.get("mlflow_run_id")
        return run if isinstance(run, str) else None

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def _read_file(self, name: str, limit: int | None = None, missing: str = "missing") -> bytes:
        """The bytes of a regular file inside the folder; symbolic links anywhere on the way are
        refused (O_NOFOLLOW on the file, a check on every folder above it)."""
        path = self.folder / name
        for parent in list(PurePosixPath(name).parents)[:-1]:
            if (self.folder / parent).is_symlink():
                raise self.error(f"'{parent}' is a symbolic link; a bundle holds plain files",
                                 name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError as e:
            raise self.error(missing, name) from e
        except OSError as e:  # ELOOP: a symbolic link
            if path.is_symlink():
                raise self.error("a symbolic link; a bundle holds plain files", name) from e
            raise self.error(f"cannot be read ({e.strerror})", name) from e
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise self.error("not a regular file", name)
            data = f.read(limit + 1 if limit else -1)
        if limit and len(data) > limit:
            raise self.error(f"larger than {limit} bytes", name)
        return data

    def read(self, name: str) -> bytes:
        """A file the manifest lists, after checking its bytes against the listed digest."""
        if not self.has(name):
            raise self.error("needed but not listed in manifest.json", name)
        data = self._read_file(name, missing="listed in the manifest but missing")
        if sha256_bytes(data) != self.manifest["files"][name]:
            raise self.error("checksum differs from manifest.json; the bundle was altered", name)
        return data

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.error(f"not valid JSON ({e})", name) from e

    def verify_all(self) -> None:
        """Every listed file present and unchanged (a service checks this before it swaps)."""
        for name in self.manifest["files"]:
            self.read(name)

    def labels(self, width: int) -> list[str]:
        """labels.json: `width` distinct strings, one per model output."""
        labels = self.json("labels.json")
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise self.error("must be a list of label strings", "labels.json")
        if len(set(labels)) != len(labels):
            raise self.error("labels repeat", "labels.json")
        if len(labels) != width:
            raise self.error(f"{len(labels)} labels for a model with {width} outputs",
                             "labels.json")
        return labels

    def names(self, labels: list[str]) -> dict[str, dict[str, str]]:
        """label_names.json (label → {"en", "tr"}) when the bundle has it, else {}."""
        if not self.has(NAMES_FILE):
            return {}
        names = self.json(NAMES_FILE)
        if not isinstance(names, dict) or not all(
                isinstance(v, dict) and all(isinstance(s, str) for s in v.values())
                for v in names.values()):
            raise self.error("must map labels to {'en': ..., 'tr': ...}", NAMES_FILE)
        return {lb: names[lb] for lb in labels if lb in names}

    def config(self) -> dict[str, Any]:
        cfg = self.json("config.json")
        if not isinstance(cfg, dict):
            raise self.error("must be a JSON object", "config.json")
        return cfg


NAMES_FILE = "label_names.json"  # label → {"en", "tr"}, in bundles whose labels are codes
INT8_FILE = "model.int8.onnx"  # a BERT bundle's quantised model, when it kept one
# ...which it keeps only when it loses at most this much test macro-F1 against fp32 (DESIGN.md)
INT8_TOLERANCE = 0.005
INT8_PROMISE = f"within {INT8_TOLERANCE * 100:g} point macro-F1 of fp32"  # for help texts
