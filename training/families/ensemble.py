"""The ensemble family: a TF-IDF bundle and a bundle of another family (BERT, or USE) of the
same dataset, their probabilities blended with the weight that scores best on the validation split
(never test).

The members are the bundles the families' last runs wrote (models/<task>/tfidf and .../bert or
.../use) or any other pair given by path. They are copied into the ensemble's bundle with what their
predictors read (a BERT member without its Hugging Face folder), the ensemble's manifest lists
every member file (manset_serving/ensemble.py), and they are scored through the same lean
predictors a service uses. The run reports the paired test of the blend against each member on
the test rows, so a blend that is no better than its best member says so.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import Dataset
from manset_serving import Model, load
from manset_serving.bundle import BundleError
from sklearn.metrics import f1_score

from training import compare, crosssource, dataset, evaluation, export, tracking
from training.configs import TfidfConfig, UseConfig, from_saved
from training.families import tfidf
from training.pipeline import Trained, TrainResult, finish_run
from training.project import Paths, ProjectError

FIRST = "tfidf"  # every blend has a TF-IDF member
SECONDS = ("bert", "use")  # the other member's family; a member's folder in the bundle
MEMBERS = (FIRST, "bert")  # the default pair
GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # the second member's weight, in steps of 0.05


def choose_weight(y: np.ndarray, tfidf: np.ndarray, second: np.ndarray) -> tuple[float, dict]:
    """The second member's weight with the best validation macro-F1 on the grid, and each
    weight's score. Among weights within 0.001 of the best, the one nearest an even blend: the
    validation split cannot tell such neighbours apart, and the even blend is the safer guess."""
    scores = {float(w): float(f1_score(y, ((1 - w) * tfidf + w * second).argmax(1),
                                       average="macro")) for w in GRID}
    best = max(scores.values())
    weight = min((w for w, s in scores.items() if s >= best - 0.001), key=lambda w: abs(w - 0.5))
    return weight, scores


def _member(paths: Paths, task: str, family: str, given: Path | None, fingerprint: str
            ) -> Model:
    folder = given or paths.bundle(task, family)
    try:
        model = load(folder)
    except BundleError as e:
        raise ProjectError(f"ensemble member {family}: {e}") from e
    if model.family != family or model.task != task:
        raise ProjectError(f"{folder}: a {model.task} {model.family} bundle, the ensemble needs "
                           f"a {task} {family} one")
    if model.bundle.manifest.get("dataset_fingerprint") != fingerprint:
        raise ProjectError(
            f"{folder}: trained on dataset {model.bundle.manifest.get('dataset_fingerprint')}, "
            f"the built {task} dataset is {fingerprint}; train the member again on it "
            f"(manset train {family} --task {task}) so the blend is chosen and tested on the "
            "same rows")
    return model


def train_ensemble(paths: Paths, task: str, tfidf: Path | None = None,
                   second: Path | None = None, meta: tracking.RunMeta | None = None,
                   family: str = "bert") -> TrainResult:
    """Blend the TF-IDF bundle with a bundle of `family` (bert or use); None: the last run's."""
    if family not in SECONDS:
        raise ValueError(f"--with {family!r}: one of {', '.join(SECONDS)}")
    dd, card = dataset.load(paths.built(task))
    models = {f: _member(paths, task, f, given, card.fingerprint)
              for f, given in zip((FIRST, family), (tfidf, second), strict=True)}
    labels = dd["train"].features["label"].names
    for model in models.values():
        if model.labels != labels:
            raise ProjectError(f"{model.bundle.folder}: labels {model.labels}, the dataset's "
                               f"{labels}")
    probas = {f: evaluation.memoised(m.predict_proba) for f, m in models.items()}
    x_val, y_val = list(dd["validation"]["text"]), np.array(dd["validation"]["label"])
    weight, scores = choose_weight(y_val, probas[FIRST](x_val), probas[family](x_val))
    weights = {FIRST: round(1 - weight, 2), family: weight}

    def blend(texts: list[str]) -> np.ndarray:
        return sum(w * probas[f](texts) for f, w in weights.items())  # type: ignore[return-value]

    params = {f"{family}_weight": weight, **{f"member_{f}_run_id": m.bundle.run_id or "none"
                                             for f, m in models.items()},
              **{f"member_{f}_bundle": str(m.bundle.folder) for f, m in models.items()}}
    tracking.configure(paths.root)
    with tracking.run(task, "ensemble", paths.root, params, meta, {f"{family}_weight": weight}
                      ) as run_id:
        tracking.log_dataset(dd, card.fingerprint, task, str(paths.built(task)))
        for w, s in scores.items():
            tracking.log_curve(f"validation_macro_f1_by_{family}_weight", s, round(w * 100))
        x_test, y_test = list(dd["test"]["text"]), np.array(dd["test"]["label"])
        pred = blend(x_test).argmax(1)
        paired = {f: compare.paired_bootstrap(y_test, pred, proba(x_test).argmax(1))
                  for f, proba in probas.items()}
        versus: dict[str, float] = {}
        for member, p in paired.items():
            versus |= {f"vs_{member}_delta_macro_f1": p.delta, f"vs_{member}_p_value": p.p_value,
                       f"member_{member}_test_macro_f1": float(models[member].bundle.manifest[
                           "metrics"].get("test_macro_f1", np.nan))}
        said = verdict(paired)
        tracking.set_tag("manset.ensemble_verdict", said)
        config = {"task": task, "members": weights, "verdict": said,
                  f"validation_macro_f1_by_{family}_weight": scores,
                  "member_run_ids": {f: m.bundle.run_id for f, m in models.items()}}
        finished = finish_run(paths, Trained(
            task, "ensemble", run_id, dd, card, blend, config,
            write=_writer({f: m.bundle.folder for f, m in models.items()}), metrics=versus,
            refit=_refit(models, weights)))
    result = finished.promote()  # once the run has ended
    result.note = " ".join(x for x in (f"The ensemble {said}.", result.note) if x)
    return result


def _refit(models: dict[str, Model], weights: dict[str, float]) -> crosssource.Refit | None:
    """The blend trained afresh on other rows (leave-one-source-out), with the members' settings
    and the chosen weight: for members that refit in minutes on a CPU (TF-IDF and USE). A BERT
    member would need a fine-tune per source: None."""
    if set(models) != {FIRST, "use"}:
        return None
    from training.families import use

    tfidf_cfg = from_saved(TfidfConfig, models[FIRST].bundle.config())
    use_cfg = from_saved(UseConfig, models["use"].bundle.config())
    vectors = use.Vectors()

    def refit(rows: Dataset) -> Callable[[list[str]], np.ndarray]:
        first = tfidf.proba_fn(tfidf.fit_rows(tfidf_cfg, rows),
                                  rows.features["label"].num_classes)
        second = use.proba_of(use.fit(use_cfg, rows, vectors), vectors)
        return lambda texts: (weights[FIRST] * first(texts) +
                              weights["use"] * second(texts)).argmax(1)
    return refit


def _writer(folders: dict[str, Path]) -> Callable[[Path, export.BundleInfo], None]:
    def write(folder: Path, info: export.BundleInfo) -> None:
        for family, src in folders.items():
            export.copy_served(src, folder / family)
        export.finish(folder, info)

    return write


def verdict(paired: dict[str, compare.Paired]) -> str:
    """Whether the blend beat each member beyond chance (paired bootstrap on the test rows)."""
    lost = [f for f, p in paired.items() if not p.significant]
    if not lost:
        return "beats both members beyond chance (paired bootstrap on the test rows)"
    return f"does not beat {' and '.join(lost)} beyond chance: " + "; ".join(
        f"{f} {paired[f].delta:+.4f}, p={paired[f].p_value:.3f}" for f in lost)
