"""Helpers for the browser tests: Chromium, contexts, signing in, screenshots and axe.

These run only inside the private network namespace that ``test_browser.py`` sets up
(``browser_*.py`` are the inner test modules).  Chromium is Debian's, never a browser that
Playwright downloads, with fake camera and microphone devices.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    Response,
    ViewportSize,
)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "e2e"
AXE_SCRIPT = REPO / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path(os.environ.get("ALCOVE_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
# Granted on every context: without them Chromium hides host candidates behind mDNS
# ``.local`` names, which costs about a second to resolve.
PERMISSIONS = ["camera", "microphone"]

Kind = Literal["desktop", "phone"]
KINDS: tuple[Kind, ...] = ("desktop", "phone")
VIEWPORTS: dict[Kind, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 375, "height": 812},
}
# Fail fast: every wait in these tests is for something local that takes well under a second.
TIMEOUT_MS = 8_000
BLOCKING_IMPACTS = frozenset({"serious", "critical"})
# Names the file where an inner run records each test's outcome for ``test_browser.py``.
REPORT_ENV = "ALCOVE_E2E_REPORT"


async def launch_browser(playwright: Playwright) -> Browser:
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
    )


@dataclass
class Contexts:
    """Browser contexts opened by one test, and what their pages reported."""

    browser: Browser
    base_url: str
    opened: list[BrowserContext] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    async def new(self, kind: Kind, *, timezone_id: str | None = None) -> BrowserContext:
        """A desktop (1280x800) or phone (375x812, touch) context with camera and microphone,
        in the time zone ``timezone_id`` (the host's when not given)."""
        options: dict[str, Any] = {"viewport": VIEWPORTS[kind]}
        if timezone_id is not None:
            options["timezone_id"] = timezone_id
        if kind == "phone":
            options.update(is_mobile=True, has_touch=True, device_scale_factor=2)
        context = await self.browser.new_context(
            base_url=self.base_url,
            permissions=PERMISSIONS,
            locale="en-US",
            **options,
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.on("page", self.watch)
        self.opened.append(context)
        return context

    async def page(self, kind: Kind) -> Page:
        """A page in a new context of ``kind``."""
        context = await self.new(kind)
        return await context.new_page()

    def watch(self, page: Page) -> None:
        def on_error(error: Error) -> None:
            self.page_errors.append(f"{page.url}: {error.message}")

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.console_errors.append(f"{page.url}: {message.text}")

        def on_response(response: Response) -> None:
            if response.status >= 400:
                self.console_errors.append(f"{page.url}: HTTP {response.status} {response.url}")

        page.on("pageerror", on_error)
        page.on("console", on_console)
        page.on("response", on_response)

    def assert_clean(self, *, allow: str | None = None) -> None:
        """No uncaught script error and no Content-Security-Policy violation on any page.

        Other console errors (a failed request, say) are listed in the artifacts only;
        ``allow`` is a regular expression for console errors the test expects.
        """
        csp = [e for e in self.console_errors if "Content Security Policy" in e]
        unexpected = [e for e in self.page_errors + csp if not (allow and re.search(allow, e))]
        assert not unexpected, "errors in the page:\n" + "\n".join(unexpected)

    async def close(self, name: str) -> None:
        for context in self.opened:
            await context.close()
        self.opened.clear()
        if self.page_errors or self.console_errors:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            lines = [f"page error: {e}" for e in self.page_errors]
            lines += [f"console error: {e}" for e in self.console_errors]
            (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(lines) + "\n")


async def sign_in(page: Page, email: str, password: str) -> None:
    """Sign a therapist in through the real form; ends on the dashboard."""
    await page.goto("/login")
    await page.get_by_label("E-mail address").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/dashboard")


async def focused(page: Page, selector: str) -> bool:
    result: bool = await page.evaluate(
        "sel => document.activeElement !== null && document.activeElement.matches(sel)", selector
    )
    return result


async def describe_focus(page: Page) -> str:
    description: str = await page.evaluate(
        """() => {
            const e = document.activeElement;
            if (!e || e === document.body) return "body";
            const text = (e.getAttribute("aria-label") || e.textContent || "").trim().slice(0, 30);
            return `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""} "${text}"`;
        }"""
    )
    return description


async def tab_to(page: Page, selector: str, *, max_presses: int = 40) -> int:
    """Press Tab until ``selector`` has the focus; returns how many presses it took."""
    trail: list[str] = []
    for presses in range(1, max_presses + 1):
        await page.keyboard.press("Tab")
        if await focused(page, selector):
            return presses
        trail.append(await describe_focus(page))
    raise AssertionError(f"Tab never reached {selector}; the focus went through: {trail}")


async def wait_for_video(page: Page, selector: str, *, playing: bool = False) -> None:
    """Wait until the video element shows a picture (and, if ``playing``, is not paused)."""
    await page.wait_for_function(
        """([sel, playing]) => {
            const v = document.querySelector(sel);
            return v instanceof HTMLVideoElement && v.videoWidth > 0
                && (!playing || (!v.paused && v.readyState >= 2));
        }""",
        arg=[selector, playing],
    )


async def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot under ``tests/artifacts/e2e/``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    return path


async def screenshots(page: Page, name: str) -> list[Path]:
    """Screenshots at desktop width and at 375 px (``NAME-desktop.png``, ``NAME-phone.png``).

    The page is resized for the one it is not already at, and then resized back.
    """
    original = page.viewport_size
    paths: list[Path] = []
    for kind in KINDS:
        if page.viewport_size != VIEWPORTS[kind]:
            await page.set_viewport_size(VIEWPORTS[kind])
            await _next_frame(page)
        paths.append(await screenshot(page, f"{name}-{kind}"))
    if original is not None and page.viewport_size != original:
        await page.set_viewport_size(original)
        await _next_frame(page)
    return paths


async def _next_frame(page: Page) -> None:
    await page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(null)))")


async def assert_fits_width(page: Page) -> None:
    """Nothing sticks out sideways: no horizontal scrolling at this width."""
    overflow: int = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    width = page.viewport_size["width"] if page.viewport_size else "?"
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px at {width}px wide"


_axe_source: str | None = None


def axe_source() -> str:
    global _axe_source
    if _axe_source is None:
        if not AXE_SCRIPT.is_file():
            raise AssertionError(f"{AXE_SCRIPT} is missing: run `make setup-dev` (npm ci)")
        _axe_source = AXE_SCRIPT.read_text(encoding="utf-8")
    return _axe_source


# How axe gets into the page: the app's Content-Security-Policy (script-src 'self') blocks the
# inline <script> that page.add_script_tag() would add.  Rather than turning the policy off
# with bypass_csp=True (which would also hide CSP violations of the app's own scripts from
# these tests), axe's source is run with page.evaluate(): DevTools-protocol evaluation is not
# subject to the page's CSP, and axe itself needs no eval.  The page keeps its real policy.
_RUN_AXE = """async () => {
    const results = await axe.run(document, { resultTypes: ["violations"] });
    return results.violations.map(v => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        helpUrl: v.helpUrl,
        nodes: v.nodes.map(n => ({ target: n.target, summary: n.failureSummary })),
    }));
}"""


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(axe_source())
    violations: list[dict[str, Any]] = await page.evaluate(_RUN_AXE)
    return violations


async def assert_accessible(page: Page, name: str) -> None:
    """axe finds no serious or critical violation; every violation is saved as JSON."""
    violations = await axe_violations(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.axe.json").write_text(json.dumps(violations, indent=2) + "\n")
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    if blocking:
        lines = [f"axe: {len(blocking)} serious/critical violation(s) on {page.url} ({name}):"]
        for v in blocking:
            lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
            for node in v["nodes"]:
                target = " ".join(json.dumps(t) for t in node["target"])
                summary = " ".join(str(node["summary"] or "").split())
                lines.append(f"    {target}: {summary}")
        raise AssertionError("\n".join(lines))
