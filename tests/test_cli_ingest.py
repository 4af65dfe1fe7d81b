"""`manset ingest` from the command line: dry run, exit codes, and pages in `manset run`."""

import json
import shutil
from pathlib import Path

from training import headlines
from training.cli import main

PAGES = Path(__file__).resolve().parent.parent / "data" / "pages"
SEED = PAGES / "eshaber_lavrov_2025-11-09.txt"


def test_dry_run_prints_rows_and_stores_nothing(project, capsys):
    assert main(["ingest", "--dry-run", "--root", str(project), str(SEED)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 21
    assert {"text", "category", "category_raw", "block", "published_at", "source"} <= set(rows[0])
    assert not (project / "data" / "headlines.sqlite").exists()


def test_ingest_stores_once_and_fails_loudly_on_a_bad_file(project, capsys, tmp_path):
    empty = tmp_path / "empty.html"
    empty.write_bytes(b"")
    assert main(["ingest", "--root", str(project), str(SEED), str(empty)]) == 1
    out = capsys.readouterr()
    assert "empty.html" in out.err and "1 page(s) failed" in out.err
    con = headlines.connect(project / "data" / "headlines.sqlite")
    assert len(headlines.all_rows(con)) == 21
    assert main(["ingest", "--root", str(project), str(SEED)]) == 0
    assert len(headlines.all_rows(con)) == 21


def test_page_time_option_resolves_relative_stamps(project, capsys):
    assert main(["ingest", "--dry-run", "--root", str(project), "--page-time",
                 "2025-11-10T12:00:00", str(SEED)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    lead = next(r for r in rows if r["block"] == "lead")
    assert lead["published_at"] == "2025-11-10T10:00:00"  # "Dünya - 2 saat önce"


def test_run_ingests_the_bundled_pages(project):
    shutil.copytree(PAGES, project / "data" / "pages")
    assert main(["run", "--root", str(project)]) == 0
    con = headlines.connect(project / "data" / "headlines.sqlite")
    blocks = {r["block"] for r in headlines.all_rows(con) if r["source"] == "eshaber.com.tr"}
    assert {"lead", "Haftanın Öne Çıkanları", "İlgili Haberler", "Günün Manşetleri"} == blocks
