"""The command line's manners: help that fits 80 columns, sorting best
first, options out of range refused, a typo'd --root refused, any line ending and a named pipe
read as input, and errors that name the command to run."""

import os
import threading
from pathlib import Path

import pytest

from training.cli import app, main

COMMANDS = [[], ["run"], ["import"], ["ingest"], ["build"], ["train"], ["train", "tfidf"],
            ["train", "bert"], ["train", "use"], ["train", "ensemble"], ["sweep", "tfidf"],
            ["runs"], ["promote"], ["predict"], ["pull"], ["gc"], ["serve"], ["annotate"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "manset")
def test_help_fits_80_columns_without_cut_words(command: list[str], capsys, monkeypatch
                                                ) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.strip() and not [x for x in out.splitlines() if len(x) > 80], out
    assert "…" not in out and "\\[" not in out and "[default: (" not in out, out
    assert not [x for x in out.splitlines()  # click cuts a long first sentence with ...
                if x.endswith("...") and not x.startswith("Usage:")], out


def test_every_command_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)
    names = {c[0] for c in COMMANDS if c}
    assert names == set(group.commands), set(group.commands) ^ names  # type: ignore[attr-defined]


def test_runs_sorts_best_first_and_refuses_a_limit_below_1(trained: Path, capsys) -> None:
    import json

    root = ["--root", str(trained)]
    assert main(["train", "tfidf", "--C", "0.05", *root]) == 0
    for sort, best_first in (("macro_f1", True), ("train_s", False), ("started", True)):
        capsys.readouterr()
        assert main(["runs", "--json", "--sort", sort, *root]) == 0
        values = [json.loads(x)[sort] for x in capsys.readouterr().out.splitlines()]
        assert values == sorted(values, reverse=best_first), (sort, values)
    for limit in ("-1", "0"):
        assert main(["runs", "--limit", limit, *root]) == 2


def test_a_root_that_does_not_exist_is_refused_and_not_created(tmp_path: Path, capsys) -> None:
    typo = tmp_path / "typo"
    for command in (["runs"], ["import"], ["gc"], ["predict", "x"]):
        assert main([*command, "--root", str(typo)]) == 1
        assert "no such folder" in capsys.readouterr().err
    assert not typo.exists()


def test_input_takes_cr_line_endings_and_a_named_pipe(trained: Path, tmp_path: Path,
                                                      capsys) -> None:
    root = ["--root", str(trained)]
    texts = ["Galatasaray derbiyi kazandı", "Borsa güne yükselişle başladı", "Dolar düştü"]
    (tmp_path / "cr.txt").write_bytes("\r".join(texts).encode())
    (tmp_path / "cr.csv").write_bytes(("title\r" + "\r".join(texts) + "\r").encode())
    for name in ("cr.txt", "cr.csv"):
        capsys.readouterr()
        assert main(["predict", "--input", str(tmp_path / name), *root]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 3, name
    fifo = tmp_path / "headlines"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("\n".join(texts) + "\n"))
    writer.start()
    assert main(["predict", "--input", str(fifo), *root]) == 0
    writer.join(10)
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_a_missing_family_bundle_names_the_command_that_trains_it(trained: Path,
                                                                  capsys) -> None:
    assert main(["predict", "--model", "bert", "--root", str(trained), "x"]) == 1
    assert "train one with `manset train bert --task category`" in capsys.readouterr().err
