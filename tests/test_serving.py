"""manset_serving: bundle checks (a tampered or malformed bundle is refused in one line, and only
the files the manifest lists, inside the folder, are read), the shared input check, and the lean
install."""

import csv
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, ROOT
from manset_serving import BundleError, InputError, check_texts, load
from manset_serving.bundle import Bundle, sha256
from manset_serving.features import FeatureConfig

from training import export
from training.families import tfidf

SECTIONS = ("spor", "ekonomi", "saglik", "kultur-sanat")


def small_bundle(folder: Path) -> Path:
    """A real TF-IDF bundle, trained on 400 bundled headlines with small hash tables."""
    with (DATA / "labelled" / "trthaber_headlines.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["section"] in SECTIONS]
    texts, y = [], []
    for i, section in enumerate(SECTIONS):
        picked = [r["title"] for r in rows if r["section"] == section][:100]
        texts += picked
        y += [i] * len(picked)
    cfg = tfidf.TfidfConfig(features=FeatureConfig(char_bits=12, word_bits=10))
    pipe = tfidf.fit(cfg, texts, np.array(y), ["distant"] * len(texts))
    arrays, beta = tfidf.export_arrays(pipe)
    folder.mkdir(parents=True)
    info = export.BundleInfo("category", "tfidf", list(SECTIONS),
                             {"task": "category", "features": cfg.features.__dict__,
                              "beta": beta}, {"test_macro_f1": 0.9}, "run-1", "fp", "card")
    export.write_arrays(folder, arrays, info)
    return folder


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(tmp_path_factory.mktemp("bundle") / "tfidf")


@pytest.fixture()
def bundle(built: Path, tmp_path: Path) -> Path:
    """A private copy to tamper with."""
    return Path(shutil.copytree(built, tmp_path / "bundle"))


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, manifest: object) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _rehash(folder: Path, name: str) -> None:
    """Make an edited file pass the checksum, as an attacker who rewrites the manifest would."""
    m = _manifest(folder)
    m["files"][name] = sha256(folder / name)
    _write_manifest(folder, m)


def _refused(folder: Path, *words: str) -> str:
    with pytest.raises(BundleError) as e:
        load(folder)
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def test_a_bundle_predicts_in_the_shared_format(bundle: Path) -> None:
    model = load(bundle)
    rows = model.predict(["Galatasaray derbiyi 3-1 kazandı", "Merkez Bankası faizi sabit tuttu"])
    assert [r["label"] for r in rows] == ["spor", "ekonomi"]
    assert all(set(r) == {"label", "score", "probabilities"} for r in rows)
    assert all(r["score"] == max(r["probabilities"].values()) for r in rows)
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-4
    assert model.info()["mlflow_run_id"] == "run-1" and model.family == "tfidf"


def test_a_flipped_byte_is_refused(bundle: Path) -> None:
    data = bytearray((bundle / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (bundle / "model.safetensors").write_bytes(bytes(data))
    _refused(bundle, "model.safetensors", "checksum differs")


@pytest.mark.parametrize("entry", ["../outside.txt", "/etc/passwd", "../../../etc/passwd",
                                   "a/../../outside.txt", "C:/x", "a\\..\\b", ""])
def test_a_manifest_entry_outside_the_folder_is_never_opened(bundle: Path, entry: str) -> None:
    outside = bundle.parent / "outside.txt"
    outside.write_text("secret")
    m = _manifest(bundle)
    m["files"][entry] = sha256(outside)  # a correct digest: only the path check can stop it
    _write_manifest(bundle, m)
    _refused(bundle, "manifest.json", "not a plain path inside the bundle")


def test_a_symlinked_file_is_refused_even_with_the_right_checksum(bundle: Path) -> None:
    outside = bundle.parent / "labels.json"
    shutil.move(bundle / "labels.json", outside)  # same bytes, so the digest matches
    (bundle / "labels.json").symlink_to(outside)
    _refused(bundle, "labels.json", "symbolic link")


def test_a_symlinked_folder_on_the_way_is_refused(bundle: Path) -> None:
    real = bundle.parent / "real"
    real.mkdir()
    (real / "x.json").write_text("{}")
    (bundle / "sub").symlink_to(real)
    m = _manifest(bundle)
    m["files"]["sub/x.json"] = sha256(real / "x.json")
    _write_manifest(bundle, m)
    with pytest.raises(BundleError, match="'sub' is a symbolic link"):
        Bundle(bundle).read("sub/x.json")


def test_a_file_left_out_of_the_manifest_is_never_read(bundle: Path) -> None:
    m = _manifest(bundle)
    del m["files"]["labels.json"]
    _write_manifest(bundle, m)
    (bundle / "labels.json").write_text(json.dumps(["HACKED"] * 4))
    _refused(bundle, "labels.json", "not listed in manifest.json")


def test_unlisted_extra_files_are_ignored(bundle: Path) -> None:
    (bundle / "notes.txt").write_text("anything")
    assert load(bundle).labels == list(SECTIONS)


@pytest.mark.parametrize(("manifest", "words"), [
    ([1, 2], "must be a JSON object"),
    ({"format_version": 1, "task": "category", "model": "tfidf"}, "'files' must map"),
    ({"format_version": 1, "task": "category", "model": "tfidf", "files": {"labels.json": 1}},
     "no SHA-256 digest"),
])
def test_a_malformed_manifest_is_one_line(bundle: Path, manifest: object, words: str) -> None:
    _write_manifest(bundle, manifest)
    _refused(bundle, "manifest.json", words)


def test_a_manifest_that_is_not_json_or_of_another_format(bundle: Path) -> None:
    m = _manifest(bundle)
    _write_manifest(bundle, {**m, "format_version": 2})
    _refused(bundle, "format_version 2")
    _write_manifest(bundle, {**m, "model": "xgboost"})
    _refused(bundle, "model family 'xgboost'")
    (bundle / "manifest.json").write_text("{not json")
    _refused(bundle, "manifest.json", "not valid JSON")


def test_short_labels_are_refused(bundle: Path) -> None:
    (bundle / "labels.json").write_text(json.dumps(list(SECTIONS)[:3]))
    _rehash(bundle, "labels.json")
    _refused(bundle, "labels.json", "3 labels for a model with 4 outputs")


@pytest.mark.parametrize("content", [b"garbage", b"\x08\x00\x00\x00\x00\x00\x00\x00{}", b""])
def test_garbage_weights_are_refused(bundle: Path, content: bytes) -> None:
    (bundle / "model.safetensors").write_bytes(content)
    _rehash(bundle, "model.safetensors")
    _refused(bundle, "model.safetensors", "not a TF-IDF weights file")


def test_a_missing_folder_or_manifest(tmp_path: Path) -> None:
    _refused(tmp_path / "nowhere", "no such bundle folder")
    _refused(tmp_path, "not a manset bundle")


def test_bundle_files_are_world_readable(built: Path) -> None:
    for path in built.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path


@pytest.mark.parametrize(("texts", "words"), [
    ("one string", "expected a list of strings"),
    (None, "expected a list of strings"),
    ([], "no headlines given"),
    (["ok", ""], "headlines[1]: empty headline"),
    (["  \t\n"], "headlines[0]: empty headline"),
    ([123], "headlines[0]: expected a string, got int"),
    ([None], "headlines[0]: expected a string, got NoneType"),
    (["x" * 100_000], "headlines[0]: 100000 characters, at most 1000"),
    (["ok", "\ud800"], "headlines[1]: not valid Unicode"),
    *[(["ok", t], "headlines[1]: nothing to classify") for t in ["😀", "!!!", "\u200b", "\x00"]],
    (["a"] * 10_001, "10001 headlines, at most 10000"),
])
def test_bad_input_names_the_item(texts: object, words: str) -> None:
    with pytest.raises(InputError) as e:
        check_texts(texts)
    assert words in str(e.value)


def test_unusual_but_valid_text_is_classified(built: Path) -> None:
    texts = ["Galatasaray 🏆 şampiyon oldu 🎉", "The central bank held rates", "ИСТАНБУЛ",
             "İSTANBUL'DA HAVA", "1"]
    rows = load(built).predict(texts)
    assert len(rows) == len(texts) and all(r["label"] in SECTIONS for r in rows)


@pytest.mark.slow  # a clean virtual environment and a pip install: about 35 s
def test_lean_install_predicts_without_the_training_stack(built: Path, tmp_path: Path) -> None:
    """`pip install ./serving` in a clean virtual environment: it predicts with a bundle, and
    none of the training stack is installed."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    source = shutil.copytree(ROOT / "serving", tmp_path / "serving",  # pip builds in place
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    out = subprocess.run([str(py), "-m", "pip", "install", "-q", str(source)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, timeout=120, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"manset-serving", "numpy", "safetensors"} <= installed
    assert not installed & {"manset", "mlflow", "mlflow-skinny", "datasets", "scikit-learn",
                            "matplotlib", "transformers", "torch", "pandas", "scipy"}
    code = ("import json, sys; from manset_serving import load; "
            "print(json.dumps(load(sys.argv[1]).predict(['Galatasaray derbiyi kazandı'])))")
    run = subprocess.run([str(py), "-c", code, str(built)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == load(built).predict(["Galatasaray derbiyi kazandı"])
    blocked = subprocess.run([str(py), "-c", "import training"], capture_output=True,
                             cwd=tmp_path)
    assert blocked.returncode != 0  # the training package is not there at all


def test_the_serving_package_imports_nothing_from_training() -> None:
    code = ("import sys; sys.modules['training'] = None\n"
            "import manset_serving, manset_serving.onnx, manset_serving.service\n"
            "print(sorted(m for m, v in sys.modules.items() if v is not None and "
            "m.split('.')[0] in ('training', 'sklearn', 'mlflow', 'datasets', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT / "serving")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_tfidf_bundle_stores_only_the_buckets_training_saw(trained: Path, tmp_path: Path
                                                              ) -> None:
    from safetensors.numpy import load_file, save_file

    built = trained / "models" / "category" / "tfidf"  # the default 2^20 + 2^18 buckets
    arrays = load_file(built / "model.safetensors")
    cfg = json.loads((built / "config.json").read_text())["features"]
    width = 2 ** cfg["char_bits"] + 2 ** cfg["word_bits"] + 1
    assert set(arrays) == {"buckets", "idf", "idf_unseen", "weights", "intercept"}
    assert len(arrays["buckets"]) < width / 10 and len(arrays["weights"]) == len(arrays["buckets"])
    # a bundle exported before (one dense row per bucket) answers the same
    idf = np.full(width, arrays["idf_unseen"][0], dtype=np.float32)
    idf[arrays["buckets"]] = arrays["idf"]
    table = np.zeros((width, arrays["weights"].shape[1]), dtype=np.float32)
    table[arrays["buckets"]] = arrays["weights"]
    old = Path(shutil.copytree(built, tmp_path / "dense"))
    save_file({"idf": idf, "table": table, "intercept": arrays["intercept"]},
              str(old / "model.safetensors"))
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = sha256(old / "model.safetensors")
    (old / "manifest.json").write_text(json.dumps(manifest))
    sizes = [(f / "model.safetensors").stat().st_size for f in (old, built)]
    assert sizes[0] > 10 * sizes[1], sizes
    texts = ["Galatasaray derbiyi kazandı", "Merkez Bankası faizi sabit tuttu", "xyzzy qwv"]
    assert load(old).predict(texts) == load(built).predict(texts)
