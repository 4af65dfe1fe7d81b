"""BERT training on the tiny model built in conftest, each test training its own: the alias
moving to a better BERT run, resuming after a crash, the ways a model can fail to load, the
mean-pooling head, the embeddings' learning rate and the loss weights. (test_e5.py takes the real
multilingual-e5-small through the whole path.)"""

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from conftest import (  # noqa: E402
    ROOT,
    STEPS,
    build,
    quick_speed,
    served,
    spoil_logged_predictions,
    tracking_client,
    verify,
)
from manset_serving import load  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from training.cli import main  # noqa: E402
from training.families.bert import train as bert  # noqa: E402
from training.families.bert import trainer as bert_trainer  # noqa: E402
from training.project import Paths, ProjectError  # noqa: E402


def test_a_bert_run_that_takes_the_alias_is_served(project: Path, tiny_model: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys) -> None:
    """TF-IDF champion first, then a better BERT run: predict and champion/ follow the alias to
    BERT; a later BERT run that only ties changes nothing served, though it replaces bert/.
    (A 12-step tiny BERT cannot beat TF-IDF, so the TF-IDF champion's logged test predictions,
    which the paired test compares against, are made all wrong first.)"""
    quick_speed(monkeypatch)
    build(project)
    root = ["--root", str(project)]
    bert = ["train", "bert", *root, "--base-model", str(tiny_model), *STEPS,
            "--learning-rate", "1e-3"]
    assert main(["train", "tfidf", *root]) == 0
    client = tracking_client(project)
    spoil_logged_predictions(client, "1")
    assert main(bert) == 0
    champion = client.get_model_version_by_alias("manset-category", "champion")
    winner = verify(project / "models" / "category" / "bert")
    assert champion.run_id == winner["mlflow_run_id"]
    # served without hf/, which only transformers reads; bert/ keeps it
    assert verify(project / "models" / "category" / "champion") == served(winner) != winner
    assert not (project / "models" / "category" / "champion" / "hf").exists()
    assert main(bert) == 0  # the same settings tie, and a tie keeps the champion
    assert verify(project / "models" / "category" / "bert")["mlflow_run_id"] != \
        winner["mlflow_run_id"]
    assert verify(project / "models" / "category" / "champion") == served(winner)
    capsys.readouterr()
    text = "Galatasaray derbide 3-1 kazandı"
    assert main(["predict", *root, text]) == 0
    want = load(project / "models" / "category" / "champion").predict([text])[0]
    assert json.loads(capsys.readouterr().out) == {"text": text, **want}


KILLED_AFTER_SAVE = """
import os, signal, sys
from pathlib import Path
from transformers import TrainerCallback
from training.families.bert import train as bert
from training.project import Paths

class Kill(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception: as the OOM killer does

bert.train(Paths(Path(sys.argv[1])), "category",
           bert.BertTrainConfig(base_model=sys.argv[2], max_steps=12, batch_size=16),
           callbacks=[Kill()])
"""


class _FirstStep(TrainerCallback):
    def __init__(self) -> None:
        self.first: int | None = None

    def on_step_begin(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
        if self.first is None:
            self.first = state.global_step


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(
        project: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    quick_speed(monkeypatch)
    build(project)
    paths = Paths(project)
    assert main(["train", "bert", "--root", str(project), "--base-model", str(tiny_model),
                 "--resume"]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_SAVE, str(project),
                             str(tiny_model)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    ckpt = bert.checkpoint_dir(paths, "category")
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-6"]
    # a kill in the middle of the next save leaves a folder without trainer_state.json
    partial = ckpt / "checkpoint-9"
    partial.mkdir()
    shutil.copy2(ckpt / "checkpoint-6" / "model.safetensors", partial)
    changed = bert.BertTrainConfig(base_model=str(tiny_model), max_steps=12, batch_size=8,
                                   resume=True)
    with pytest.raises(ProjectError, match="other settings \\(batch_size\\)"):
        bert.train(paths, "category", changed)
    cfg = bert.BertTrainConfig(base_model=str(tiny_model), max_steps=12, batch_size=16, resume=True)
    # checkpoints from before the used-rows embeddings carry no format in their stamp
    stamp_file = ckpt / bert.STAMP_FILE
    kept = stamp_file.read_text()
    stamp_file.write_text(json.dumps({k: v for k, v in json.loads(kept).items()
                                      if k != "format"}))
    with pytest.raises(ProjectError, match="another manset version \\(format 1"):
        bert.train(paths, "category", cfg)
    stamp_file.write_text(kept)
    first = _FirstStep()
    result = bert.train(paths, "category", cfg, callbacks=[first])
    assert first.first == 6  # continued from the complete checkpoint-6, not from 0 or 9
    client = tracking_client(project)
    assert client.get_run(result.run_id).data.params["resumed_from"] == "checkpoint-6"
    curve = {x.step for x in client.get_metric_history(result.run_id, "validation_macro_f1")}
    assert {6, 12} <= curve  # the killed run's evaluation is replayed
    runs = {r.info.status: r for r in client.search_runs(
        [client.get_experiment_by_name("manset-category").experiment_id])}
    assert sorted(runs) == ["FINISHED", "KILLED"]  # the killed run no longer shows as running
    assert runs["KILLED"].data.tags["manset.resumed_by"] == result.run_id


def test_class_weights_weigh_the_loss() -> None:
    y = np.array([0, 0, 0, 1])
    w = bert_trainer.balanced_weights(y, 3)
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 4 / 3])  # an absent class gets weight n/k
    trainer = bert_trainer.WeightedTrainer.__new__(bert_trainer.WeightedTrainer)
    trainer.class_weights = torch.tensor([1.0, 3.0])

    class Model(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor) -> object:
            return transformers.modeling_outputs.SequenceClassifierOutput(
                logits=torch.tensor([[2.0, 0.0], [0.0, 1.0]]))

    loss = trainer.compute_loss(Model(), {"input_ids": torch.zeros(2), "labels":
                                          torch.tensor([1, 1])})
    manual = (3 * -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[1]
              + 3 * -torch.log_softmax(torch.tensor([0.0, 1.0]), 0)[1]) / 6
    assert float(loss) == pytest.approx(float(manual))


def test_max_length_from_the_token_lengths() -> None:
    lengths = np.array([10] * 98 + [30, 300])
    assert bert_trainer.choose_max_length(lengths, 128) == \
        math.ceil(np.percentile(lengths, 99) / 8) * 8
    assert bert_trainer.choose_max_length(np.array([11] * 100), 128) == 16
    assert bert_trainer.choose_max_length(np.array([500] * 100), 128) == 128
    with pytest.raises(ValueError, match="max_length: 4 is outside 8-512"):
        bert.BertTrainConfig(max_length=4)
    assert bert.BertTrainConfig().params()["max_length"] == "auto"


@pytest.mark.parametrize(("model", "env", "message"), [
    ("/nonexistent/bert", {}, "no such folder"),
    ("manset-tests/no-such-model", {"HF_HUB_OFFLINE": "1"}, "not in the local cache"),
    ("manset-tests/no-such-model", {}, "hub did not serve it"),
])
def test_a_model_that_cannot_load_fails_fast_with_one_line(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, model: str,
        env: dict[str, str], message: str) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    start = time.monotonic()
    assert main(["train", "bert", "--root", str(project), "--base-model", model]) == 1
    assert time.monotonic() - start < 30  # one request with a timeout, no retry loop
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"cannot load model {model!r}" in err and message in err
    assert "--base-model multilingual-e5-small" in err and "HF_HOME" in err


def test_choose_weights_is_the_validation_best_nearest_an_even_blend() -> None:
    from training.families.ensemble import choose_weights

    y = np.array([0, 1, 0, 1])
    sure = np.eye(2)[y]  # right on every row, certain
    wrong = np.eye(2)[1 - y]  # wrong on every row, certain
    leaning = 0.6 * sure + 0.4 * wrong  # right, unsure
    # the unsure right member wins only once its weight w gives 0.6w > (1 - w) + 0.4w: w > 5/6
    assert choose_weights(y, [wrong, leaning])[0] == (0.15, 0.85)
    assert choose_weights(y, [leaning, wrong])[0] == (0.85, 0.15)
    weights, scores = choose_weights(y, [sure, sure])  # all weights tie: the even blend
    assert weights == (0.5, 0.5) and len(scores) == 21
    # three members: every point of the grid sums to 1; the two wrong ones need the right one
    # to outweigh them together
    weights, scores = choose_weights(y, [wrong, leaning, wrong])
    assert len(scores) == 231 and all(abs(sum(w) - 1) < 1e-9 for w in scores)
    assert weights[1] > 5 / 6 - 1e-9 and scores[weights] == 1.0


def test_mean_pooling_head_is_chosen_by_config_and_exports(tiny_model: Path,
                                                           tmp_path: Path) -> None:
    """The head follows the config's classifier_pooling (BERT's pooler when it has none), an
    explicit choice wins and is saved, padding does not move the mean, and ONNX gives the same
    logits."""
    from training.families.bert import export as bert_export
    from training.families.bert import heads

    assert type(heads.load(tiny_model, num_labels=3)).__name__ == \
        "BertForSequenceClassification"
    model = heads.load(tiny_model, pooling="mean", num_labels=3).eval()
    assert isinstance(model, heads.BertMeanPoolForSequenceClassification)
    model.save_pretrained(tmp_path / "hf")
    again = heads.load(tmp_path / "hf").eval()  # no pooling given: the saved config's
    assert isinstance(again, heads.BertMeanPoolForSequenceClassification)

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model)
    texts = ["Galatasaray derbide 3-1 kazandı", "Merkez Bankası faiz kararını açıkladı ve "
             "piyasalar güne yükselişle başladı"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        padded = again(**enc).logits
        alone = again(**tokenizer(texts[:1], return_tensors="pt")).logits
        np.testing.assert_allclose(padded.numpy(), model(**enc).logits.numpy(), atol=1e-6)
    assert enc["attention_mask"][0].sum() < enc["attention_mask"].shape[1]  # row 0 is padded
    np.testing.assert_allclose(padded[0].numpy(), alone[0].numpy(), atol=1e-5)
    bert_export.export_onnx(again, tmp_path / "model.onnx")
    import onnxruntime

    got = onnxruntime.InferenceSession(str(tmp_path / "model.onnx")).run(None, {
        "input_ids": enc["input_ids"].numpy(), "attention_mask": enc["attention_mask"].numpy()})
    np.testing.assert_allclose(got[0], padded.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="classifier_pooling"):
        heads.load(tiny_model, pooling="max")


def test_embeddings_get_their_own_learning_rate(tiny_model: Path, tmp_path: Path) -> None:
    from training.families.bert import heads

    model = heads.load(tiny_model, num_labels=3)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4,
                                          use_cpu=True, report_to="none")
    weight = model.get_input_embeddings().weight
    for rate, want in ((None, 1e-4), (1e-5, 1e-5)):
        opt = bert_trainer.WeightedTrainer(model=model, args=args,
                                   embedding_lr=rate).create_optimizer()
        (group,) = [g for g in opt.param_groups if any(p is weight for p in g["params"])]
        assert group["lr"] == want
        others = [p for g in opt.param_groups if g is not group for p in g["params"]]
        assert len(others) + len(group["params"]) == sum(1 for _ in model.parameters())


def test_only_the_used_embedding_rows_train_and_merge_back(tiny_model: Path) -> None:
    """UsedRows looks up exactly what the embedding did, a step moves only the used rows (the
    padding row never), and merging gives a full-vocabulary embedding with the trained rows."""
    from training.families.bert import heads

    model = heads.load(tiny_model, num_labels=3)
    before = model.get_input_embeddings().weight.detach().clone()
    pad = model.config.pad_token_id
    used, unused = [5, 9, 17], [6, 40]
    ids = torch.tensor([[*used, pad], [*unused, 9, pad]])
    plain = model.get_input_embeddings()(ids).detach()
    assert heads.train_used_rows(model, [[*used, pad]]) == len(used)
    rows = model.get_input_embeddings()
    assert torch.equal(rows(ids), plain)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "bert.embeddings.word_embeddings.weight" in trainable
    saved = model.state_dict()  # what a checkpoint holds: the trained rows, not the fixed ones
    assert saved["bert.embeddings.word_embeddings.weight"].shape[0] == len(used)
    assert not any(k.startswith("bert.embeddings.word_embeddings.") and not k.endswith("weight")
                   for k in saved)
    model(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    torch.optim.SGD([rows.weight], lr=1.0).step()
    heads.merge_rows(model)
    after = model.get_input_embeddings()
    assert isinstance(after, torch.nn.Embedding) and after.padding_idx == pad
    assert after.weight.shape == before.shape
    moved = (after.weight.detach() != before).any(1)
    assert moved[used].all() and not moved[[*unused, pad]].any()
    assert int(moved.sum()) == len(used)
