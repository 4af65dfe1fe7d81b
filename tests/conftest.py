"""Shared fixtures: a small real project on disk and a fresh MLflow store per test.

The MLflow SQLite schema is created once per session (its migrations take seconds) and copied
for each test, as MLflow's own test suite does.
"""

import csv
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
# The tracking server the suite was started against, read before any test runs: MLflow exports
# whatever URI it is set to, so a test's own SQLite store would replace it in the environment.
SUITE_SERVER = next((u for u in [os.environ.get("MLFLOW_TRACKING_URI", "")]
                     if u.startswith(("http://", "https://"))), "")
DATA = ROOT / "data"


def write_slice(src: Path, dst: Path, label_column: str, per_label: dict[str, int]) -> None:
    """The first n rows of each chosen label of a bundled CSV: a tiny set of real headlines."""
    with src.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows, seen = [], dict.fromkeys(per_label, 0)
        for row in reader:
            lb = row[label_column]
            if lb in seen and seen[lb] < per_label[lb]:
                seen[lb] += 1
                rows.append(row)
    with dst.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the schema
    return db


def make_project(root: Path, mlflow_template: Path) -> Path:
    """A project folder with the real alias tables, a small real slice of the three labelled
    CSVs (8 classes, 800 headlines: 42bin brings Dünya and Gündem, and a catch-all folder that
    is not a class) and an empty MLflow store."""
    (root / "data" / "labelled").mkdir(parents=True)
    for name in ("categories.csv", "category_aliases.csv"):
        shutil.copy(DATA / name, root / "data" / name)
    write_slice(DATA / "labelled" / "trthaber_headlines.csv",
                root / "data" / "labelled" / "trthaber_headlines.csv", "section",
                {"spor": 120, "ekonomi": 120, "saglik": 120, "kultur-sanat": 120})
    write_slice(DATA / "labelled" / "turkish_headlines.csv",
                root / "data" / "labelled" / "turkish_headlines.csv", "label",
                {"Siyaset": 60, "Magazin": 60})
    write_slice(DATA / "labelled" / "42bin_haber_headlines.csv",
                root / "data" / "labelled" / "42bin_haber_headlines.csv", "label",
                {"dunya": 60, "guncel": 60, "spor": 40, "genel": 40})
    shutil.copy(DATA / "labelled" / "sources.csv", root / "data" / "labelled" / "sources.csv")
    (root / "mlruns").mkdir()
    shutil.copy(mlflow_template, root / "mlruns" / "mlflow.db")
    return root


@pytest.fixture()
def project(tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Path:
    """The small project, tracking to its own SQLite store; or, when the suite was started with
    MLFLOW_TRACKING_URI naming a server (as MLflow's own store tests are), to that server, under
    a MANSET_NAMESPACE of its own so that tests never see each other's champions. Tests marked
    `sqlite_store` read mlruns/mlflow.db themselves and are skipped then."""
    import re
    import uuid

    server = SUITE_SERVER
    if server:
        if request.node.get_closest_marker("sqlite_store"):
            pytest.skip("reads the project's SQLite store; MLFLOW_TRACKING_URI is a server")
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:48]
        monkeypatch.setenv("MANSET_NAMESPACE", f"{name}-{uuid.uuid4().hex[:8]}")
        # set, so that they come back when the test ends, whatever MLflow exports meanwhile
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", server)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.delenv("MANSET_NAMESPACE", raising=False)
    monkeypatch.delenv("MANSET_ROOT", raising=False)
    return make_project(tmp_path / "project", mlflow_template)


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    """The small project after `manset run`, once per session, on its own SQLite store."""
    from training.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MANSET_NAMESPACE", raising=False)
        root = make_project(tmp_path_factory.mktemp("trained") / "project", mlflow_template)
        assert main(["run", "--root", str(root)]) == 0
    return root


@pytest.fixture()
def trained(project: Path, request: pytest.FixtureRequest) -> Path:
    """The small project after `manset run`, fresh for each test: a copy of the session's
    trained project, its store re-pointed at the copy (as for any moved project); against a
    tracking server, trained afresh."""
    from training.cli import main
    from training.tracking import portable

    if SUITE_SERVER:
        assert main(["run", "--root", str(project)]) == 0
        return project
    template = request.getfixturevalue("trained_template")
    shutil.rmtree(project)
    shutil.copytree(template, project, symlinks=True)
    assert portable.relocate(project) == [str(template)]
    return project


def verify(folder: Path) -> dict:
    """A bundle's manifest, after checking every file it lists."""
    from manset_serving.bundle import Bundle

    bundle = Bundle(folder)
    bundle.verify_all()
    return bundle.manifest


def served(manifest: dict) -> dict:
    """The manifest of a served copy of this bundle (the champion, an ensemble's member): a BERT
    bundle's hf/, which only transformers reads, left out and named under left_out."""
    files = {f: d for f, d in manifest["files"].items() if not f.startswith("hf/")}
    return manifest if files == manifest["files"] else \
        {**manifest, "files": files, "left_out": ["hf/"]}


# BERT tests (test_bert.py, test_bert_train.py): a tiny model built here and helpers around it.

STEPS = ["--max-steps", "12", "--batch-size", "16"]  # evaluates and checkpoints at 6 and 12


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (hidden 32) with a WordPiece vocabulary learnt from our headlines,
    saved as a Hugging Face folder (BertModel + PreTrainedTokenizerFast)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    folder = tmp_path_factory.mktemp("tiny-bert")
    with (DATA / "labelled" / "trthaber_headlines.csv").open(encoding="utf-8") as f:
        texts = [r["title"] for r in csv.DictReader(f)]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)  # BERTurk is cased too
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, WordPieceTrainer(
        vocab_size=3000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    tok.decoder = decoders.WordPiece()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.token_to_id("[PAD]"),
    )).save_pretrained(folder)
    return folder


def quick_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    """finish_run times 5 batches of 20,000 headlines; the figure is not under test in the BERT
    tests (on e5-small that alone took ~40 s)."""
    import functools

    from training import evaluation

    monkeypatch.setattr(evaluation, "speed", functools.partial(
        evaluation.speed, batch=200, singles=10, repeats=2))


def build(root: Path) -> None:
    from training.cli import main

    assert main(["import", "--root", str(root)]) == 0
    assert main(["build", "--root", str(root)]) == 0


def tracking_client(root: Path) -> "MlflowClient":
    """A client of the project's store, which also becomes the process's tracking URI (for
    models:/ URIs); MLflow exports it to MLFLOW_TRACKING_URI, so point it first in any test that
    tracks after an earlier test's client."""
    import mlflow

    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri, registry_uri=uri)


def spoil_logged_predictions(client: "MlflowClient", version: str) -> None:
    """Make a version's logged test predictions all wrong: the paired promotion test compares a
    new run against them, so a tiny model that might tie the new one loses for sure."""
    import json
    from urllib.parse import unquote

    from training.tracking import PREDICTIONS

    run = client.get_run(client.get_model_version("manset-category", version).run_id)
    logged = Path(unquote(run.info.artifact_uri.removeprefix("file://"))) / PREDICTIONS
    predictions = json.loads(logged.read_text())
    names = sorted(set(predictions["true"]))
    predictions["predicted"] = [names[(names.index(t) + 1) % len(names)]
                                for t in predictions["true"]]
    logged.write_text(json.dumps(predictions))
