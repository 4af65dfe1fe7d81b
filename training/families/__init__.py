"""The model families and their one registry.

A family is a module (tfidf, use, ensemble) or a folder (bert) with `train(paths, task, cfg,
meta)`: fit on the task's built dataset, then `shipping.finish_run` evaluates, exports, tracks
and registers it. Two more functions are optional: `card_lines(info)` adds a section to the
bundle's model card, `member_refit(config)` lets an ensemble holding one of its bundles refit it
per source (leave-one-source-out). The record below is all the rest of manset needs: the command
line makes `manset train <name>` from it, with one option per field of its settings dataclass.

Another distribution adds a family without touching this package: it names a `Family` under the
entry-point group "manset.families", and its served predictor under "manset_serving.families"
(docs/training.md, "Adding a family").
"""

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from training.configs import BertTrainConfig, EnsembleConfig, TfidfConfig, UseConfig
from training.project import ProjectError

GROUP = "manset.families"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    name: str  # the manifest's "model", models/<task>/<name>/, `manset train <name>`
    summary: str  # the command's one-line help
    doc: str  # the command's help
    config: type  # its settings dataclass: the options, the --config keys, the run's params
    module: str  # where train() lives: imported when the family is used, not to list it
    extra: str | None = None  # the pip extra the module needs, named when it cannot import
    own_progress: bool = False  # it draws its own progress bars: no spinner over them

    def load(self) -> ModuleType:
        try:
            return importlib.import_module(self.module)
        except ImportError as e:
            if self.extra is None:
                raise
            raise ProjectError(f"the {self.name} family needs the {self.extra} extra ({e}): "
                               f"pip install -e '.[{self.extra}]'") from e

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """The module's train(paths, task, cfg, meta): a TrainResult (None on the processes of a
        multi-process run other than the main one)."""
        return self.load().train(*args, **kwargs)

    def card_lines(self, info: Any) -> list[str]:
        lines: Callable[[Any], list[str]] | None = getattr(self.load(), "card_lines", None)
        return lines(info) if lines else []


BUILT_IN = {f.name: f for f in (
    Family("tfidf", "Train the TF-IDF baseline.",
           "Train, evaluate, track and export the TF-IDF baseline. Every setting is an option, "
           "or a key of a --config TOML file.", TfidfConfig, "training.families.tfidf"),
    Family("bert", "Fine-tune BERT and export it to ONNX.",
           "Fine-tune BERT (Trainer): track, export to ONNX, register. Works under torchrun. "
           "Every setting is an option, or a key of a --config TOML file.", BertTrainConfig,
           "training.families.bert.train", extra="bert", own_progress=True),
    Family("use", "Train the Universal Sentence Encoder family.",
           "Train the multilingual Universal Sentence Encoder family (its embeddings under a "
           "logistic regression; numpy only): it holds up better on unseen outlets than TF-IDF. "
           "Needs the use extra.", UseConfig, "training.families.use"),
    Family("ensemble", "Blend the bundles of two or more families.",
           "Blend the bundles of two or more families of the built dataset (their last runs', "
           "or --bundles): the weights are chosen on the validation split, the blend tested "
           "against each member on the test rows, then tracked, exported (every member inside, "
           "checksummed) and registered like any run.", EnsembleConfig,
           "training.families.ensemble"),
)}


def all_families() -> dict[str, Family]:
    """The built-in families, then those other installed distributions name (entry points). A
    plugin that cannot load is left out with one warning line: it must not take every command
    down with it."""
    found = dict(BUILT_IN)
    for point in entry_points(group=GROUP):
        try:
            family = point.load()
        except Exception as e:  # whatever its import raises, it is the plugin's fault
            family = f"{type(e).__name__}: {e}"
        if not isinstance(family, Family) or family.name != point.name:
            log.warning("family %r (%s, entry point of %s) left out: %s", point.name,
                        point.value, GROUP, family if isinstance(family, str) else
                        f"not the Family named {point.name!r}")
            continue
        found.setdefault(family.name, family)  # a plugin never replaces a built-in family
    return found


def get(name: str) -> Family:
    if name in BUILT_IN:
        return BUILT_IN[name]
    known = all_families()
    if name not in known:
        raise ValueError(f"model family {name!r}: one of {', '.join(known)}")
    return known[name]
