"""`manset sweep tfidf`: Optuna trials as nested MLflow runs under a parent, pruning, and the best
trial trained in full and put through the promotion rule."""

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from training import compare
from training.cli import main

pytestmark = pytest.mark.sqlite_store  # the tests read the project's store themselves


def _store(root: Path) -> MlflowClient:
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri, registry_uri=uri)


def test_a_sweep_nests_its_trials_prunes_and_promotes_the_best_by_the_rule(trained: Path,
                                                                           capsys) -> None:
    assert main(["sweep", "tfidf", "--root", str(trained), "--trials", "5"]) == 0
    client = _store(trained)
    exp = client.get_experiment_by_name("manset-category")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("family") == "tfidf-sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = [r for r in children if "optuna.state" in r.data.tags]
    (best,) = [r for r in children if r.data.tags.get("manset.sweep") == parent.info.run_id]
    assert len(trials) == 5 and parent.data.params["trials"] == "5"
    finals, pruned = {}, 0
    for t in trials:
        history = client.get_metric_history(t.info.run_id, "validation_macro_f1")
        if t.data.tags["optuna.state"] == "PRUNED":  # stopped after the partial fit
            pruned += 1
            assert [h.step for h in history] == [0]
        else:
            assert t.data.tags["optuna.state"] == "COMPLETE"
            assert sorted(h.step for h in history) == [0, 1]
            finals[t.data.tags["manset.trial"]] = next(h.value for h in history if h.step == 1)
    assert pruned >= 1 and finals  # seeded sampler, fixed data: the same trials every time
    m = parent.data.metrics
    assert (m["trials_complete"], m["trials_pruned"]) == (len(finals), pruned)
    assert m["best_validation_macro_f1"] == max(finals.values())
    assert best.data.tags["manset.trial"] == max(finals, key=finals.get)
    # the best trial's settings, trained in full: validation only chose it, test scores it
    assert best.data.params["C"] == parent.data.params["best.C"]
    assert best.data.metrics["validation_macro_f1"] == m["best_validation_macro_f1"]
    assert {f.path for f in client.list_artifacts(parent.info.run_id, "sweep")} == {
        "sweep/parallel_coordinates.png"}
    version = next(v for v in client.search_model_versions("name='manset-category'")
                   if v.run_id == best.info.run_id)
    decision = best.data.tags["manset.promotion"]
    moved = best.data.metrics["promotion_delta_macro_f1"] > 0 and \
        best.data.metrics["promotion_p_value"] < compare.ALPHA
    assert decision == ("champion" if moved else "kept the champion")
    champion = client.get_model_version_by_alias("manset-category", "champion")
    assert (str(champion.version) == str(version.version)) == moved
    capsys.readouterr()
    assert main(["runs", "--json", "--root", str(trained)]) == 0  # trials stay out of the list
    listed = capsys.readouterr().out
    assert best.info.run_id in listed and not any(t.info.run_id in listed for t in trials)


def test_a_sweep_of_no_trials_is_refused(trained: Path, tmp_path: Path, capsys) -> None:
    """The sweep's settings are SweepConfig's: the options and a --config file (its TF-IDF
    settings in a [base] table) are checked alike."""
    assert main(["sweep", "tfidf", "--root", str(trained), "--trials", "0"]) == 2
    assert "0 is outside 1-10000" in capsys.readouterr().err
    settings = tmp_path / "sweep.toml"
    settings.write_text("trials = 0\n[base]\nC = 2\n")
    assert main(["sweep", "tfidf", "--root", str(trained), "--config", str(settings)]) == 1
    assert f"{settings}: trials: 0 is outside 1-10000" in capsys.readouterr().err
