"""Field specifications: how each JSON value is checked and turned into Python, and back.

A message class lists its fields as ``Field`` objects, each with a ``Kind`` (string of at
most so many characters, integer in a range, enum member, instant, array of ...: see
``signalling.kinds``; or a nested object, ``struct``).  ``decode_struct`` applies them to a
parsed JSON object and refuses anything not listed, or anything the class's ``problem``
finds wrong with the fields taken together; ``encode_struct`` is the inverse.  Every
refusal is a ``ProtocolError(BAD_MESSAGE, ...)`` whose text names the offending field.

Each class is decoded, at each path, by a function compiled for it (``_compile``), which
hands whatever it does not accept to the field-by-field checks (``_decode``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

from signalling.errors import ErrorCode, ProtocolError

JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]

S = TypeVar("S", bound="Struct")


def bad(path: str, problem: str) -> ProtocolError:
    """The error for a field that is missing, unknown or wrong."""
    return ProtocolError(ErrorCode.BAD_MESSAGE, f"{path}: {problem}")


def describe(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


@dataclass(frozen=True)
class Kind:
    """One kind of JSON value: ``decode(value, path)`` checks and converts, ``encode`` reverses.

    ``accepts``, when given, is a Python expression over ``{v}`` that is true only of a
    value ``decode`` returns unchanged (it may be false of some of those too): the compiled
    decoders of ``decode_struct`` test it in line instead of calling ``decode``.
    ``nested`` is the class of a nested object.
    """

    decode: Callable[[object, str], Any]
    encode: Callable[[Any], JSON]
    accepts: str | None = None
    nested: type[Struct] | None = None


@dataclass(frozen=True)
class Field:
    """One field of a message or structure: Python attribute, wire name, kind, presence."""

    attr: str
    kind: Kind
    wire: str
    required: bool = True
    nullable: bool = False


def camel(name: str) -> str:
    """``ice_servers`` -> ``iceServers``; ``sdp_m_line_index`` -> ``sdpMLineIndex``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def field(
    attr: str,
    kind: Kind,
    *,
    wire: str | None = None,
    optional: bool = False,
    nullable: bool = False,
) -> Field:
    """A field whose wire name is the camelCase of ``attr`` unless given.

    ``optional``: the key may be left out.  ``nullable``: its value may be ``null``.
    """
    return Field(attr, kind, wire or camel(attr), required=not optional, nullable=nullable)


@dataclass(frozen=True, kw_only=True)
class Struct:
    """A JSON object with a fixed set of fields, listed in ``FIELDS``."""

    FIELDS: ClassVar[tuple[Field, ...]] = ()

    @classmethod
    def wire_fields(cls) -> tuple[Field, ...]:
        return cls.FIELDS

    def problem(self) -> str | None:
        """What is wrong with the fields taken together, if anything; ``decode_struct``
        refuses such an object (each field having passed its own checks)."""
        return None


def struct(cls: type[Struct]) -> Kind:
    """A nested object of class ``cls``."""
    return Kind(lambda value, path: decode_struct(cls, value, path), encode_struct, nested=cls)


#: Per class, path and ignored key: how to decode it (the f-strings of a field's path would
#: otherwise be built for every message).  Paths inside arrays carry an index, so the table
#: is capped.
_PLANS: dict[tuple[type[Struct], str, str], _Plan] = {}
_MAX_PLANS = 4096
_MISSING = object()
#: Set on each struct that ``decode_struct`` built: the JSON object it was built from, which
#: passed every check, so that encoding the struct can reuse it.
CHECKED = "_wire_checked"

#: A decoder compiled for one class at one path: see ``_compile``.
Decoder = Callable[[object], Any]


@dataclass(frozen=True)
class _Plan:
    known: frozenset[str]
    #: Each field, with its path.
    fields: tuple[tuple[Field, str], ...]
    #: The class's defaults, to build an instance without its ``__init__`` (which sets each
    #: field through ``object.__setattr__``, being frozen); ``None``: use ``__init__``.
    defaults: dict[str, Any] | None
    #: Whether the class checks its fields together (``Struct.problem`` overridden).
    checks: bool
    #: The compiled decoder, for a class built without its ``__init__``.
    compiled: Decoder | None = None


def _plan(cls: type[Struct], path: str, ignore: str = "") -> _Plan:
    plan = _PLANS.get((cls, path, ignore))
    if plan is None:
        fields = cls.wire_fields()
        specs = dataclasses.fields(cls)
        plain = all(s.init and s.default_factory is dataclasses.MISSING for s in specs)
        defaults = {s.name: s.default for s in specs if s.default is not dataclasses.MISSING}
        plan = _Plan(
            known=frozenset(f.wire for f in fields),
            fields=tuple((f, f"{path}.{f.wire}") for f in fields),
            defaults=defaults if plain else None,
            checks=cls.problem is not Struct.problem,
        )
        kept = len(_PLANS) < _MAX_PLANS
        # Compiled only where it pays: a plan that is kept, at a path outside any array (an
        # array's items each have a path of their own, and are rarer than its fields).
        if plain and kept and "[" not in path:
            plan = dataclasses.replace(plan, compiled=_compile(cls, plan, path, ignore))
        if kept:
            _PLANS[(cls, path, ignore)] = plan
    return plan


def decode_struct(cls: type[S], value: object, path: str, *, ignore: str = "") -> S:
    """Build ``cls`` from a JSON object, refusing unknown, missing and ill-typed fields.

    ``ignore`` names one key that is checked elsewhere (a message's ``type``).
    """
    plan = _plan(cls, path, ignore)
    if plan.compiled is not None:
        result: S = plan.compiled(value)
        return result
    return _decode(cls, plan, value, path, ignore)


def struct_decoder(cls: type[S], path: str, *, ignore: str = "") -> Callable[[object], S]:
    """``decode_struct`` of ``cls`` at ``path``, as one function of the JSON value, for a
    caller that decodes many (the protocol, one per message type)."""
    plan = _plan(cls, path, ignore)
    if plan.compiled is not None:
        return cast("Callable[[object], S]", plan.compiled)
    return functools.partial(_decode, cls, plan, path=path, ignore=ignore)


def _decode(cls: type[S], plan: _Plan, value: object, path: str, ignore: str) -> S:
    """``decode_struct``, field by field: what every refusal is worded by."""
    if not isinstance(value, dict):
        raise bad(path, f"expected an object, got {describe(value)}")
    known = plan.known
    if len(value) > len(known) + (1 if ignore else 0) or not known.issuperset(value):
        for key in value:
            if key not in known and key != ignore:
                raise bad(path, f"unknown field {key!r}")
    kwargs: dict[str, Any] = {}
    for f, where in plan.fields:
        raw = value.get(f.wire, _MISSING)
        if raw is _MISSING:
            if f.required:
                raise bad(where, "missing")
        elif raw is None:
            if not f.nullable:
                raise bad(where, "must not be null")
            kwargs[f.attr] = None
        else:
            kwargs[f.attr] = f.kind.decode(raw, where)
    if plan.defaults is None:
        result = cls(**kwargs)
    else:
        result = cls.__new__(cls)
        result.__dict__.update(plan.defaults, **kwargs)
    if plan.checks:
        problem = result.problem()
        if problem is not None:
            raise bad(path, problem)
    result.__dict__[CHECKED] = value
    return result


def _compile(cls: type[Struct], plan: _Plan, path: str, ignore: str) -> Decoder:
    """One Python function with every check of ``_decode`` for ``cls`` at ``path`` written
    out in line, as ``dataclasses`` writes an ``__init__``: the checks of a relayed message
    cost a third of what the loop over its fields does.

    It builds the struct when every field passes its kind's ``accepts`` (or, for a kind
    without one, its ``decode``), and hands anything else to ``_decode``, which then refuses
    it (or accepts it: text beyond ASCII, say) in the same words as ever.  A field's
    ``decode`` that raises raises the same error here, every field before it having passed.
    """
    known = plan.known | {ignore} if ignore else plan.known
    env: dict[str, Any] = {
        "_slow": functools.partial(_decode, cls, plan, path=path, ignore=ignore),
        "_known": known,
        "_MISSING": _MISSING,
        "_cls": cls,
        "_new": cls.__new__,
        "_defaults": plan.defaults,
        "_CHECKED": CHECKED,
        "_bad": bad,
        "_path": path,
    }
    body = [
        f"if type(value) is not dict or len(value) > {len(known)} or not _known.issuperset(value):",
        "    return _slow(value)",
    ]
    store = []
    for i, (f, where) in enumerate(plan.fields):
        v = f"v{i}"
        body += [
            f"{v} = value.get({f.wire!r}, _MISSING)",
            f"if {v} is _MISSING:",
            "    return _slow(value)" if f.required else "    pass",
            f"elif {v} is None:",
            "    pass" if f.nullable else "    return _slow(value)",
        ]
        if f.kind.nested is not None:
            nested = _plan(f.kind.nested, where).compiled
            env[f"_k{i}"] = nested or functools.partial(decode_struct, f.kind.nested, path=where)
            body += ["else:", f"    {v} = _k{i}({v})"]
        elif f.kind.accepts is not None:
            body += [f"elif not ({f.kind.accepts.replace('{v}', v)}):", "    return _slow(value)"]
        else:
            env[f"_k{i}"], env[f"_w{i}"] = f.kind.decode, where
            body += ["else:", f"    {v} = _k{i}({v}, _w{i})"]
        assign = f"d[{f.attr!r}] = {v}"
        store += [assign] if f.required else [f"if {v} is not _MISSING:", f"    {assign}"]
    body += ["r = _new(_cls)", "d = r.__dict__", "d.update(_defaults)", *store]
    if plan.checks:
        body += ["p = r.problem()", "if p is not None:", "    raise _bad(_path, p)"]
    body += ["d[_CHECKED] = value", "return r"]
    source = "def decode(value):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, f"<decoder of {cls.__name__} at {path}>", "exec"), env)  # noqa: S102
    decoder: Decoder = env["decode"]
    return decoder


def checked_json(value: Struct) -> dict[str, JSON] | None:
    """The JSON object ``decode_struct`` built ``value`` from (it passed every check, and
    structs are immutable), or ``None`` for a struct built otherwise."""
    found: dict[str, JSON] | None = value.__dict__.get(CHECKED)
    return found


def encode_struct(value: Struct) -> dict[str, JSON]:
    """The JSON object for ``value``: optional fields that are ``None`` are left out."""
    out: dict[str, JSON] = {}
    for f in value.wire_fields():
        attribute = getattr(value, f.attr)
        if attribute is None:
            if f.required and not f.nullable:
                raise ValueError(f"{type(value).__name__}.{f.attr} must not be None")
            if f.required:
                out[f.wire] = None
            continue
        out[f.wire] = f.kind.encode(attribute)
    return out
