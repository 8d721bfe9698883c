"""A real headless browser for the integration tests: Debian's chromium, driven by Playwright.

Playwright's Python wheel bundles its node driver but no browser, and `playwright install`
(which downloads one) is never run: the tests drive the distribution's /usr/bin/chromium
(apt-get install --no-install-recommends chromium fonts-liberation fonts-dejavu-core
libatomic1; see CHROMIUM_PACKAGES).

    with chromium(ARTIFACTS) as browser:
        page = browser.new_page()
        page.goto("http://127.0.0.1/hub/login")
        ...
        screenshot(page, "login")          # ARTIFACTS/login.png, the full page

Every page's console messages and uncaught errors (all its navigations) are kept
(`browser.console(page)`) and written next to each screenshot as <name>.console.txt, to
show why a page did not render. Chromium trusts neither /etc/ssl/certs nor a self-signed
test certificate: use new_page(ignore_https_errors=True) for https://127.0.0.1 tests.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    sync_playwright,
)

CHROMIUM = Path(os.environ.get("HARDWAY_CHROMIUM", "/usr/bin/chromium"))
# libatomic1: the node driver bundled in the playwright wheel needs it (absent on a minimal
# Debian 12); fonts-dejavu-core: fontconfig's generic sans-serif without recommends
CHROMIUM_PACKAGES = "chromium fonts-liberation fonts-dejavu-core libatomic1"
# Playwright adds most of its own (--headless, --no-sandbox, --disable-dev-shm-usage,
# --no-first-run, --disable-background-networking, ...); these are stated anyway, so the
# browser's behaviour does not depend on a Playwright release.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # /dev/shm is 64 MB in many CI containers; use /tmp
    # Only 127.0.0.1 is browsed: never go through a proxy named by http(s)_proxy/all_proxy
    # in the environment (chromium honours those for non-loopback hosts).
    "--no-proxy-server",
    "--lang=en-US",
)
VIEWPORT = {"width": 1280, "height": 900}
LAUNCH_TIMEOUT_MS = 60_000
DEFAULT_TIMEOUT_MS = 30_000

# JupyterLab 4.x (checked on 4.6): the static page has the title "JupyterLab" and nothing
# else; the splash screen appears while the bundles load, the shell (.jp-LabShell) with its
# main dock panel is attached, the splash goes when the layout is restored, then the
# Launcher tab draws one card per kernelspec/app.
JUPYTERLAB_READY = "#jp-main-dock-panel"
JUPYTERLAB_SPLASH = "#jupyterlab-splash"
JUPYTERLAB_LAUNCHER_CARD = ".jp-Launcher .jp-LauncherCard"


class ChromiumBrowser:
    """The launched browser: a factory of pages, each in a fresh context (own cookies)."""

    def __init__(self, browser: Browser, artifacts_dir: Path, launch_seconds: float):
        self.browser = browser
        self.artifacts_dir = artifacts_dir
        self.launch_seconds = launch_seconds
        self.version = browser.version

    def new_page(self, *, ignore_https_errors: bool = False,
                 timeout_ms: float = DEFAULT_TIMEOUT_MS) -> Page:
        """A page in a new context. ignore_https_errors=True for self-signed test servers."""
        context = self.browser.new_context(
            viewport=VIEWPORT, ignore_https_errors=ignore_https_errors, locale="en-US")
        context.set_default_timeout(timeout_ms)
        _ARTIFACTS[context] = self.artifacts_dir
        page = context.new_page()
        log: list[str] = []
        _CONSOLE[page] = log

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type != "verbose":  # chromium's DOM lint ("autocomplete attributes")
                log.append(f"[{msg.type}] {msg.text}")

        def on_error(exc: Error) -> None:
            log.append(f"[pageerror] {exc}")

        page.on("console", on_console)
        page.on("pageerror", on_error)
        return page

    def console(self, page: Page) -> list[str]:
        return _CONSOLE.get(page, [])

    def screenshot(self, page: Page, name: str) -> Path:
        return screenshot(page, name, self.artifacts_dir)


_ARTIFACTS: weakref.WeakKeyDictionary[BrowserContext, Path] = weakref.WeakKeyDictionary()
_CONSOLE: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()


def chromium_missing() -> str | None:
    """Why the browser cannot run here (for pytest.skip/fail), or None when it can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found: apt-get install {CHROMIUM_PACKAGES}"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (requirements-dev.txt)"
    return None


@contextmanager
def chromium(artifacts_dir: Path, *, timeout_ms: float = LAUNCH_TIMEOUT_MS,
             ) -> Iterator[ChromiumBrowser]:
    """Launch headless chromium; yields the page factory, closes the browser on exit."""
    why = chromium_missing()
    if why:
        raise RuntimeError(why)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        t0 = time.monotonic()
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=timeout_ms,
        )
        launched = ChromiumBrowser(browser, artifacts_dir, time.monotonic() - t0)
        try:
            yield launched
        finally:
            browser.close()


def screenshot(page: Page, name: str, artifacts_dir: Path | None = None) -> Path:
    """Save the full page as artifacts_dir/<name>.png (the dir the page's browser was
    launched with, unless given), and its console log as <name>.console.txt if any."""
    if artifacts_dir is None:
        artifacts_dir = _ARTIFACTS.get(page.context)
        if artifacts_dir is None:
            raise ValueError("page was not made by chromium(); pass artifacts_dir")
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    path = artifacts_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    log = _CONSOLE.get(page)
    if log:
        (artifacts_dir / f"{name}.console.txt").write_text("\n".join(log) + "\n")
    return path


def wait_for_jupyterlab(page: Page, timeout_ms: float = 60_000, *, launcher: bool = True,
                        ) -> float:
    """Wait until JupyterLab's UI is really there, and return the seconds it took: the
    shell's main dock panel is visible, the splash screen is gone, the theme is applied and
    (launcher=True, what a new user's first visit shows) the Launcher's kernel cards are
    drawn, which needs the server's kernelspecs API. JupyterLab 4.6 keeps the title
    "JupyterLab" all along, so the title alone says nothing."""
    t0 = time.monotonic()
    deadline = t0 + timeout_ms / 1000

    def left() -> float:
        return max(1.0, (deadline - time.monotonic()) * 1000)

    page.locator(JUPYTERLAB_READY).wait_for(state="visible", timeout=left())
    page.locator(JUPYTERLAB_SPLASH).wait_for(state="detached", timeout=left())
    page.wait_for_function(
        "document.title.endsWith('JupyterLab') && !!document.body.dataset.jpThemeName",
        timeout=left())
    if launcher:
        page.locator(JUPYTERLAB_LAUNCHER_CARD).first.wait_for(state="visible", timeout=left())
    return time.monotonic() - t0
