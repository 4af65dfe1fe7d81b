"""Atomic writes: a reader sees the old file or folder or the new one, never half of one."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE, DIR_MODE = 0o644, 0o755  # what we write is readable by other users (a service's)


def readable(folder: Path) -> None:
    """Files 0644 and folders 0755 under `folder` (safetensors and mkstemp write 0600)."""
    folder.chmod(DIR_MODE)
    for p in folder.rglob("*"):
        if not p.is_symlink():
            p.chmod(DIR_MODE if p.is_dir() else FILE_MODE)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, FILE_MODE)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out` to fill; swapped into place when the block succeeds,
    removed (leaving `out` as it was) when it raises."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    work = tmp / out.name  # the same name as the final folder, for tools that copy it
    work.mkdir()
    try:
        yield work
        if out.exists():
            os.replace(out, tmp / "old")
        os.replace(work, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
