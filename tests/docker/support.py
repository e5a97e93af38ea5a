"""Reading docker/: the compose file as Compose resolves it, the Dockerfile, the env file
and coturn's configuration, without Docker."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
TURNSERVER_CONF = DOCKER / "turnserver.conf"
CADDYFILE = DOCKER / "Caddyfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"

PLACEHOLDER = "CHANGE-ME"


def require_tool(name: str, why: str) -> str:
    """The path of ``name`` (the virtualenv's first); skip without it, fail under CI."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run should have installed it ({why})")
        pytest.skip(f"{name} is not installed ({why})")
    return found


# --- Compose ---------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = load_compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    result: dict[str, Any] = services[name]
    return result


class MissingVariable(Exception):
    """A ``${NAME:?message}`` whose variable is unset: Compose refuses the file."""


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with Compose's variable syntax resolved from ``env``: ``$$``, ``$NAME``,
    ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?error}``,
    ``${NAME?error}``."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value = env.get(name)
        op = match["op"] or ""
        unset = not value if op.startswith(":") else value is None
        if op.endswith("-"):
            return match["arg"] if unset else str(value)
        if op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {match['arg']}")
        return value or ""

    return _VARIABLE.sub(substitute, text)


def variables_used(text: str) -> dict[str, str]:
    """Every variable ``text`` refers to, with its strongest operator (``?``, ``-`` or ``""``)."""
    found: dict[str, str] = {}
    rank = {"": 0, "-": 1, "?": 2}
    for match in _VARIABLE.finditer(text):
        name = match["braced"] or match["named"]
        if not name:
            continue
        op = (match["op"] or "").lstrip(":")
        if rank[op] >= rank.get(found.get(name, ""), 0):
            found[name] = op
    return found


def resolved_environment(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """The environment Compose gives service ``name``'s containers, given ``.env`` ``env``."""
    raw = service(name).get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: interpolate(str(value), env) for key, value in raw.items()}


# --- the env file ----------------------------------------------------------------------


def read_env_example(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        values[key] = value
    return values


def with_placeholders_filled(values: Mapping[str, str]) -> dict[str, str]:
    """``values`` with every placeholder secret replaced by a fresh, valid one."""
    import secrets

    return {
        key: secrets.token_urlsafe(48) if value == PLACEHOLDER else value
        for key, value in values.items()
    }


# --- the Dockerfile --------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The instructions, continuation lines joined, comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_stages(text: str) -> list[Stage]:
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    image = ""
    name: str | None = None
    for instruction in dockerfile_instructions(text):
        if instruction.keyword == "FROM":
            if current is not None:
                stages.append(Stage(image, name, tuple(current)))
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            image = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            current = []
        elif current is not None:
            current.append(instruction)
    if current is not None:
        stages.append(Stage(image, name, tuple(current)))
    return stages


def env_assignments(arguments: str) -> dict[str, str]:
    """The variables an ``ENV`` instruction sets (``K=V`` pairs, or the old ``K V`` form)."""
    if "=" not in arguments.split(" ", 1)[0]:
        key, _, value = arguments.partition(" ")
        return {key: value.strip()}
    return dict(
        pair.split("=", 1)
        for pair in re.findall(r'[A-Za-z_][A-Za-z0-9_]*=(?:"[^"]*"|\S*)', arguments)
    )


# --- coturn ----------------------------------------------------------------------------


def turnserver_options(path: Path = TURNSERVER_CONF) -> list[tuple[str, str]]:
    """``(option, value)`` for every line of a turnserver.conf, in order."""
    options: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        option, _, value = stripped.partition("=")
        options.append((option.strip(), value.strip()))
    return options


IpRange = tuple[int, int, int]  # version, first, last


def parse_peer_range(value: str) -> IpRange:
    """coturn's ``denied-peer-ip`` value: one address, ``first-last`` or a CIDR network."""
    if "/" in value:
        network = ipaddress.ip_network(value, strict=True)
        return network.version, int(network[0]), int(network[-1])
    first, _, last = value.partition("-")
    start = ipaddress.ip_address(first.strip())
    end = ipaddress.ip_address(last.strip()) if last else start
    assert start.version == end.version, value
    assert int(start) <= int(end), value
    return start.version, int(start), int(end)


def _address(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def uncovered(network: str, ranges: Iterable[IpRange]) -> list[str]:
    """The parts of ``network`` that none of ``ranges`` covers (empty: fully covered)."""
    net = ipaddress.ip_network(network)
    low, high = int(net[0]), int(net[-1])
    gaps: list[str] = []
    cursor = low
    for _version, first, last in sorted(r for r in ranges if r[0] == net.version):
        if last < cursor:
            continue
        if first > cursor:
            gaps.append(
                f"{_address(net.version, cursor)}-{_address(net.version, min(first - 1, high))}"
            )
        cursor = max(cursor, last + 1)
        if cursor > high:
            return gaps
    if cursor <= high:
        gaps.append(f"{_address(net.version, cursor)}-{_address(net.version, high)}")
    return gaps
