"""Where a project keeps its files, and the error a user can act on."""

from dataclasses import dataclass
from pathlib import Path

from training.headlines import Aliases


class ProjectError(RuntimeError):
    """A problem with the environment rather than the input (a locked store, a missing model)."""


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def db(self) -> Path:
        return self.data / "headlines.sqlite"

    def built(self, task: str) -> Path:
        return self.root / "data" / "build" / task

    def bundle(self, task: str, model: str) -> Path:
        return self.root / "models" / task / model

    def aliases(self) -> Aliases:
        data = self.root / "data"
        return Aliases(data / "categories.csv", data / "category_aliases.csv")
