"""The ``normscope audit`` command; :func:`register` adds it to a Typer app."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from normscope import data as datasets
from normscope.auditing.factory import FORMAT, load_model
from normscope.auditing.render import print_result
from normscope.auditing.run import audit
from normscope.auditing.variants import VARIANTS
from normscope.data.dataset import Dataset
from normscope.errors import ConfigError, NormscopeError, ShapeError, UnknownNameError
from normscope.experiments.store import DEFAULT_PATH
from normscope.subject import BN_MODES
from normscope.terminal import activity

FOLDER_SOURCES = {"mnist": "train-images-idx3-ubyte", "cifar10": "data_batch_1.bin"}
"""Data sets read from a folder, told apart by a file only they hold."""


def _folder_source(folder: Path) -> str:
    for name, marker in FOLDER_SOURCES.items():
        if any(folder.glob(f"{marker}*")) or any(folder.glob(f"*/{marker}*")):
            return name
    raise ConfigError(
        f"folder {str(folder)!r} holds neither MNIST IDX files (train-images-idx3-ubyte...) "
        "nor CIFAR-10 binary batches (data_batch_1.bin...); give one of those folders or "
        f"a data set name ({', '.join(datasets.names())})."
    )


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,8,8"`` -> (1, 8, 8)."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(
            f"--input-shape {text!r} is not a shape; give positive sizes separated by commas, "
            "e.g. 1,8,8."
        )
    return shape


def _reshape(dataset: Dataset, shape: tuple[int, ...]) -> Dataset:
    have = tuple(dataset.x.shape[1:])
    if math.prod(have) != math.prod(shape):
        raise ShapeError(
            f"--input-shape {','.join(map(str, shape))} has {math.prod(shape)} values per "
            f"sample but {dataset.name!r} inputs have shape {have} ({math.prod(have)} "
            "values); give a shape with the same number of values."
        )
    return replace(dataset, x=dataset.x.reshape(len(dataset), *shape))


def load_data(source: str, n: int, seed: int, shape: tuple[int, ...] | None) -> Dataset:
    """Data set ``source`` (a name or a folder of MNIST / CIFAR-10 files), reshaped."""
    if source in datasets.names():
        options = {"dim": math.prod(shape)} if source == "gaussian" and shape else {}
        dataset = datasets.load(source, n=n, seed=seed, **options)
    elif Path(source).is_dir():
        folder = Path(source)
        dataset = datasets.load(_folder_source(folder), n=n, seed=seed, root=folder)
    else:
        raise UnknownNameError(
            f"--data {source!r} is neither a data set ({', '.join(datasets.names())}) nor a "
            "folder holding MNIST or CIFAR-10 files."
        )
    return _reshape(dataset, shape) if shape else dataset


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def audit_command(
    model: Annotated[
        str,
        typer.Argument(
            help=f"{FORMAT}: a function returning the model. "
            "The file is imported and run: trust it."
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            help="Data set name (digits, mnist1d, gaussian...) or a folder of MNIST / CIFAR-10 "
            "files."
        ),
    ] = "digits",
    input_shape: Annotated[
        str | None,
        typer.Option(
            "--input-shape", help="Shape of one input, e.g. 1,8,8 (the data is reshaped)."
        ),
    ] = None,
    loss: Annotated[
        str | None, typer.Option(help="cross_entropy or mse (default: from the data's task).")
    ] = None,
    n: Annotated[int, typer.Option(help="Samples.")] = 128,
    measures: Annotated[
        str | None, typer.Option(help="Comma-separated measures (default: the audit's list).")
    ] = None,
    variants: Annotated[str, typer.Option(help="Comma-separated variants.")] = ",".join(VARIANTS),
    bn_modes: Annotated[
        str, typer.Option("--bn-modes", help="Batch-norm modes for variants with batch norm.")
    ] = ",".join(BN_MODES),
    budget_seconds: Annotated[
        float | None,
        typer.Option("--budget-seconds", help="Time cap; cheaper settings are chosen to fit it."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of data and measures.")] = 0,
    db: Annotated[Path, typer.Option(help="Results store (SQLite file).")] = DEFAULT_PATH,
    html: Annotated[Path | None, typer.Option(help="Also write an HTML page here.")] = None,
) -> None:
    """Measure what a model's normalization layers do: the same measures on the model as
    given, without normalization, with batch norm swapped, and in train / eval mode."""
    console, errors = Console(), Console(stderr=True)
    try:
        net, function = load_model(model)
        shape = parse_shape(input_shape) if input_shape else None
        dataset = load_data(data, n, seed, shape)
        with activity(errors, f"auditing {function} ...") as progress:
            result = audit(
                net,
                dataset,
                loss=loss,
                measures=_names(measures),
                variants=_names(variants) or [],
                bn_modes=_names(bn_modes) or [],
                budget_seconds=budget_seconds,
                seed=seed,
                name=function,
                progress=progress,
            )
        print_result(result, console)
        experiment = result.save(db)
        console.print(f"stored as {escape(experiment)} in {escape(str(db))}")
        if html is not None:
            console.print(f"HTML written to {escape(str(result.write_html(html)))}")
    except NormscopeError as err:
        errors.print(f"[bold red]error:[/bold red] {escape(str(err))}", soft_wrap=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command to ``app``."""
    app.command("audit")(audit_command)
