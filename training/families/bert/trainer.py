"""The transformers Trainer as a BERT run uses it: its arguments, the class-weighted loss, the
embeddings' own learning rate, and the curves it logs to MLflow at each evaluation."""

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from datasets import DatasetDict
from manset_serving.onnx import BATCH
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from training import tracking
from training.configs import BertTrainConfig


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


def metrics(pred: EvalPrediction) -> dict[str, float]:
    y, p = np.asarray(pred.label_ids), np.asarray(pred.predictions).argmax(-1)
    ids = list(range(np.asarray(pred.predictions).shape[-1]))
    return {"macro_f1": float(f1_score(y, p, labels=ids, average="macro")),
            "accuracy": float(accuracy_score(y, p))}


def arguments(cfg: BertTrainConfig, out: Path) -> TrainingArguments:
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


def tokenized(dd: DatasetDict, tokenizer: Any, max_length: int) -> DatasetDict:
    # keep_in_memory: map would otherwise write cache files into the built dataset's folder
    out = DatasetDict({s: dd[s].map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True,
        keep_in_memory=True, remove_columns=[c for c in dd[s].column_names if c != "label"],
    ).rename_column("label", "labels") for s in ("train", "validation")})
    # validation in length order: its batches pad less, and the order does not change a metric
    val = out["validation"]
    out["validation"] = val.select(np.argsort([len(x) for x in val["input_ids"]], kind="stable"))
    return out
