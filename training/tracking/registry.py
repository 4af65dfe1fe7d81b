"""The model registry: which version of a task's model is the champion, and why.

A run's version becomes the champion only when it beats the champion on the same test rows by more
than chance (compare.paired_bootstrap); `manset promote` moves the alias by hand and records who
asked and why."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.pyfunc import PyFuncModel

from training import compare
from training.project import ProjectError
from training.tracking.connect import TrackingError, cause, guarded, model_name
from training.tracking.logs import PREDICTIONS

ALIAS = "champion"  # the registered model alias the champion version carries
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    version: str
    champion_moved: bool
    reason: str


@dataclass(frozen=True)
class Challenger:
    """A finished run's test predictions, for the paired test against the champion."""

    task: str
    run_id: str
    fingerprint: str  # of the dataset it was tested on
    macro_f1: float
    y: np.ndarray  # true class ids of the test rows
    pred: np.ndarray  # its predicted class ids
    labels: list[str]
    ids: list[str] | None = None  # headline ids of the test rows
    # (model URI, test row indices) → its labels on those rows
    predict: Callable[[str, list[int]], list[str]] | None = None


def promote(c: Challenger) -> Registration:
    with guarded("promoting the model"):
        return _promote(c)


ATTEMPTS = 3  # comparisons before giving up on an alias that other runs keep moving


def _promote(c: Challenger) -> Registration:
    """Move the champion alias to this run's version only if it beats the champion on the same
    test rows by more than chance. Another run may move the alias while this one compares (the
    comparison can re-score a model for minutes): the alias is read again before it is moved,
    and a new champion is compared with afresh, so a run never replaces one it did not beat."""
    client = MlflowClient()
    name = model_name(c.task)
    version = _version_of_run(name, c.run_id)
    client.set_model_version_tag(name, version, "dataset_fingerprint", c.fingerprint)
    client.set_model_version_tag(name, version, "test_macro_f1", repr(c.macro_f1))
    champion = _champion(name)
    for _ in range(ATTEMPTS):
        move, reason = _judge(c, champion)
        now = _champion(name)
        if not move or (now and now.version) == (champion and champion.version):
            return _decided(c.run_id, name, version, move, reason)
        champion = now  # another run moved the alias meanwhile: compare with its version
    return _decided(c.run_id, name, version, False,
                    f"the champion changed {ATTEMPTS} times while this run compared with it")


def _judge(c: Challenger, champion: ModelVersion | None) -> tuple[bool, str]:
    """Whether the challenger beats this champion, and why. The champion's predictions are its
    logged ones when it was tested on the same dataset, else it is re-scored through c.predict;
    if neither is possible the alias stays. The paired test's figures are logged on the run."""
    if champion is None:
        return True, "first version of the model"
    try:
        found = _predictions(champion, c)
    except Exception as e:
        return False, (f"champion v{champion.version} could not be re-scored on this dataset: "
                       f"{cause(e)}")
    if found is None:
        return False, f"champion v{champion.version} was tested on another dataset"
    theirs, rows, how = found
    if not rows:
        return False, (f"champion v{champion.version} trained on every test row of this "
                       "dataset, so they cannot compare")
    paired = compare.paired_bootstrap(c.y[rows], c.pred[rows], compare.class_ids(theirs, c.labels))
    MlflowClient().log_batch(c.run_id, metrics=[
        Metric(k, v, int(time.time() * 1000), 0) for k, v in (
            ("promotion_delta_macro_f1", paired.delta), ("promotion_delta_ci_low", paired.low),
            ("promotion_delta_ci_high", paired.high), ("promotion_p_value", paired.p_value))])
    if paired.significant:
        return True, f"beats champion v{champion.version}{how}: {paired.describe()}"
    return False, (f"not better than champion v{champion.version} by more than chance{how}: "
                   f"{paired.describe()}")


def promote_by_hand(task: str, ref: str, force: bool, reason: str, who: str) -> Registration:
    with guarded("promoting the model"):
        return _promote_by_hand(task, ref, force, reason, who)


def _promote_by_hand(task: str, ref: str, force: bool, reason: str, who: str) -> Registration:
    """`manset promote`: move the alias to a version (or a run's version). Without force it
    must beat the champion by the same paired test, on the same dataset; who asked, why and
    when are tagged on the version either way."""
    client, name = MlflowClient(), model_name(task)
    version = _resolve_version(name, ref)
    chosen = client.get_model_version(name, version)
    champion = _champion(name)
    if champion is not None and str(champion.version) == str(chosen.version):
        raise ProjectError(f"{name} v{version} is already the champion")
    why = "forced by hand" if force else "first version of the model"
    if champion is not None and not force:
        ours, theirs = (chosen.tags.get("dataset_fingerprint", "?"),
                        champion.tags.get("dataset_fingerprint", "?"))
        if ours != theirs:
            raise ProjectError(
                f"{name} v{version} was tested on dataset {ours[:12]}, champion "
                f"v{champion.version} on {theirs[:12]}: their scores are on different test "
                "rows and do not compare; retrain it on the current dataset, or pass --force")
        a, b = (_logged_predictions(v) for v in (chosen, champion))
        labels = sorted(set(a["true"]))
        y, chosen_pred, champion_pred = (compare.class_ids(names, labels) for names in
                                         (a["true"], a["predicted"], b["predicted"]))
        paired = compare.paired_bootstrap(y, chosen_pred, champion_pred)
        if not paired.significant:
            raise ProjectError(f"{name} v{version} is not better than champion "
                               f"v{champion.version} by more than chance: {paired.describe()}; "
                               "pass --force to move the alias anyway")
        why = f"beats champion v{champion.version}: {paired.describe()}"
    client.set_registered_model_alias(name, ALIAS, version)
    for key, value in {"promoted_by": who, "promoted_reason": reason, "promoted_check": why,
                       "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                       "promoted_over": champion.version if champion else "none"}.items():
        client.set_model_version_tag(name, version, f"manset.{key}", str(value))
    client.set_tag(str(chosen.run_id), "manset.promotion", f"champion (by hand: {who})")
    return Registration(version, True, f"{why}; asked by {who}: {reason}")


def _logged_predictions(v: ModelVersion) -> dict:
    try:
        logged = mlflow.artifacts.load_dict(f"runs:/{v.run_id}/{PREDICTIONS}")
    except Exception as e:
        raise ProjectError(f"{v.name} v{v.version}: no test predictions logged ({cause(e)}), "
                           "so the paired test cannot run; pass --force") from e
    if not {"true", "predicted"} <= set(logged):
        raise ProjectError(f"{v.name} v{v.version}: its logged test predictions are from an "
                           "older manset, without the true labels; pass --force")
    return logged


def _resolve_version(name: str, ref: str) -> str:
    """A version number ("3", "v3") or the id of the run it came from."""
    if ref.lstrip("v").isdigit():
        number = ref.lstrip("v")
        try:
            MlflowClient().get_model_version(name, number)
        except mlflow.exceptions.MlflowException as e:
            raise ProjectError(f"{name} has no version {number}") from e
        return number
    return _version_of_run(name, ref)


def _version_of_run(name: str, run_id: str) -> str:
    found = [v.version for v in MlflowClient().search_model_versions(f"name='{name}'")
             if v.run_id == run_id]
    if not found:
        raise ProjectError(f"no version of {name} comes from run {run_id}")
    return str(found[0])


def champion_run(name: str) -> str | None:
    """The id of the run the champion version came from; None when there is no champion."""
    champion = _champion(name)
    return None if champion is None else champion.run_id


def _champion(name: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, ALIAS)
    except mlflow.exceptions.MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None  # no such model, or no alias on it
        raise


def _decided(run_id: str, name: str, version: str, move: bool, reason: str) -> Registration:
    client = MlflowClient()
    if move:
        client.set_registered_model_alias(name, ALIAS, version)
    client.set_tag(run_id, "manset.promotion", "champion" if move else "kept the champion")
    client.set_tag(run_id, "manset.promotion_reason", reason[:5000])
    return Registration(version, move, reason)


def _predictions(champion: ModelVersion, c: Challenger
                 ) -> tuple[list[str], list[int], str] | None:
    """The champion's predicted labels on the challenger's test rows, which rows those are, and
    how they were had: its logged predictions when it was tested on the same dataset, else a
    re-score on the test rows it never trained on (its logged `trained_on`). Labels it lacks
    count as wrong, and labels the challenger lacks too: a new label set is judged on the new
    dataset's rows. None when neither can be had."""
    try:
        logged = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/{PREDICTIONS}")
    except Exception as e:  # a champion from before predictions were logged
        log.info("champion v%s has no logged test predictions: %s", champion.version, e)
        logged = {}
    every = list(range(len(c.y)))
    if champion.tags.get("dataset_fingerprint") == c.fingerprint and \
            logged.get("dataset_fingerprint") == c.fingerprint and \
            len(logged.get("predicted", [])) == len(c.y):
        return list(logged["predicted"]), every, ""
    if c.predict is None:
        return None
    if "trained_on" in logged and c.ids is not None:
        trained = set(logged["trained_on"])
        rows = [i for i in every if c.ids[i] not in trained]
        how = (f", re-scored on the {len(rows)} of {len(c.y)} test rows it never trained on "
               "(another dataset)")
    else:
        rows, how = every, (f", re-scored on all {len(c.y)} test rows (another dataset; it "
                            "logged no training rows, so some may be rows it trained on)")
    return (c.predict(f"models:/{model_name(c.task)}/{champion.version}", rows) if rows else [],
            rows, how)


def download_champion(task: str, dst: Path) -> tuple[Path, str, str]:
    """The registered champion's bundle, downloaded under `dst`: (folder, version, run id)."""
    name = model_name(task)
    with guarded(f"reading the champion of {name}"):  # a store that is down says so
        version = _champion(name)
    if version is None:
        raise TrackingError(f"{mlflow.get_tracking_uri()}: no champion of {name} to pull "
                            "(train a model first)")
    with guarded(f"downloading {name} v{version.version}"):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}",
                                                         dst_path=str(dst)))
    conf = mlflow.models.Model.load(str(local / "MLmodel")).flavors["python_function"]
    return local / conf["artifacts"]["bundle"]["path"], str(version.version), str(version.run_id)


def load_pyfunc(uri: str) -> PyFuncModel:
    return mlflow.pyfunc.load_model(uri)
