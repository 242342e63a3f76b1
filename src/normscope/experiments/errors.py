"""Turn pydantic validation errors into lines a user can act on."""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


def field_path(loc: tuple[Any, ...]) -> str:
    """``("measure", 0, "name")`` -> ``"measure[0].name"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _strip(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(members) == 1:
                tp = members[0]
            elif len(models) == 1:
                tp = models[0]
            else:
                return tp
        else:
            return tp


def _tag(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    return get_args(field.annotation)[0]


def _step(tp: Any, part: Any) -> Any:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field else None
    origin = get_origin(tp)
    if origin in (list, tuple) and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict:
        return get_args(tp)[1]
    if origin in (Union, types.UnionType):
        for member in get_args(tp):
            if isinstance(member, type) and issubclass(member, BaseModel) and _tag(member) == part:
                return member
    return None


def fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc`` below ``root`` (empty if none)."""
    tp: Any = root
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return []
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _line(item: dict[str, Any], root: type[BaseModel]) -> str:
    loc = tuple(item["loc"])
    kind = item["type"]
    if kind == "extra_forbidden":
        valid = fields_at(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (
            f"{field_path(loc)}: unknown field {loc[-1]!r}.{hint} "
            f"Valid fields here: {', '.join(valid)}."
        )
    if kind == "missing":
        return f"{field_path(loc)}: required field {loc[-1]!r} is missing; add it."
    got = item.get("input")
    shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
    return f"{field_path(loc)}: {item['msg']}{shown}.{_closest_literal(item)}"


def _closest_literal(item: dict[str, Any]) -> str:
    """`` Did you mean 'x'?`` for a misspelt choice among a Literal's values."""
    if item["type"] != "literal_error" or not isinstance(item.get("input"), str):
        return ""
    choices = re.findall(r"'([^']*)'", str(item.get("ctx", {}).get("expected", "")))
    close = difflib.get_close_matches(item["input"], choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def describe_validation_error(err: ValidationError, root: type[BaseModel], source: str) -> str:
    """One line per problem: ``file: field.path: what is wrong and the fix``."""
    lines = [_line(item, root) for item in err.errors()]
    head = f"{source}: invalid spec ({len(lines)} problem{'s' if len(lines) > 1 else ''}):"
    return "\n".join([head, *(f"  {source}: {line}" for line in lines)])
