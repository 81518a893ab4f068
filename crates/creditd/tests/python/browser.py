"""What creditd's browser scenarios share: Chromium, pages at two widths, axe, screenshots, the API.

A scenario is a Python file beside this one, run by the Rust test that starts
the server (`support::browser::Browser::run`). It imports this module, drives
Debian's Chromium through Playwright, and exits non-zero (an uncaught
exception) to fail the test, which then shows everything it printed.

    import browser

    with browser.chromium() as chromium:
        page = browser.desktop(chromium)
        page.goto(browser.env("CREDITD_BASE") + "/dashboard")
        browser.look(page, "dashboard")  # no errors, axe and screenshots at 1280 and 375 px
        page.get_by_role("button", name="Pay").click()
        balance = browser.api("GET", "/v1/accounts/acme/balance")

Pages keep their Content-Security-Policy: axe is evaluated by the driver,
which the policy does not govern, and what the policy refuses is logged as an
error, which `look` fails on.

Environment it reads:
  CREDITD_TEST_CHROMIUM  the Chromium to run (default /usr/bin/chromium)
  CREDITD_TEST_AXE       axe.min.js to inject (default: the copy bundled with the
                         axe-playwright-python package)
  CREDITD_SCREENSHOTS    where screenshots go; none are taken when it is unset
  CREDITD_BASE           the server's base URL, for `api`
  CREDITD_ADMIN_KEY      the key `api` sends unless it is given another
"""

import contextlib
import importlib.util
import json
import os
import pathlib
import time
import urllib.error
import urllib.request

from playwright.sync_api import sync_playwright

# The two widths every page is checked and photographed at: a laptop and a
# small phone.
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
WIDTHS = (DESKTOP, PHONE)

# The axe impacts that fail a page.
FAILING_IMPACTS = ("serious", "critical")

# How long a page action or navigation may take, in milliseconds.
TIMEOUT_MS = 15_000


def env(name):
    """The environment variable `name`, which the scenario cannot do without."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"the scenario needs the environment variable {name}")
    return value


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, closed when the block ends."""
    path = os.environ.get("CREDITD_TEST_CHROMIUM") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(
            executable_path=path,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, viewport):
    """A page of its own (own cookies) at `viewport` ({"width", "height"}),
    keeping the errors its document logs or throws for `errors`."""
    context = browser.new_context(viewport=viewport, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    logged = []
    _errors[page] = logged
    page.on("console", lambda message: message.type == "error" and logged.append(message.text))
    page.on("pageerror", lambda error: logged.append(str(error)))

    def navigated(frame):
        if frame == page.main_frame:
            logged.clear()

    page.on("framenavigated", navigated)
    return page


# The errors each page's current document logged or threw.
_errors = {}


def errors(page):
    """What the page's current document logged as an error or threw: script
    errors, resources that failed, and Content-Security-Policy refusals."""
    return list(_errors.get(page, []))


def desktop(browser):
    """A new page 1280 px wide."""
    return new_page(browser, DESKTOP)


def phone(browser):
    """A new page 375 px wide."""
    return new_page(browser, PHONE)


def axe_source():
    """The path of axe.min.js: CREDITD_TEST_AXE, else axe-playwright-python's copy."""
    named = os.environ.get("CREDITD_TEST_AXE")
    if named:
        return pathlib.Path(named)
    spec = importlib.util.find_spec("axe_playwright_python")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "no axe-core: install axe-playwright-python or set CREDITD_TEST_AXE to axe.min.js"
        )
    return pathlib.Path(spec.origin).parent / "axe.min.js"


def axe(page):
    """Runs axe-core in `page` as it is now; raises listing every serious or
    critical violation, and answers all the violations found."""
    if not page.evaluate("typeof window.axe === 'object'"):
        # Evaluated by the driver, so the page's Content-Security-Policy,
        # which stays on in these tests, does not refuse it.
        page.evaluate(axe_source().read_text(encoding="utf-8"))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    violations = results["violations"]
    failing = [v for v in violations if v.get("impact") in FAILING_IMPACTS]
    if failing:
        raise AssertionError(
            f"axe found {len(failing)} serious or critical violation(s) on {page.url} "
            f"at {page.viewport_size['width']} px:\n" + describe(failing)
        )
    return violations


def describe(violations):
    """Violations as lines a person reads: rule, impact, help, and each node's target."""
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        lines.append(f"  {violation['helpUrl']}")
        for node in violation["nodes"]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html'][:200]}")
    return "\n".join(lines)


def shot(page, name):
    """Saves full-page screenshots of `page` as `{name}-1280.png` and `{name}-375.png`
    in CREDITD_SCREENSHOTS (nothing when unset), leaving its viewport as it was."""
    folder = os.environ.get("CREDITD_SCREENSHOTS")
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    before = page.viewport_size
    try:
        for viewport in WIDTHS:
            page.set_viewport_size(viewport)
            path = os.path.join(folder, f"{name}-{viewport['width']}.png")
            page.screenshot(path=path, full_page=True)
    finally:
        page.set_viewport_size(before)


def look(page, name):
    """What every page gets: no error logged or thrown, axe at both widths,
    then its screenshots."""
    logged = errors(page)
    if logged:
        raise AssertionError(f"{page.url} logged errors:\n" + "\n".join(logged))
    before = page.viewport_size
    try:
        for viewport in WIDTHS:
            page.set_viewport_size(viewport)
            axe(page)
    finally:
        page.set_viewport_size(before)
    shot(page, name)


def api(method, path, body=None, key=None, expect=(200, 201)):
    """Calls creditd's JSON API at CREDITD_BASE with `key` (default
    CREDITD_ADMIN_KEY); answers the decoded body, raising with the answer
    when its status is not one of `expect`."""
    expect = (expect,) if isinstance(expect, int) else tuple(expect)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        env("CREDITD_BASE").rstrip("/") + path, data=data, method=method
    )
    request.add_header("Authorization", "Bearer " + (key or env("CREDITD_ADMIN_KEY")))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_MS / 1000) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    if status not in expect:
        raise AssertionError(f"{method} {path} answered {status}, not {expect}: {text}")
    return json.loads(text) if text else None


def wait_for(what, probe, timeout_s=10.0, every_s=0.1):
    """Calls `probe` until it answers something truthy, which is answered;
    raises naming `what` when `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s in vain for {what}")
        time.sleep(every_s)
