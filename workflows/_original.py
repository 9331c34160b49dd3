"""A step's own exception, kept through Baton's wrapping: as data on the wire, and rebuilt as an
error that is both the Baton error and an instance of the original's class.

LlamaIndex Workflows re-raises a step's exception unchanged, so its users write
``except KeyError``; Baton raises its own errors (step, attempts, cause). A *combined* class
deriving from both lets either ``except`` clause work, with the original's ``args``.

No pickle on the wire: the class travels as ``module:qualname`` and is looked up only among
modules this process has already imported (as :mod:`workflows.codec` does for models — a
client that writes ``except MyError`` has imported ``MyError``), and only ever as an Exception
subclass. The original's ``__new__`` / ``__init__`` are never called (they may require
arguments or do work): the nearest built-in exception class makes the instance.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import types
from typing import Any

from pydantic import BaseModel, Field, ValidationError

MAX_DATA_CHARS = 65_536  # past this (as JSON) the attributes are dropped, then args clipped
CLIPPED_ARGS, CLIPPED_CHARS = 8, 1_000
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set on every class not statically defined in C
# another process's main module is another program: a class named in it is never looked up
_FOREIGN_MODULES = frozenset({"__main__", "__mp_main__"})


class OriginalException(BaseModel):
    """A step's own exception as data: its class as ``module:qualname``, its ``args`` (an
    argument JSON cannot hold travels as its ``repr``) and its JSON-able attributes."""

    type: str
    args: list[Any] = Field(default_factory=list)
    attrs: dict[str, Any] = Field(default_factory=dict)


# combined class -> (its Baton class, the original class, the names the Baton class owns)
_PARTS: dict[type, tuple[type[BaseException], type[Exception], frozenset[str]]] = {}
_COMBINED: dict[tuple[type, type], type | None] = {}
_NATIVE_FIELDS: dict[type, frozenset[str]] = {}


def original_class(exc: BaseException) -> type[BaseException]:
    """The class ``exc`` stands for: the original's for a combined error, else its own."""
    parts = _PARTS.get(type(exc))
    return parts[1] if parts else type(exc)


def baton_class(cls: type) -> type:
    """The Baton class a combined class was made from; any other class itself."""
    parts = _PARTS.get(cls)
    return parts[0] if parts else cls


def describe(exc: BaseException) -> OriginalException:
    """``exc`` as data. A record too large loses its attributes, then keeps only the start of
    its first arguments: the class, what ``except`` needs, always travels."""
    cls = original_class(exc)
    attrs = {k: v for k, v in attributes(exc).items() if _is_json(v)}
    data = OriginalException(
        type=f"{cls.__module__}:{cls.__qualname__}",
        args=[a if _is_json(a) else repr(a) for a in exc.args],
        attrs=attrs,
    )
    if len(data.model_dump_json()) > MAX_DATA_CHARS:
        data.attrs = {}
    if len(data.model_dump_json()) > MAX_DATA_CHARS:
        data.args = [_clipped(a) for a in data.args[:CLIPPED_ARGS]]
    return data


def original_or_none(value: OriginalException | dict[str, Any] | None) -> OriginalException | None:
    """``value`` as an OriginalException (read from data, as it comes off the wire); None for
    no value or a malformed one."""
    if isinstance(value, OriginalException) or value is None:
        return value
    try:
        return OriginalException.model_validate(value)
    except ValidationError:  # malformed data: the error still comes back, as a plain one
        return None


def attributes(exc: BaseException) -> dict[str, Any]:
    """Instance attributes and the settable fields of built-in bases (``OSError.filename``),
    without what a Baton class owns on a combined error."""
    parts = _PARTS.get(type(exc))
    owned = parts[2] if parts else frozenset()
    found: dict[str, Any] = {}
    for name in _native_fields(type(exc)):
        value = getattr(exc, name, None)  # e.g. OSError.characters_written raises when unset
        if value is not None:  # None is "unset" here: setting it would print as "None"
            found[name] = value
    found.update(vars(exc))
    if "__notes__" in found:  # a copy: notes added to the rebuilt error stay on it
        found["__notes__"] = list(found["__notes__"])
    return {k: v for k, v in found.items() if k not in owned}


def resolve(path: str) -> type[Exception] | None:
    """The Exception subclass at ``module:qualname`` in an already imported module, or None
    (a class defined in a function, ``<locals>``, is never found)."""
    module_name, _, qualname = path.partition(":")
    if module_name in _FOREIGN_MODULES:
        return None
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) and issubclass(found, Exception) else None


def combined_class(baton: type[BaseException], original: type[BaseException]) -> type | None:
    """A class deriving from ``baton`` and ``original``, cached; None when Python refuses one
    (a layout or metaclass conflict, a class refusing subclasses) or ``original`` is not an
    Exception (``KeyboardInterrupt`` and kin are not wrapped)."""
    key = (baton, original)
    if key not in _COMBINED:
        _COMBINED[key] = _make_class(baton, original)
    return _COMBINED[key]


def instantiate(cls: type, args: tuple[Any, ...], attrs: dict[str, Any]) -> BaseException | None:
    """An instance of the combined ``cls`` with ``args`` and ``attrs``, made by its nearest
    built-in exception class; None if that class refuses the arguments."""
    native = _native_base(cls)
    try:
        exc: BaseException = native.__new__(cls, *args)
        native.__init__(exc, *args)
    except Exception:  # e.g. UnicodeDecodeError given an argument that travelled as a repr
        return None
    natives = _native_fields(cls)
    for name, value in attrs.items():
        if name in natives:
            if getattr(exc, name, None) != value:  # most were already set from args
                with contextlib.suppress(AttributeError, TypeError, ValueError):
                    setattr(exc, name, value)
        else:
            vars(exc)[name] = value  # not setattr: no descriptor of the user's class runs
    return exc


def _make_class(baton: type[BaseException], original: type[BaseException]) -> type | None:
    if not issubclass(original, Exception):
        return None
    namespace = {
        "__module__": original.__module__,
        "__qualname__": original.__qualname__,
        "__doc__": f"{original.__qualname__} raised by a step, as a {baton.__name__}.",
        "__reduce__": _reduce,
    }
    try:
        cls = types.new_class(
            original.__name__, (baton, original), {}, lambda ns: ns.update(namespace)
        )
    except Exception:  # layout or metaclass conflicts; an __init_subclass__ that refuses
        return None
    owned = frozenset((*getattr(baton, "_fields", ()), "message"))
    _PARTS[cls] = (baton, original, owned)
    return cls


def _reduce(self: BaseException) -> tuple[Any, ...]:
    """Copy and pickle a combined error by its parts (its class cannot be found by name)."""
    baton, original, _ = _PARTS[type(self)]
    return (_restore, (baton, original, self.args, attributes(self) | dict(vars(self))))


def _restore(
    baton: type[BaseException], original: type[BaseException], args: Any, state: dict[str, Any]
) -> BaseException:
    cls = combined_class(baton, original)
    exc = None if cls is None else instantiate(cls, tuple(args), state)
    if exc is None:
        raise TypeError(f"cannot rebuild a {baton.__name__} standing for {original.__name__}")
    return exc


def _native_base(cls: type) -> type[BaseException]:
    """The first static (C-defined, built-in) exception class among the original's bases: it
    lays out the instance. Classes written in Python, the combined ones included, are heap
    types; so are extension types, whose ``__new__`` then refuses (no combined error)."""
    original = _PARTS[cls][1] if cls in _PARTS else cls
    return next(
        c for c in original.__mro__ if not c.__flags__ & _HEAP_TYPE and issubclass(c, BaseException)
    )


def _native_fields(cls: type) -> frozenset[str]:
    """Settable fields the built-in bases (below BaseException) keep outside ``__dict__``."""
    native = _native_base(cls)
    if native not in _NATIVE_FIELDS:
        _NATIVE_FIELDS[native] = _fields_of(native)
    return _NATIVE_FIELDS[native]


def _fields_of(native: type[BaseException]) -> frozenset[str]:
    names: set[str] = set()
    for c in native.__mro__:
        if c in (BaseException, object):
            continue
        names.update(
            name
            for name, d in vars(c).items()
            if isinstance(d, types.MemberDescriptorType | types.GetSetDescriptorType)
            and not name.startswith("__")
        )
    return frozenset(names)


def _clipped(arg: Any) -> Any:
    if isinstance(arg, str):
        return arg[:CLIPPED_CHARS]
    return arg if len(json.dumps(arg)) <= CLIPPED_CHARS else repr(arg)[:CLIPPED_CHARS]


def _is_json(value: Any) -> bool:
    """Plain JSON that comes back as the same value (so no tuples, no non-str keys, no NaN)."""
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(_is_json(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    return False
