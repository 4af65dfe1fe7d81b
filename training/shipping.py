"""What every family's run ends with: the evaluation, the bundle and its check against the
trained model, speed, the logged run, then promotion and the champion's install. A family fits
its model and hands a `Trained` to `finish_run` (training/families/__init__.py)."""

import dataclasses
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import DatasetDict
from manset_serving import BundleError, load

from training import crosssource, evaluation, export, tasks, tracking
from training.datacard import DataCard
from training.files import staged_dir, temp_prefix
from training.project import Paths
from training.tracking import registry

# stage names, for the CLI's spinner or plain lines (training.cli.common.Progress)
progress = logging.getLogger("training.progress")


@dataclass
class TrainResult:
    task: str
    family: str
    run_id: str
    metrics: dict[str, float]
    bundle: Path
    registration: registry.Registration
    note: str = ""  # what the user should know about the served champion


@dataclass(frozen=True)
class Trained:
    """A model fitted inside an open MLflow run, with what finish_run needs to ship it."""

    task: str
    family: str  # "tfidf", "bert", "use", "ensemble", or one another package adds
    run_id: str
    dd: DatasetDict
    card: DataCard
    proba: evaluation.ProbaFn  # the in-memory model: texts -> probabilities
    config: dict  # resolved training config, saved in the bundle
    write: Callable[[Path, export.BundleInfo], None]  # writes the bundle into a folder
    metrics: dict[str, float]  # e.g. train_seconds
    step: int = 0  # the final metrics are logged at this step: BERT's last training step, so
    #                they end its validation curves rather than start them at step 0
    # The same family and settings trained afresh on other rows, for leave-one-source-out
    # (training.crosssource); None where a family cannot afford it in a run (BERT on a CPU).
    refit: crosssource.Refit | None = None


@dataclass(frozen=True)
class Finished:
    """A run that is evaluated, exported and logged; promote() once it has ended."""

    paths: Paths
    t: Trained
    metrics: dict[str, float]
    challenger: registry.Challenger  # its test predictions, for the paired promotion test

    def promote(self) -> TrainResult:
        """Register it as champion if it beats the champion, and install its bundle as
        models/<task>/champion/. Called after the MLflow run has ended, so the alias never
        points at a run that is still RUNNING."""
        t, paths = self.t, self.paths
        progress.info("%s: judging %s against the champion", t.task, t.family)
        registration = registry.promote(self.challenger)
        note = ""
        if registration.champion_moved:
            export.install_champion(paths.models, t.task, paths.bundle(t.task, t.family),
                                    registration.version, t.run_id)
        elif not paths.champion(t.task).is_dir():  # a champion registered before champion/
            try:
                pull_champion(paths, t.task)
            except (ValueError, OSError, tracking.TrackingError) as e:
                note = (f"models/{t.task}/champion/ is missing and the registered champion "
                        f"could not be copied there: {e}")
        return TrainResult(t.task, t.family, t.run_id, self.metrics,
                           paths.bundle(t.task, t.family), registration, note)


def finish_run(paths: Paths, t: Trained) -> Finished:
    """Evaluate, export (atomically) to models/<task>/<family>/, check the export against the
    in-memory model, time it and log it all. Runs inside the model's MLflow run; promotion
    follows once the run has ended (Finished.promote)."""
    labels = t.dd["train"].features["label"].names
    progress.info("%s: evaluating %s", t.task, t.family)
    x_test, y_test = list(t.dd["test"]["text"]), np.array(t.dd["test"]["label"])
    y_val = np.array(t.dd["validation"]["label"])
    val = evaluation.evaluate(t.proba, list(t.dd["validation"]["text"]), y_val, labels,
                              "validation")
    ev = evaluation.evaluate(t.proba, x_test, y_test, labels)
    abstain = evaluation.abstention(val, y_val)
    metrics = {**ev.metrics, "validation_macro_f1": val.metrics["validation_macro_f1"],
               **(catch_all_metrics(t.proba, t.dd, labels)
                  if tasks.get(t.task).catch_all_metrics else {}), **t.metrics,
               **crosssource.per_source(t.dd, ev.pred),
               **evaluation.abstention_metrics(ev, y_test, abstain)}
    cards = {"DATA_CARD.md": t.card.markdown()}
    if t.refit is not None:
        loso, folds = crosssource.leave_one_source_out(t.refit, t.dd, labels)
        metrics |= loso
        cards["CROSS_SOURCE.md"] = crosssource.markdown(folds, loso, labels)
    progress.info("%s: exporting %s and timing the export", t.task, t.family)
    with staged_dir(paths.bundle(t.task, t.family)) as folder:
        names = tasks.label_names(paths.data, t.task)
        config = {**t.config, "abstain": asdict(abstain)}  # used when a service asks for it
        info = export.BundleInfo(t.task, t.family, labels, config, metrics, t.run_id,
                                 t.card.fingerprint, t.card.markdown(),
                                 {lb: names[lb] for lb in labels if lb in names})
        t.write(folder, info)
        predictor = load(folder)
        # The shipped model must be the trained one: same labels on every test headline.
        shipped = predictor.predict_proba(x_test).argmax(1)
        if not np.array_equal(shipped, t.proba(x_test).argmax(1)):
            raise RuntimeError("the exported bundle disagrees with the trained model on "
                               f"{int((shipped != t.proba(x_test).argmax(1)).sum())} test rows")
        metrics |= evaluation.speed(predictor.predict_proba, x_test)
        export.finish(folder, dataclasses.replace(info, metrics=metrics))  # card with speed
        tracking.log_evaluation(
            metrics, ev.report, {"confusion_matrix": ev.confusion, "per_class_f1": ev.f1_chart,
                                 "coverage_precision": evaluation.coverage_figure(
                                     {"validation": val, "test": ev},
                                     {"validation": y_val, "test": y_test}, abstain)},
            ev.worst, {"MODEL_CARD.md": (folder / "MODEL_CARD.md").read_text(encoding="utf-8"),
                       **cards},
            {"dataset_fingerprint": t.card.fingerprint, "true": [labels[i] for i in y_test],
             "predicted": [labels[i] for i in ev.pred], "ids": list(t.dd["test"]["id"]),
             # a later run re-scores this model only on rows it never trained on
             "trained_on": sorted(t.dd["train"]["id"])}, t.step)
        progress.info("%s: logging %s to MLflow", t.task, t.family)
        example = x_test[:3]
        tracking.log_model(folder, t.task, example, pd.DataFrame(predictor.predict(example)),
                           export.requirements(t.family, t.config.get("members", {})))
    return Finished(paths, t, metrics, registry.Challenger(
        t.task, t.run_id, t.card.fingerprint, metrics["test_macro_f1"], y_test, ev.pred, labels,
        ids=list(t.dd["test"]["id"]),
        predict=lambda uri, rows: _labels_of(uri, [x_test[i] for i in rows])))


def pull_champion(paths: Paths, task: str) -> tuple[Path, str]:
    """Copy the registered champion's bundle from the tracking store to models/<task>/champion/
    (a fresh clone, a team server): checked like any bundle before it is installed."""
    tracking.configure(paths.root)
    paths.models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.models, prefix=temp_prefix("pull")) as tmp:
        folder, version, run_id = registry.download_champion(task, Path(tmp))
        try:
            load(folder, task=task).bundle.verify_all()
        except BundleError as e:  # named by what was pulled, not the temporary folder
            where = f"{tracking.model_name(task)} v{version} (run {run_id})"
            raise BundleError(f"{where}: {str(e).replace(str(folder), 'its bundle')}; "
                              f"{paths.champion(task)} is unchanged") from e
        return export.install_champion(paths.models, task, folder, version, run_id), version


def catch_all_metrics(proba: evaluation.ProbaFn, dd: DatasetDict, labels: list[str]
                      ) -> dict[str, float]:
    """The test metrics again on the catch-all sections alone (Gündem, Dünya, Yaşam, ...), where
    the section says least about the subject; {} when the test split has none of them."""
    test = dd["test"]
    rows = [i for i, c in enumerate(test["category"]) if tasks.is_catch_all(c)]
    if not rows:
        return {}
    sub = test.select(rows)
    return evaluation.evaluate(proba, list(sub["text"]), np.array(sub["label"]), labels,
                               "test_catchall").metrics | {"test_catchall_rows": len(rows)}


def _labels_of(uri: str, texts: list[str]) -> list[str]:
    """The labels a registered model gives these headlines: a champion trained on another
    dataset is scored on this one's test rows."""
    return list(pd.DataFrame(registry.load_pyfunc(uri).predict(texts))["label"])
