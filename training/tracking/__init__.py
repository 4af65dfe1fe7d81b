"""The tracking wing: everything MLflow, and the only package that imports it (besides
manset_serving.pyfunc, which MLflow itself loads). One job per module:

- connect: the store (configure, guarded, experiments, artifact folders);
- runs: opening, naming, tagging and ending runs;
- logs: what a run logs (dataset, evaluation, curves, the pyfunc);
- registry: the champion, the paired promotion rule, pulling a champion's bundle;
- listing: `manset runs` and `manset gc`;
- stores: which tracking URIs work; portable: a moved project's store.

The names the rest of manset calls are imported here: `tracking.run(...)`,
`tracking.log_dataset(...)`.
"""

from training.tracking.connect import (
    TrackingError,
    configure,
    guarded,
    local_artifacts,
    model_name,
)
from training.tracking.logs import (
    PREDICTIONS,
    child_run,
    log_curve,
    log_dataset,
    log_evaluation,
    log_model,
    log_sweep,
    set_tag,
)
from training.tracking.runs import RunMeta, close_interrupted, run

__all__ = ["PREDICTIONS", "RunMeta", "TrackingError", "child_run", "close_interrupted",
           "configure", "guarded", "local_artifacts", "log_curve", "log_dataset",
           "log_evaluation", "log_model", "log_sweep", "model_name", "run", "set_tag"]
