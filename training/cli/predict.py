"""The commands that use the models: predict and serve."""

import dataclasses
import itertools
import sys
from pathlib import Path
from typing import Annotated

import typer
from manset_serving.bundle import INT8_PROMISE
from manset_serving.settings import Settings

from training import families
from training.cli.common import ABSTAIN_HELP, RootOpt, app, err, known_task, project_paths
from training.options import with_config
from training.project import ProjectError


@app.command(short_help="Classify headlines with the champion.")
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="Headlines to classify.")] = None,
    task: Annotated[str, typer.Option(
        help="category, topic, or all (both, one line per headline).")] = "category",
    model: Annotated[str | None, typer.Option(
        help=f"The last run's bundle of a family ({', '.join(families.BUILT_IN)}, or one "
             "another package adds) instead of the champion.")] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="A bundle folder to use instead of the champion (one task).")] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", help="A file: one headline per line, or a CSV with a 'title' column; "
                        "- reads lines from stdin.")] = None,
    int8: Annotated[bool, typer.Option(
        "--int8", help=f"A BERT bundle's int8 model: faster, {INT8_PROMISE}.")] = False,
    abstain: Annotated[bool, typer.Option(
        "--abstain", help=ABSTAIN_HELP)] = False,
    root: RootOpt = Path("."),
) -> None:
    """Classify headlines with the registered champion of each task (models/<task>/champion/);
    prints JSON lines as it goes, in batches, so a file of any size runs in constant memory."""
    from manset_serving import load

    from training.predicting import iter_headlines, json_lines
    from training.tasks import TASKS

    names = list(TASKS) if task == "all" else [known_task(task)]
    if bundle is not None and len(names) > 1:
        raise ValueError("--bundle names one bundle: use it with one --task")
    if not texts and input is None:
        raise ValueError("no headlines given: pass them as arguments or with --input FILE")
    paths = project_paths(root)
    if model and bundle is None:
        for n in names:
            if not paths.bundle(n, model).is_dir():
                raise ValueError(f"{paths.bundle(n, model)}: no {model} bundle of {n} yet; "
                                 f"train one with `manset train {model} --task {n}`")
    models = {n: load(bundle or (paths.bundle(n, model) if model else paths.champion(n)),
                      int8=int8, abstain=abstain, task=n) for n in names}
    source = itertools.chain(texts or [], iter_headlines(input) if input is not None else [])
    for chunk in json_lines(models, source, task == "all", str(input or "arguments")):
        sys.stdout.write(chunk)
        sys.stdout.flush()


@app.command(short_help="Serve the champions over HTTP.")
@with_config(Settings)
def serve(cfg: Settings, root: RootOpt = Path(".")) -> None:
    """Serve the champion of every exported task over HTTP (POST /v1/classify, docs at /docs);
    a newly exported champion is picked up without a restart. The options are manset-serve's;
    a relative --models is under --root. Needs the serve extra."""
    try:
        from manset_serving.service import serve as run_service
    except ImportError as e:
        raise ProjectError(f"serve needs the serve extra ({e}): pip install -e './serving[serve]'"
                           ) from e
    settings = dataclasses.replace(cfg, models=project_paths(root).root / cfg.models)
    err.print(f"serving {settings.models} on http://{settings.host}:{settings.port} "
              "(docs: /docs)", soft_wrap=True)
    run_service(settings)
