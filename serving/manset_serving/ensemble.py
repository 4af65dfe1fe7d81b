"""The ensemble family: member bundles in sub-folders, their probabilities blended by weight.

config.json names the members (`{"members": {"tfidf": 0.4, "bert": 0.6}}`: sub-folder → weight,
the weights chosen on the validation split at training time). Each member is a bundle with its
own manifest (a BERT member without hf/, which the ONNX predictor does not read), and the
ensemble's manifest lists every member file too: a member file must have the same digest in both,
so the member is read through the digests the ensemble was shipped with.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from manset_serving.bundle import MANIFEST, Bundle


def _member(bundle: Bundle, name: str) -> Bundle:
    """A member bundle, after checking that its manifest is the one the ensemble lists and that
    it lists the same digests for the same files."""
    bundle.read(f"{name}/{MANIFEST}")  # the member's manifest, checked against ours
    member = Bundle(bundle.folder / name)
    ours = {f[len(name) + 1:]: d for f, d in bundle.manifest["files"].items()
            if f.startswith(f"{name}/") and f != f"{name}/{MANIFEST}"}
    if ours != member.manifest["files"]:
        raise bundle.error(f"member {name!r} lists other files than manifest.json does for it",
                           f"{name}/{MANIFEST}")
    return member


@dataclass(frozen=True)
class EnsemblePredictor:
    labels: list[str]
    members: list[tuple[float, Any]]  # (weight, predictor)

    @classmethod
    def load(cls, bundle: Bundle, int8: bool,
             load_member: Callable[[Bundle, bool], Any]) -> "EnsemblePredictor":
        """`load_member` loads a member bundle as its family's predictor (models.py's)."""
        members = bundle.config().get("members")
        if not isinstance(members, dict) or len(members) < 2 or not all(
                isinstance(n, str) and "/" not in n and isinstance(w, int | float) and w >= 0
                for n, w in members.items()) or not np.isclose(sum(members.values()), 1.0):
            raise bundle.error("'members' must map two or more member folders to weights that "
                               "sum to 1", "config.json")
        loaded = [(float(w), load_member(_member(bundle, name), int8))
                  for name, w in members.items()]
        labels = bundle.labels(len(loaded[0][1].labels))
        for (_, p), name in zip(loaded, members, strict=True):
            if p.labels != labels:
                raise bundle.error(f"member {name!r} has labels {p.labels}, the ensemble "
                                   f"{labels}", f"{name}/labels.json")
        return cls(labels, loaded)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return sum((w * p.predict_proba(texts) for w, p in self.members if w > 0),
                   np.zeros((len(texts), len(self.labels))))
