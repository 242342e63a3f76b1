"""Load a model from ``path/to/file.py:function``: the file the user names, and only it.

The file is imported with :func:`importlib.util.spec_from_file_location` on that exact
path (never by a search of ``sys.path``) and the function is called with no
arguments. Importing a file runs its code: only audit files you trust.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from normscope.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from torch import nn

FORMAT = "path/to/file.py:function"


def split_reference(reference: str) -> tuple[Path, str]:
    """``"models.py:make_model"`` -> (Path("models.py"), "make_model")."""
    path, sep, function = reference.rpartition(":")
    if not sep or not path or not function.isidentifier():
        raise ConfigError(
            f"model {reference!r} is not of the form {FORMAT}: name a Python file and the "
            "function in it that returns the model, e.g. models.py:make_model."
        )
    return Path(path), function


def _import(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"model file {str(path)!r} does not exist; give the path of a .py file.")
    if path.suffix != ".py":
        raise ConfigError(f"model file {str(path)!r} is not a .py file; give a Python source file.")
    resolved = path.resolve()
    # a name of its own, so that the user's module never shadows or replaces another one
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = f"normscope_audit_model_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {str(path)!r} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    # dataclasses and typing look classes' modules up in sys.modules while the file runs
    sys.modules[name] = module
    try:
        with _own_argv(path):
            spec.loader.exec_module(module)
    except SystemExit as done:
        sys.modules.pop(name, None)
        raise ModelError(_exited(f"importing model file {str(path)!r}", done)) from None
    except Exception as err:  # any error in the user's file is theirs to fix
        sys.modules.pop(name, None)
        raise ModelError(
            f"importing model file {str(path)!r} failed: {type(err).__name__}: {err}. "
            "Fix the file (it is run as a script would be, from its exact path; modules "
            "beside it are importable only if they are installed or on PYTHONPATH)."
        ) from None
    return module


@contextmanager
def _own_argv(path: Path) -> Iterator[None]:
    """``sys.argv`` as the file would see it run with no arguments, so that a file that
    parses its command line at import gets its defaults, not the audit's options."""
    saved = sys.argv
    sys.argv = [str(path)]
    try:
        yield
    finally:
        sys.argv = saved


def _exited(what: str, done: SystemExit) -> str:
    return (
        f"{what} called sys.exit({done.code!r}) (argparse does so on arguments it does not "
        "accept); a model file must not exit or parse the command line when it is imported "
        'or its function is called: put script code under `if __name__ == "__main__":`.'
    )


def load_model(reference: str) -> tuple[nn.Module, Any, str]:
    """``(model, data or None, function name)`` from the function ``reference`` names.

    The function takes no arguments and returns a model, or ``(model, data)`` with data
    anything a Subject takes (a Dataset, ``(inputs, targets)``, a DataLoader...).
    """
    path, function = split_reference(reference)
    module = _import(path)
    factory = getattr(module, function, None)
    if factory is None or not callable(factory):
        found = sorted(
            k
            for k, v in vars(module).items()
            if callable(v)
            and not k.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
        )
        listing = ", ".join(found) or "none"
        raise ConfigError(
            f"{str(path)!r} has no function {function!r}; functions defined there: {listing}."
        )
    try:
        with _own_argv(path):
            made = factory()
    except SystemExit as done:
        raise ModelError(_exited(f"{function}() in {str(path)!r}", done)) from None
    except Exception as err:  # the user's factory failing is a user error
        raise ModelError(
            f"{function}() in {str(path)!r} raised {type(err).__name__}: {err}. It is called "
            "with no arguments and must return a torch.nn.Module or (model, data)."
        ) from None
    from torch import nn

    model, data = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"{function}() in {str(path)!r} returned {type(made).__name__}, not a "
            "torch.nn.Module or a pair (model, data)."
        )
    return model, data, function
