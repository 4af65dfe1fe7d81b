"""Where the served bundles live: models/<task>/champion/.

Training writes each run's bundle to models/<task>/<family>/ (the last run of that family, for
inspection). Only when a run becomes the registered champion is its bundle copied, as a whole
folder swapped in by rename, to models/<task>/champion/, and champion.json written beside it
(registered version and run id). `manset predict`, the HTTP service and the Docker image read
champion/ by default, so a losing run never changes what is served.
"""

import json
from pathlib import Path
from typing import Any

CHAMPION = "champion"
RECORD = "champion.json"


def champion_dir(models: Path, task: str) -> Path:
    return Path(models) / task / CHAMPION


def exported_tasks(models: Path) -> list[str]:
    """Tasks with a champion bundle under `models`, sorted."""
    return sorted(p.parent.parent.name for p in Path(models).glob(f"*/{CHAMPION}/manifest.json"))


def record(models: Path, task: str) -> dict[str, Any]:
    """champion.json of a task: {"version", "mlflow_run_id", ...}; {} when absent or unreadable
    (it only labels the bundle, which carries its own run id)."""
    try:
        out = json.loads((Path(models) / task / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}
