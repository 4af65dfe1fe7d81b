"""MLflow's scoring format, read as `mlflow models serve` reads it, for the service's
/invocations."""

from typing import Any


def mlflow_inputs(doc: object) -> tuple[object, str]:
    """The headlines and the task of an MLflow scoring request: {"inputs": [...]}, {"instances":
    [...]}, {"dataframe_split": {"columns", "data"}} or {"dataframe_records": [...]} (a text or
    title column, or the only one), with "params": {"task": ...} [category]."""
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object with inputs, instances, dataframe_split or "
                         "dataframe_records")
    params = doc.get("params") or {}
    task = params.get("task", "category") if isinstance(params, dict) else None
    if not isinstance(task, str):
        raise ValueError("params.task must be a task name")
    keys = [k for k in ("inputs", "instances", "dataframe_split", "dataframe_records")
            if k in doc]
    if len(keys) != 1 or set(doc) - {keys[0], "params"}:
        raise ValueError("expected exactly one of inputs, instances, dataframe_split or "
                         f"dataframe_records (and params); got {sorted(doc)[:10]}")
    value = doc[keys[0]]
    if keys[0] in ("inputs", "instances"):
        if isinstance(value, dict):  # columns: {"text": [...]}
            value = value[_column(list(value))]
        return ([value] if isinstance(value, str) else value), task
    if keys[0] == "dataframe_split":
        columns = value.get("columns") if isinstance(value, dict) else None
        data = value.get("data") if isinstance(value, dict) else None
        if not isinstance(columns, list) or not isinstance(data, list) or \
                not all(isinstance(r, list) and len(r) == len(columns) for r in data):
            raise ValueError("dataframe_split needs columns and data rows of that length")
        at = columns.index(_column(columns))
        return [r[at] for r in data], task
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ValueError("dataframe_records must be a list of objects")
    name = _column(sorted({k for r in value for k in r}))
    return [r.get(name) for r in value], task


def _column(columns: list) -> Any:
    """Which column holds the headlines: text, title, or the only one (as the pyfunc reads)."""
    found = next((c for c in ("text", "title") if c in columns), None)
    if found is None and len(columns) == 1:
        found = columns[0]
    if found is None:
        raise ValueError(f"the headlines need a 'text' or 'title' column; got {columns[:10]}")
    return found
