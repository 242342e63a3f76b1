"""A rule every validated spec shares: a boolean is not a number.

Python's ``bool`` is a subclass of ``int`` and pydantic's lax mode turns ``True`` into
1, so ``width = true`` in a spec (or ``nets.mlp(width=True)``) would quietly build a
width-1 network. :class:`NoBoolNumbers` refuses ``true``/``false`` (also inside a list
or tuple) for every field whose type does not admit a boolean, with a message that
names the field; fields typed ``bool`` (or a union holding it, or ``Any``) take them.

Example::

    >>> from normscope.strict import NoBoolNumbers
    >>> class Net(NoBoolNumbers):
    ...     width: int = 8
    ...     bias: bool = True
    >>> Net(bias=False).width
    8
    >>> from pydantic import ValidationError
    >>> try:
    ...     Net(width=True)
    ... except ValidationError as err:
    ...     print(err.errors()[0]["msg"])
    Value error, width: true/false is not a number here; give a number
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, model_validator


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) for arg in typing.get_args(annotation))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, list | tuple) and any(_holds_bool(item) for item in value)


class NoBoolNumbers(BaseModel):
    """A pydantic model whose non-boolean fields refuse ``True`` and ``False``."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_bools(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is not None and _holds_bool(value) and not _admits_bool(field.annotation):
                raise ValueError(f"{name}: true/false is not a number here; give a number")
        return data
