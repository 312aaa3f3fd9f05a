"""Finding adapters by name through entry points, and refusing loudly those that do not fit."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from adapters.contract import Adapter, AdapterConfigError

GROUP = "casebroker.adapters"

#: Each method of the contract and the parameter names it must take after ``self``.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "__init__": ("source_id", "config", "categories"),
    "fetch": ("category", "identifier", "timeout"),
    "health": ("timeout",),
    "close": (),
}


class AdapterLoadError(Exception):
    """An adapter named in configuration cannot be used; start-up must stop, naming why."""


def _describe(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _signature_problem(cls: type, method: str, expected: tuple[str, ...]) -> str | None:
    """Why ``cls.method`` cannot be called as the contract calls it, or None."""
    wanted = f"{method}(self{''.join(', ' + name for name in expected)})"
    static = inspect.getattr_static(cls, method, None)
    if static is None or (method == "__init__" and static is object.__init__):
        return f"{method} is missing; expected {wanted}"
    if isinstance(static, staticmethod | classmethod) or not callable(getattr(cls, method)):
        return f"{method} must be a plain method; expected {wanted}"
    try:
        params = list(inspect.signature(getattr(cls, method)).parameters.values())
    except (TypeError, ValueError):
        return f"{method} has no inspectable signature; expected {wanted}"
    found = f"{method}({', '.join(str(p) for p in params)})"
    head, rest = params[1 : 1 + len(expected)], params[1 + len(expected) :]
    positional = (inspect.Parameter.POSITIONAL_OR_KEYWORD,)
    if (
        not params
        or params[0].kind not in (*positional, inspect.Parameter.POSITIONAL_ONLY)
        or tuple(p.name for p in head) != expected
        or any(p.kind not in positional for p in head)
        or any(
            p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            for p in rest
        )
    ):
        return f"expected {wanted}, found {found}"
    return None


def check_adapter_class(cls: Any, name: str | None = None) -> None:
    """Raise AdapterLoadError listing every way ``cls`` does not fit the Adapter contract."""
    label = f"adapter {name!r}" if name else "adapter"
    if not isinstance(cls, type):
        raise AdapterLoadError(f"{label}: {cls!r} is not a class")
    problems = [
        problem
        for method, expected in SIGNATURES.items()
        if (problem := _signature_problem(cls, method, expected))
    ]
    if not problems and not issubclass(cls, Adapter):
        problems.append("it is not a structural subtype of adapters.Adapter")
    if problems:
        raise AdapterLoadError(
            f"{label} ({_describe(cls)}) does not fit the Adapter contract: {'; '.join(problems)}"
        )


def _entry_point(name: str) -> EntryPoint:
    found = list(entry_points(group=GROUP))
    matches = [ep for ep in found if ep.name == name]
    if not matches:
        known = ", ".join(sorted({ep.name for ep in found})) or "none"
        raise AdapterLoadError(
            f"no adapter named {name!r} in entry-point group {GROUP!r} "
            f"(installed: {known}); install the package that provides it"
        )
    if len({ep.value for ep in matches}) > 1:
        providers = ", ".join(
            f"{ep.value} from {ep.dist.name if ep.dist else 'an unknown distribution'}"
            for ep in matches
        )
        raise AdapterLoadError(f"adapter {name!r} is registered more than once: {providers}")
    return matches[0]


def load_adapter_class(name: str) -> type[Adapter]:
    """The class registered under ``name``, checked against the contract before any use."""
    entry = _entry_point(name)
    try:
        cls = entry.load()
    except Exception as exc:
        raise AdapterLoadError(
            f"adapter {name!r}: cannot import {entry.value}: {type(exc).__name__}: {exc}"
        ) from exc
    check_adapter_class(cls, name)
    return cls


def build_adapter(
    name: str, source_id: str, config: Mapping[str, Any], categories: Mapping[str, Sequence[str]]
) -> Adapter:
    """A started adapter for one source; config problems surface here, at start-up."""
    cls = load_adapter_class(name)
    frozen: dict[str, tuple[str, ...]] = {}
    for category, fields in categories.items():
        if isinstance(fields, str) or not isinstance(fields, Sequence):
            raise AdapterConfigError(
                f"source {source_id!r}: the fields of category {category!r} must be a list"
            )
        frozen[category] = tuple(fields)
    try:
        return cls(source_id, config, frozen)
    except AdapterConfigError:
        raise
    except Exception as exc:
        raise AdapterLoadError(
            f"source {source_id!r}: adapter {name!r} failed to start: {type(exc).__name__}: {exc}"
        ) from exc
