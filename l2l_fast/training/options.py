"""Options as Hugging Face's TrainingArguments holds them: a dataclass field with its default,
its check and its doc side by side. UnlearnConfig, EvalConfig and DataConfig are built of them.

A check is `check(name, value) -> value` raising ValueError that starts with the option's
name; its `text` says what it accepts, for `docs()`. A config whose options form a section
of a file (`data.`, `metrics.`) names them with that prefix.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import field
from pathlib import Path
from typing import Any, Callable


def option(default, check: Callable, doc: str, **metadata):
    """A config field; a list, dict or dataclass default is copied for each instance."""
    meta = {"check": check, "doc": doc, **metadata}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value)
    return type(value)(value)


def described(text: str):
    """Gives a check the text `docs()` shows for it."""
    def wrap(check):
        check.text = text
        return check
    return wrap


def fail(key: str, message: str):
    raise ValueError(f"{key} {message}")


def check_keys(where: str, given, allowed) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        fail(where, f"has unknown keys {unknown}; allowed: {sorted(allowed)}")


def options(config) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config) if "check" in f.metadata]


def check_options(config, prefix: str = "") -> None:
    """Runs each field's check (in a frozen dataclass too), naming it `prefix + name`."""
    for spec in options(config):
        object.__setattr__(config, spec.name, spec.metadata["check"](prefix + spec.name, getattr(config, spec.name)))


def from_mapping(cls, given: Any, where: str):
    """cls(**given), given a mapping of its options; errors name `where`."""
    if isinstance(given, cls):
        return given
    if given is None:
        given = {}
    if not isinstance(given, dict):
        fail(where, f"must be a mapping, got {given!r}")
    check_keys(where, given, [f.name for f in options(cls)])
    return cls(**given)


def docs(cls) -> dict[str, str]:
    """{option: 'doc (default: ...; check)'} for every option of a config class."""
    out = {}
    for spec in options(cls):
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            default = dataclasses.MISSING
        if spec.metadata.get("required"):
            shown = "required"
        elif dataclasses.is_dataclass(default):
            shown = f"default {type(default).__name__}(), see its options"
        else:
            shown = f"default {default!r}"
        text = getattr(spec.metadata["check"], "text", None)
        out[spec.name] = spec.metadata["doc"] + f" ({shown}" + (f"; {text})" if text else ")")
    return out


# checks

def number(minimum: float, *, integer: bool = False, strict: bool = False, optional: bool = False,
           below: float = None, message: str = None):
    kind = "an integer" if integer else "a number"
    bound = f"{'>' if strict else '>='} {minimum}" + (f" and < {below}" if below is not None else "")
    text = message or f"{kind} {bound}"

    @described(text + (" or None" if optional else ""))
    def check(name: str, value):
        if value is None and optional:
            return None
        allowed = numbers.Integral if integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, allowed):
            fail(name, f"must be {message or kind}, got {value!r}")
        if value < minimum or (strict and value == minimum) or (below is not None and value >= below):
            fail(name, f"must be {message or bound}, got {value!r}")
        return int(value) if integer else float(value)
    return check


def choice(choices, *, optional: bool = False):
    @described(f"one of {tuple(choices)}" + (" or None" if optional else ""))
    def check(name: str, value):
        if value is None and optional:
            return None
        if isinstance(value, bool) or value not in choices:
            fail(name, f"must be one of {tuple(choices)}, got {value!r}")
        return value
    return check


@described("true or false")
def flag(name: str, value):
    if not isinstance(value, bool):
        fail(name, f"must be true or false, got {value!r}")
    return value


@described("true, false or None")
def optional_flag(name: str, value):
    return None if value is None else flag(name, value)


@described("a string or None")
def optional_text(name: str, value):
    if value is not None and not isinstance(value, str):
        fail(name, f"must be a string, got {value!r}")
    return value


def path(kind: str = "folder", *, exists: bool = False, optional: bool = True, reason: str = ""):
    """A path to a `kind` ('folder' or 'file'); with `exists`, one that is there."""
    @described(f"{'an existing ' if exists else 'a '}{kind} path" + (" or None" if optional else ""))
    def check(name: str, value):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, bytes)) and not hasattr(value, "__fspath__"):
            fail(name, f"must be a {kind} path, got {value!r}")
        value = str(value)
        if not value:
            fail(name, f"must be a {kind} path, got {value!r}")
        if exists and not (Path(value).is_dir() if kind == "folder" else Path(value).is_file()):
            fail(name, f"{value!r} is not a {kind}{reason}")
        return value
    return check


def section(cls, where: str):
    """A field holding another config (a mapping in a file)."""
    @described(f"a mapping of {cls.__name__} options")
    def check(name: str, value):
        return from_mapping(cls, value, where)
    return check
