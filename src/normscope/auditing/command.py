"""The ``normscope audit`` command; :func:`register` adds it to a Typer app.

Importing this module loads neither torch nor the audit machinery (they are imported
when the command runs), so ``normscope --help`` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from normscope.auditing.factory import FORMAT
from normscope.errors import ConfigError, NormscopeError, ShapeError, UnknownNameError
from normscope.outputs import check_output
from normscope.sanitize import console as new_console
from normscope.sanitize import rich_markup as escape
from normscope.terminal import activity

if TYPE_CHECKING:
    from normscope.data.dataset import Dataset

FOLDER_SOURCES = {"mnist": "train-images-idx3-ubyte", "cifar10": "data_batch_1.bin"}
"""Data sets read from a folder, told apart by a file only they hold."""


def _all_variants() -> str:
    from normscope.auditing.variants import VARIANTS

    return ",".join(VARIANTS)


def _all_bn_modes() -> str:
    from normscope.subject import BN_MODES

    return ",".join(BN_MODES)


def _default_store() -> Path:
    from normscope.experiments.store import DEFAULT_PATH

    return DEFAULT_PATH


def _folder_source(folder: Path) -> str:
    from normscope import data as datasets

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
    from normscope import data as datasets

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
        str | None,
        typer.Option(
            help="Data set name (digits, mnist1d, gaussian...) or a folder of MNIST / CIFAR-10 "
            "files. Default: the data the factory returns with the model, else digits."
        ),
    ] = None,
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
    variants: Annotated[
        str | None, typer.Option(help="Comma-separated variants (default: all of them).")
    ] = None,
    bn_modes: Annotated[
        str | None,
        typer.Option(
            "--bn-modes",
            help="Batch-norm modes for variants with batch norm (default: train,eval).",
        ),
    ] = None,
    budget_seconds: Annotated[
        float | None,
        typer.Option("--budget-seconds", help="Time cap; cheaper settings are chosen to fit it."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of data and measures.")] = 0,
    db: Annotated[
        Path | None,
        typer.Option(help="Results store (SQLite file; default: results/normscope.db)."),
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Also write an HTML page here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Measure what a model's normalization layers do: the same measures on the model as
    given, without normalization, with batch norm swapped, and in train / eval mode."""
    from normscope.auditing.factory import load_model
    from normscope.auditing.render import print_result
    from normscope.auditing.run import audit

    console, errors = new_console(), new_console(stderr=True)
    try:
        if html is not None:
            check_output(html, store=db, flag="--html")
        net, own_data, function = load_model(model)
        shape = parse_shape(input_shape) if input_shape else None
        if own_data is not None and data is None:
            if shape is not None:
                raise ConfigError(
                    "--input-shape reshapes a named data set; the factory returned its own "
                    "data: shape it there (or pass --data)."
                )
            dataset = own_data
        else:
            dataset = load_data(data or "digits", n, seed, shape)
        with _progress(errors, quiet, f"auditing {function} ...") as show:
            result = audit(
                net,
                dataset,
                loss=loss,
                measures=_names(measures),
                variants=_names(_all_variants() if variants is None else variants) or [],
                bn_modes=_names(_all_bn_modes() if bn_modes is None else bn_modes) or [],
                budget_seconds=budget_seconds,
                seed=seed,
                name=function,
                progress=show,
            )
        print_result(result, console)
        db = _default_store() if db is None else db
        experiment = result.save(db)
        console.print(f"stored as {escape(experiment)} in {escape(str(db))}")
        if html is not None:
            console.print(f"HTML written to {escape(str(result.write_html(html)))}")
    except NormscopeError as err:
        message = " ".join(str(err).split())
        errors.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
        raise typer.Exit(2) from None


@contextmanager
def _progress(errors: Console, quiet: bool, text: str) -> Iterator[Callable[[str], None] | None]:
    """Stderr names the measurement under way, with its products done and expected once
    it runs for a few seconds: a spinner on a terminal, plain lines otherwise; nothing
    when ``quiet``."""
    if quiet:
        yield None
        return
    from normscope import progress

    with activity(errors, text) as update, progress.reporting(to=update):
        yield update


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command to ``app``."""
    app.command("audit")(audit_command)
