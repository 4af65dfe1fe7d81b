"""The ensemble family: bundles of two or more other families (TF-IDF and BERT, TF-IDF and USE,
...) of the same dataset, their probabilities blended with the weights that score best on the
validation split (never test).

The members are the bundles the families' last runs wrote (models/<task>/<family>) or any
others given by path. They are copied into the ensemble's bundle with what their predictors read
(a BERT member without its Hugging Face folder), the ensemble's manifest lists every member file
(manset_serving/ensemble.py), and they are scored through the same lean predictors a service
uses. The run reports the paired test of the blend against each member on the test rows, so a
blend that is no better than its best member says so.
"""

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import Dataset
from manset_serving import Model, load
from manset_serving.bundle import BundleError
from sklearn.metrics import f1_score

from training import compare, crosssource, dataset, evaluation, export, families, tracking
from training.configs import EnsembleConfig
from training.project import Paths, ProjectError
from training.shipping import Trained, TrainResult, finish_run

STEPS = 20  # the weights' grid: multiples of 1/20, summing to 1


def choose_weights(y: np.ndarray, probas: list[np.ndarray]
                   ) -> tuple[tuple[float, ...], dict[tuple[float, ...], float]]:
    """The members' weights with the best validation macro-F1 on the grid, and each grid
    point's score. Among points within 0.001 of the best, the one nearest an even blend: the
    validation split cannot tell such neighbours apart, and the even blend is the safer guess.
    Two members: 21 points; three: 231."""
    n = len(probas)
    scores = {}
    for rest in itertools.product(range(STEPS + 1), repeat=n - 1):  # the later members' steps
        if sum(rest) <= STEPS:
            w = tuple(round(k / STEPS, 2) for k in (STEPS - sum(rest), *rest))
            blend = sum(wi * p for wi, p in zip(w, probas, strict=True))
            scores[w] = float(f1_score(y, blend.argmax(1), average="macro"))  # type: ignore[union-attr]
    best = max(scores.values())
    weights = min((w for w, s in scores.items() if s >= best - 0.001),
                  key=lambda w: sum(abs(wi - 1 / n) for wi in w))
    return weights, scores


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


def train(paths: Paths, task: str, cfg: EnsembleConfig, meta: tracking.RunMeta | None = None
          ) -> TrainResult:
    """Blend the members' bundles (cfg.bundles, or the last runs' of cfg.members)."""
    names = cfg.member_names()
    for name in names:
        families.get(name)  # an unknown family is named before any bundle is read
    given: list[Path | None] = [Path(b.strip()) for b in cfg.bundles.split(",")] \
        if cfg.bundles else [None] * len(names)
    dd, card = dataset.load(paths.built(task))
    models = {f: _member(paths, task, f, g, card.fingerprint)
              for f, g in zip(names, given, strict=True)}
    labels = dd["train"].features["label"].names
    for model in models.values():
        if model.labels != labels:
            raise ProjectError(f"{model.bundle.folder}: labels {model.labels}, the dataset's "
                               f"{labels}")
    probas = {f: evaluation.memoised(m.predict_proba) for f, m in models.items()}
    x_val, y_val = list(dd["validation"]["text"]), np.array(dd["validation"]["label"])
    chosen, scores = choose_weights(y_val, [p(x_val) for p in probas.values()])
    weights = dict(zip(names, chosen, strict=True))

    def blend(texts: list[str]) -> np.ndarray:
        return sum(w * probas[f](texts) for f, w in weights.items())  # type: ignore[return-value]

    chosen_weights: dict[str, object] = {f"{f}_weight": w for f, w in weights.items()}
    params = {**chosen_weights,
              **{f"member_{f}_run_id": m.bundle.run_id or "none" for f, m in models.items()},
              **{f"member_{f}_bundle": str(m.bundle.folder) for f, m in models.items()}}
    tracking.configure(paths.root)
    with tracking.run(task, "ensemble", paths.root, params, meta, chosen_weights) as run_id:
        tracking.log_dataset(dd, card.fingerprint, task, str(paths.built(task)))
        if len(names) == 2:  # one free weight: a curve over it
            for w, s in scores.items():
                tracking.log_curve(f"validation_macro_f1_by_{names[1]}_weight", s,
                                   round(w[1] * 100))
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
                  "validation_macro_f1_by_weights": {",".join(map(str, w)): s
                                                     for w, s in scores.items()},
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
    and the chosen weights, when every member's family can refit in a run (its module's
    member_refit: TF-IDF and USE in minutes on a CPU; a BERT member would need a fine-tune per
    source, so None)."""
    fits = {}
    for f, m in models.items():
        refit = getattr(families.get(f).load(), "member_refit", None)
        if refit is None:
            return None
        fits[f] = refit(m.bundle.config())

    def fold(rows: Dataset) -> Callable[[list[str]], np.ndarray]:
        probas = {f: fit(rows) for f, fit in fits.items()}
        return lambda texts: sum(w * probas[f](texts) for f, w in weights.items()).argmax(1)
    return fold


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
        return "beats every member beyond chance (paired bootstrap on the test rows)"
    return f"does not beat {' and '.join(lost)} beyond chance: " + "; ".join(
        f"{f} {paired[f].delta:+.4f}, p={paired[f].p_value:.3f}" for f in lost)


def card_lines(info: export.BundleInfo) -> list[str]:
    """An ensemble's members, their weights and whether the blend beat them."""
    members = info.config.get("members")
    if not members:
        return []
    m = {k: v for k, v in info.metrics.items() if k.startswith(("member_", "vs_"))}
    rows = [f"| `{f}/` | {w:.2f} | {m[f'member_{f}_test_macro_f1']:.4f} | "
            f"{m[f'vs_{f}_delta_macro_f1']:+.4f} (p={m[f'vs_{f}_p_value']:.3f}) |"
            for f, w in members.items()]
    return ["## Members", "",
            "Bundles in sub-folders (a BERT member without `hf/`, which only transformers "
            "reads); their probabilities are blended with these weights, chosen on the "
            "validation split.", "",
            "| member | weight | its test macro-F1 | blend's gain over it |", "|---|---:|---:|---|",
            *rows, "", f"The blend {info.config.get('verdict', '')}.", ""]
