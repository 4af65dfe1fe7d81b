"""`manset sweep tfidf`: an Optuna search over the baseline's settings, one nested MLflow run per
trial under a parent run, scored on the validation split (never on test).

Each trial is fitted first on a third of the training rows: a trial whose score there is below
the median of the earlier trials' at the same step is pruned before the full fit. The best trial
is then trained in full like `manset train tfidf`, as a child of the sweep, and goes through the
same paired promotion rule as any other run."""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import optuna
from datasets import DatasetDict
from sklearn.metrics import f1_score

from training import options, tracking
from training.configs import SweepConfig, TfidfConfig
from training.datacard import DataCard
from training.families import tfidf
from training.project import Paths
from training.shipping import TrainResult

PARTIAL = 1 / 3  # share of the training rows a trial is first fitted on, for pruning


@dataclass(frozen=True)
class SweepResult:
    parent_run_id: str
    best: TrainResult  # the best trial trained in full, registered through the promotion rule
    best_settings: dict[str, object]
    complete: int
    pruned: int


def suggest(trial: optuna.Trial | optuna.trial.FixedTrial, base: TfidfConfig) -> TfidfConfig:
    """The search space: regularisation, n-gram ranges, tf scaling and class weighting."""
    features = dataclasses.replace(
        base.features,
        char_max=trial.suggest_int("char_max", 3, 6),
        word_max=trial.suggest_int("word_max", 1, 2),
        sublinear_tf=trial.suggest_categorical("sublinear_tf", [True, False]))
    return dataclasses.replace(
        base, features=features, C=trial.suggest_float("C", 0.05, 5.0, log=True),
        class_weight=cast(str | None,
                          trial.suggest_categorical("class_weight", ["balanced", None])))


def objective(dd: DatasetDict, base: TfidfConfig, seed: int
              ) -> Callable[[optuna.Trial], float]:
    x_val, y_val = list(dd["validation"]["text"]), np.array(dd["validation"]["label"])
    train = dd["train"]
    order = np.random.default_rng(seed).permutation(len(train))
    partial = np.sort(order[:max(int(len(train) * PARTIAL), 2)])

    def score(cfg: TfidfConfig, rows: np.ndarray) -> float:
        pipe = tfidf.fit_rows(cfg, train.select(rows), calibrated=False)  # same labels
        return float(f1_score(y_val, pipe.predict(x_val), average="macro"))

    def run_trial(trial: optuna.Trial) -> float:
        cfg = suggest(trial, base)
        pruned = False
        with tracking.child_run(f"trial-{trial.number}", cfg.params(),
                                {"family": "tfidf", "manset.trial": str(trial.number)}):
            for step, rows in enumerate((partial, np.arange(len(train)))):
                value = score(cfg, rows)
                tracking.log_curve("validation_macro_f1", value, step)
                trial.report(value, step)
                if step == 0 and trial.should_prune():
                    pruned = True
                    break
            tracking.set_tag("optuna.state", "PRUNED" if pruned else "COMPLETE")
        if pruned:
            raise optuna.TrialPruned()
        return value

    return run_trial


def sweep_tfidf(paths: Paths, task: str, cfg: SweepConfig, dd: DatasetDict, card: DataCard,
                meta: tracking.RunMeta | None = None) -> SweepResult:
    """Run the study in a parent run, log its summary and plot there, then train the best
    trial in full as a child run and promote it by the paired rule once all runs have ended."""
    trials, base, seed = cfg.trials, cfg.base, cfg.sweep_seed
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    params = {"trials": trials, "sampler": "TPE", "pruner": "median", "seed": seed,
              "partial_rows": PARTIAL, "objective": "validation_macro_f1"}
    meta = meta or tracking.RunMeta()
    with tracking.run(task, "tfidf-sweep", paths.root, params, meta) as parent:
        tracking.log_dataset(dd, card.fingerprint, task, str(paths.built(task)))
        with tracking.guarded("running the sweep's trials"):
            study.optimize(objective(dd, base, seed), n_trials=trials, catch=())
        states = [t.state for t in study.trials]
        complete = states.count(optuna.trial.TrialState.COMPLETE)
        pruned = states.count(optuna.trial.TrialState.PRUNED)
        best = suggest(optuna.trial.FixedTrial(study.best_params), base)
        tracking.log_sweep({"best_validation_macro_f1": study.best_value,
                            "trials_complete": complete, "trials_pruned": pruned},
                           {f"best.{k}": v for k, v in study.best_params.items()},
                           _plot(study))
        child_meta = tracking.RunMeta(tags={**meta.tags, "manset.sweep": parent,
                                            "manset.trial": str(study.best_trial.number)})
        finished = tfidf.run(paths, task, best, dd, card, child_meta, nested=True)
    return SweepResult(parent, finished.promote(), options.differing(best), complete, pruned)


def _plot(study: optuna.Study) -> object:
    """Optuna's parallel-coordinates plot of the trials (matplotlib, so MLflow stores a PNG)."""
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    return plot_parallel_coordinate(study).figure
