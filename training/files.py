"""Atomic writes: a reader sees the old file or folder or the new one, never half of one."""

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

# .<name>-<pid>-<random>: a temporary file or folder beside its target, named by its process so
# that one left by a killed process can be told from one still being written
_TEMP = re.compile(r"\.(?P<name>.+)-(?P<pid>\d+)-[a-z0-9_]{8}")


def temp_prefix(name: str) -> str:
    return f".{name}-{os.getpid()}-"


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files and folders that dead processes left in `folder` (a bundle
    being staged holds a whole model: 90 MB for TF-IDF)."""
    removed = []
    for p in folder.glob(".*-*-*"):
        m = _TEMP.fullmatch(p.name)
        if m and not alive(int(m["pid"])):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


FILE_MODE, DIR_MODE = 0o644, 0o755  # what we write is readable by other users (a service's)


def readable(folder: Path) -> None:
    """Files 0644 and folders 0755 under `folder` (safetensors and mkstemp write 0600)."""
    folder.chmod(DIR_MODE)
    for p in folder.rglob("*"):
        if not p.is_symlink():
            p.chmod(DIR_MODE if p.is_dir() else FILE_MODE)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """A hard link where the file system allows (model weights are hundreds of MB), else a copy.
    For a private work folder's files only: a served copy is a real copy (export.copy_served)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def ensure_free(needs: Mapping[Path, int]) -> None:
    """Fail up front, naming the folder, when a file system has less free space than the folders
    on it need (bytes, summed per file system). On a full disk some writers fail far from the
    cause: onnx's shape inference (in C++) leaves a truncated graph, which protobuf then reports
    as "Wire format was corrupt" in the middle of the int8 export."""
    by_device: dict[int, tuple[Path, int, int]] = {}  # device -> (first folder, need, free)
    for folder, need in needs.items():
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        device = existing.stat().st_dev
        first, total, free = by_device.get(device, (folder, 0, shutil.disk_usage(existing).free))
        by_device[device] = (first, total + need, free)
    for folder, need, free in by_device.values():
        if free < need:
            raise OSError(errno.ENOSPC, f"{folder}: not enough free space: this needs about "
                          f"{need / 2**20:,.0f} MB, the file system has {free / 2**20:,.0f} MB")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
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
    remove_leftovers(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
    work = tmp / out.name  # the same name as the final folder, for tools that copy it
    work.mkdir()
    try:
        yield work
        if out.exists():
            os.replace(out, tmp / "old")
        os.replace(work, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
