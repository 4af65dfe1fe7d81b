"""Where a project keeps its files, and the error a user can act on."""

from dataclasses import dataclass
from pathlib import Path

from manset_serving.champion import champion_dir

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

    @property
    def models(self) -> Path:
        return self.root / "models"

    def bundle(self, task: str, family: str) -> Path:
        """The last run's bundle of a model family: written by every run, winning or not."""
        return self.models / task / family

    def champion(self, task: str) -> Path:
        """The registered champion's bundle: what predict and the service use."""
        return champion_dir(self.models, task)

    def aliases(self) -> Aliases:
        data = self.root / "data"
        return Aliases(data / "categories.csv", data / "category_aliases.csv")
