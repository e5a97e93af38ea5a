"""The browser tests, run by plain ``pytest`` inside a private network namespace.

Chromium gathers no WebRTC candidates on a loopback-only network, and must never try to
reach the real one, so each inner module (``browser_*.py``, not collected by a plain run)
is run by a separate pytest inside a fresh network namespace with a veth pair of its own
(``netns.py``), which is also a PID namespace: when the inner pytest exits or is killed,
the kernel ends every process left in it, Chromium's included.

The browser tests need root, ``unshare`` and ``ip``, Debian's Chromium and axe-core (``make
setup-dev``).  Without them they are skipped, except under ``CI``, where that is a failure.
The inner run always uses SQLite: a PostgreSQL server outside the namespace is out of reach.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import harness, netns

HERE = Path(__file__).resolve().parent
INNER_MODULES = sorted(path.stem for path in HERE.glob("browser_*.py"))
UNSHARE = ("unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--")
RUN_TIMEOUT = 180.0
OUTPUT_LIMIT = 60_000

pytestmark = pytest.mark.slow


def missing_requirements() -> list[str]:
    problems: list[str] = []
    if not sys.platform.startswith("linux"):
        return [f"network namespaces need Linux, not {sys.platform}"]
    if os.geteuid() != 0:
        problems.append("not root: creating a network namespace and a veth pair needs root")
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is missing (Debian package {package})")
    if not os.access(harness.CHROMIUM, os.X_OK):
        problems.append(f"no Chromium at {harness.CHROMIUM} (Debian package chromium)")
    if not harness.AXE_SCRIPT.is_file():
        problems.append(
            f"{harness.AXE_SCRIPT.relative_to(harness.REPO)} is missing: run `make setup-dev`"
        )
    if not problems:
        probe = subprocess.run(
            [*UNSHARE, "true"], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if probe.returncode != 0:
            problems.append(f"`unshare` does not work here: {probe.stderr.strip()}")
    return problems


@pytest.fixture(scope="module")
def requirements() -> None:
    problems = missing_requirements()
    if not problems:
        return
    reason = "browser tests cannot run: " + "; ".join(problems)
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Outcome:
    nodeid: str
    outcome: str  # passed, failed, skipped, xfailed, xpassed
    message: str


@dataclass(frozen=True)
class InnerRun:
    returncode: int
    output: str
    outcomes: list[Outcome]

    def having(self, outcome: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == outcome]

    def shown(self) -> str:
        text = self.output
        if len(text) > OUTPUT_LIMIT:
            text = "[… cut …]\n" + text[-OUTPUT_LIMIT:]
        return f"--- inner pytest (exit {self.returncode}) ---\n{text}"


def inner_environment(report: Path) -> dict[str, str]:
    dropped = {"ALCOVE_TEST_DATABASE_URL", netns.MARKER}
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PYTEST_") and name not in dropped
    }
    env[harness.REPORT_ENV] = str(report)
    return env


def run_inner(module: str, workdir: Path) -> InnerRun:
    report = workdir / f"{module}.jsonl"
    command = [
        *UNSHARE,
        sys.executable,
        str(HERE / "netns.py"),
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--basetemp",
        str(workdir / module),
        str(HERE / f"{module}.py"),
    ]
    try:
        done = subprocess.run(
            command,
            cwd=harness.REPO,
            env=inner_environment(report),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            encoding="utf-8",
            errors="replace",
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        # subprocess killed `unshare`; --kill-child took the whole namespace down with it.
        output = exc.output if isinstance(exc.output, str) else ""
        pytest.fail(f"the browser tests took over {RUN_TIMEOUT:.0f}s\n{output}", pytrace=False)
    harness.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (harness.ARTIFACTS / f"{module}.log").write_text(done.stdout)
    outcomes = []
    if report.is_file():
        for line in report.read_text().splitlines():
            outcomes.append(Outcome(**json.loads(line)))
    return InnerRun(done.returncode, done.stdout, outcomes)


@pytest.mark.parametrize("module", INNER_MODULES)
def test_browser(module: str, requirements: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = run_inner(module, tmp_path_factory.mktemp("e2e"))
    # A browser test is never expected to fail: one marked so counts as failed either way.
    failed = run.having("failed") + run.having("xfailed") + run.having("xpassed")
    if failed or run.returncode not in (0, 1) or not run.outcomes:
        names = "".join(f"\n  {o.nodeid} ({o.outcome})" for o in failed)
        pytest.fail(f"browser tests failed in {module}:{names}\n{run.shown()}", pytrace=False)
    assert run.returncode == 0, run.shown()
    print(run.output)


def test_inner_modules_are_not_collected_by_a_plain_run() -> None:
    """The inner modules must never run in the host's namespace by accident."""
    assert INNER_MODULES, "no browser_*.py modules found"
    assert not any(name.startswith("test_") or name.endswith("_test") for name in INNER_MODULES)
