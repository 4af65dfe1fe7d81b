"""Label Studio JSON: export tasks (with the gold labels as annotations) and the labelling config,
import a project's export back into the gold set.

A task carries the headline id in `data.headline_id`; a result is a single `choices` answer from
the control named `label`, whose stored value (the choice's alias) is the label's code. A file
without these did not come from a manset export, and is refused with the task it fails on.
"""

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from training.annotation.gold import GoldRow
from training.tasks import Label

CONTROL, TEXT = "label", "text"


def config_xml(labels: list[Label], keys: str, question: str) -> str:
    """The labelling interface: the question, the headline and one single choice, hotkeys as in
    the terminal."""
    view = ET.Element("View")
    ET.SubElement(view, "Header", value=question)
    ET.SubElement(view, "Text", name=TEXT, value=f"${TEXT}")
    choices = ET.SubElement(view, "Choices", name=CONTROL, toName=TEXT, choice="single-radio",
                            required="true")
    for key, t in zip(keys, labels, strict=True):
        ET.SubElement(choices, "Choice", value=f"{t.name_en} / {t.name_tr}", alias=t.code,
                      hint=t.scope, hotkey=key)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def export_tasks(gold: list[GoldRow], todo: list[tuple[str, str, str, str]]) -> list[dict]:
    """Gold rows as annotated tasks, then (id, text, source, category) rows still to label."""
    tasks = []
    for row in gold:
        tasks.append({"data": _data(row.id, row.text, row.source, row.category), "annotations": [{
            "result": [{"from_name": CONTROL, "to_name": TEXT, "type": "choices",
                        "value": {"choices": [row.label]}}],
            "completed_by": row.annotator, "created_at": row.annotated_at,
            "meta": {"note": row.note}}]})
    tasks += [{"data": _data(*t)} for t in todo]
    return tasks


def _data(hid: str, text: str, source: str, category: str) -> dict:
    return {TEXT: text, "headline_id": hid, "source": source, "category": category}


def import_tasks(path: Path, codes: set[str]) -> list[tuple[int, GoldRow]]:
    """Annotated tasks of a Label Studio JSON export as (task number, gold row); tasks with no
    annotation are passed over. The newest non-cancelled annotation of a task is the one taken.
    A headline in two tasks is one row when both give the same label, and refused when they
    differ: an import applies whole or not at all, so a refusal names the task and changes
    nothing. A shape Label Studio never writes is refused in one line naming the task."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a Label Studio JSON export ({e})") from e
    if not isinstance(tasks, list):
        raise ValueError(f"{path}: expected a JSON list of tasks (Label Studio's JSON export)")
    rows: dict[str, tuple[int, GoldRow]] = {}
    for n, task in enumerate(tasks, 1):
        where = f"{path}: task {n}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not data.get("headline_id") or TEXT not in data:
            raise ValueError(f"{where} has no data.headline_id and data.text: not a task "
                             "exported by `manset annotate` (another project?)")
        done = [a for a in _list(task.get("annotations") or [], "annotations", where)
                if not _dict(a, "an annotation", where).get("was_cancelled")]
        if not done:
            continue
        ann = max(done, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
        row = GoldRow(
            id=str(data["headline_id"]), text=str(data[TEXT]), source=str(data.get("source", "")),
            category=str(data.get("category", "")), label=_choice(ann, codes, where),
            annotator=_annotator(ann.get("completed_by")),
            annotated_at=str(ann.get("created_at") or datetime.now(UTC).isoformat()),
            note=str(_dict(ann.get("meta") or {}, "meta", where).get("note", "")))
        if row.id in rows and rows[row.id][1].label != row.label:
            first, other = rows[row.id]
            raise ValueError(f"{where}: headline {row.id} is also task {first}, labelled "
                             f"{other.label} there and {row.label} here; keep one answer")
        rows.setdefault(row.id, (n, row))
    return list(rows.values())


def _list(value: object, name: str, where: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{where}: {name} is {type(value).__name__}, not a list")
    return value


def _dict(value: object, name: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {name} is {type(value).__name__}, not an object")
    return value


def _choice(annotation: dict, codes: set[str], where: str) -> str:
    results = [r for r in _list(annotation.get("result") or [], "result", where)
               if _dict(r, "a result", where).get("from_name") == CONTROL]
    if len(results) != 1:
        raise ValueError(f"{where}: expected one '{CONTROL}' choice, found {len(results)} "
                         "(a labelling config from another project?)")
    value = _dict(results[0].get("value") or {}, "value", where)
    choices = _list(value.get("choices") or [], "value.choices", where)
    if len(choices) != 1 or not isinstance(choices[0], str) or choices[0] not in codes:
        raise ValueError(f"{where}: {choices!r} is not one known label of the task")
    return choices[0]


def _annotator(completed_by: object) -> str:
    """Label Studio writes a user id, a user object or (our export) a name."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or f"label-studio-user-{completed_by.get('id')}")
    if isinstance(completed_by, int):
        return f"label-studio-user-{completed_by}"
    return str(completed_by or "label-studio")
