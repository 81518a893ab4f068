"""The dashboard in Chromium: a customer's Credits page, another site's forged form, the embed on
another origin, and an operator's admin panel, each page checked by axe at both widths."""

import http.server
import json
import re
import threading

import browser
from browser import api

BASE = browser.env("CREDITD_BASE")


def link(account, **body):
    """A one-time link to `account`'s Credits page, as the operator's backend asks for it."""
    return api("POST", f"/v1/accounts/{account}/dashboard-sessions", body)["url"]


def available(account):
    return api("GET", f"/v1/accounts/{account}/balance")["available"]


def figure(text):
    """A figure as the page shows it (`1,234.5`) as the API writes it (`1234.5`)."""
    return text.replace(",", "").strip()


def set_up():
    api("PUT", "/v1/plans/free", {"name": "Free", "credits": "100", "interval": "month", "default": True})
    api("PUT", "/v1/plans/pro", {"name": "Pro", "credits": "5000", "interval": "month",
                                 "price": {"amount": 2000, "currency": "usd"}})
    api("PUT", "/v1/packages/p500", {
        "name": {"en": "500 credits", "zh": "500 积分"},
        "description": {"en": "A starter pack", "zh": "入门包"},
        "credits": "500", "price": {"amount": 500, "currency": "usd"}, "active": True})
    api("PUT", "/v1/features/image", {"credits_per_unit": "2"})
    api("POST", "/v1/accounts", {"id": "ada", "name": "Ada Lovelace"})
    api("POST", "/v1/accounts", {"id": "bob", "name": "Bob"})
    api("POST", "/v1/accounts/bob/grants", {"amount": "777", "source": "admin", "reason": "test"})
    # Five days of usage, one more image each day, so that the chart has bars.
    for day in range(5):
        api("POST", "/v1/accounts/ada/consume", {"feature": "image", "quantity": str(day + 1)})
        api("POST", "/v1/test-clock/advance", {"seconds": 86400})


def pay_on_stripe(page, button):
    """Clicks `button` on the fake Stripe's hosted page and comes back to the Credits page."""
    page.wait_for_url(re.compile(r".*/c/pay/.*"))
    browser.look(page, "stripe-checkout" if button == "Pay" else "stripe-setup")
    page.get_by_role("button", name=button).click()
    page.wait_for_url(re.compile(r".*/dashboard\?checkout=.*"))


def customer(chromium):
    page = browser.desktop(chromium)
    url = link("ada", return_url="https://app.example.com/settings")
    page.goto(url)
    assert page.url == BASE + "/dashboard", page.url
    assert figure(page.get_by_test_id("available").inner_text()) == available("ada")
    browser.look(page, "credits")

    # The link a second time opens nothing and shows nothing of the account.
    stranger = browser.desktop(chromium)
    answer = stranger.goto(url)
    assert answer.status == 410, answer.status
    assert "available" not in stranger.content()

    forged_post_changes_nothing(page)

    # Auto top-up without a card is refused, and the page says why.
    page.get_by_label("Top up automatically").check()
    page.get_by_label("When available credits fall below").fill("50")
    page.get_by_role("button", name="Save", exact=True).click()
    assert "Add a payment method" in page.locator("p.notice").first.inner_text()
    assert not api("GET", "/v1/accounts/ada/auto-topup")["enabled"]

    # A card saved through Stripe's setup page, then auto top-up is on.
    page.get_by_role("button", name="Add a card").click()
    pay_on_stripe(page, "Save card")
    assert "4242" in page.get_by_test_id("card").inner_text()
    page.get_by_label("Top up automatically").check()
    page.get_by_label("When available credits fall below").fill("50")
    page.get_by_role("button", name="Save", exact=True).click()
    assert "Saved." in page.locator("p.notice").first.inner_text()
    assert api("GET", "/v1/accounts/ada/auto-topup")["enabled"]

    # A package bought on Stripe's page: back on the page, the new balance.
    before = float(available("ada"))
    page.get_by_role("button", name="Buy 500 credits").click()
    pay_on_stripe(page, "Pay")
    browser.wait_for("the purchase's credits", lambda: float(available("ada")) == before + 500)
    page.reload()
    assert float(figure(page.get_by_test_id("available").inner_text())) == before + 500

    # The history, filtered to purchases: the package, what was paid.
    page.goto(BASE + "/dashboard/history?type=purchase")
    rows = page.locator("[data-testid=history] tbody tr")
    assert rows.count() == 1, rows.count()
    assert "$5.00" in rows.first.inner_text() and "+500" in rows.first.inner_text()
    browser.look(page, "history")

    # Today's daily reward.
    page.goto(BASE + "/dashboard")
    reward = available("ada")
    page.get_by_role("button", name=re.compile("Claim today")).click()
    assert "Reward claimed." in page.locator("p.notice").first.inner_text()
    assert float(available("ada")) == float(reward) + 5

    keys(page)

    # The usage chart: a bar for each day images were made.
    page.goto(BASE + "/dashboard/usage?by=feature")
    assert page.locator("[data-testid=chart] svg rect").count() == 5
    assert "image" in page.get_by_test_id("usage-table").inner_text()
    browser.look(page, "usage")

    # Another account's page is not reached from this session.
    answer = page.goto(BASE + "/admin/accounts/bob/credits")
    assert page.url.endswith("/admin/login"), page.url
    assert "777" not in page.content()
    return page


def forged_post_changes_nothing(page):
    """A page of another site posts the daily reward's form with the customer's browser."""
    evil = page.context.new_page()
    evil.route("http://evil.test/**", lambda route: route.fulfill(
        content_type="text/html",
        body=f"""<!doctype html><html lang="en"><title>evil</title><body>
        <form id="f" method="post" action="{BASE}/dashboard/actions/daily-reward">
        <input name="csrf" value="guessed"></form>
        <script>document.getElementById("f").submit()</script></body></html>"""))
    evil.goto("http://evil.test/")
    evil.wait_for_load_state()
    browser.wait_for("the forged form to land", lambda: BASE in evil.url)
    assert not api("GET", "/v1/accounts/ada/daily-reward")["claimed"]
    evil.close()


def keys(page):
    page.goto(BASE + "/dashboard/keys")
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Project (optional)").fill("cli")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    api("GET", "/v1/accounts/ada/balance", key=key)
    browser.look(page, "keys")
    page.goto(BASE + "/dashboard/keys")
    assert key not in page.content()
    page.get_by_role("button", name="Revoke laptop").click()
    assert "Key revoked." in page.locator("p.notice").first.inner_text()
    api("GET", "/v1/accounts/ada/balance", key=key, expect=401)


def in_chinese(chromium):
    page = browser.desktop(chromium)
    page.goto(link("ada", locale="zh"))
    assert page.locator("html").get_attribute("lang") == "zh"
    assert "可用积分" in page.content() and "500 积分" in page.content()
    browser.look(page, "credits-zh")


def serve_once(html):
    """Serves `html` at the root of a server of its own on 127.0.0.1: a page of another
    origin than creditd's, on the same machine (a page fulfilled by the driver would count as
    public, and Chromium keeps public pages from calling loopback addresses)."""
    body = html.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def embedded(chromium):
    """The balance on a page of another origin, through the embed's script."""
    token = api("POST", "/v1/accounts/ada/embed-tokens")["token"]
    shop = serve_once(f"""<!doctype html><html lang="en"><head><title>Shop</title>
        <link rel="icon" href="data:,">
        <script src="{BASE}/embed/creditd.js" defer></script></head>
        <body><main><h1>Your shop</h1>
        <p>Credits: <creditd-balance token="{token}"></creditd-balance></p></main></body></html>""")
    page = browser.desktop(chromium)
    page.goto(shop)
    element = page.locator("creditd-balance")
    want = available("ada")
    browser.wait_for("the embedded balance", lambda: element.get_attribute("data-available") == want)
    # The figure is in the element's shadow root, which the locator pierces.
    shown = page.locator("creditd-balance [part=value]").inner_text()
    assert figure(shown) == want, shown
    browser.look(page, "embed")


def operator(chromium, customer_page):
    page = browser.desktop(chromium)
    page.goto(BASE + "/admin")
    assert page.url.endswith("/admin/login"), page.url
    browser.look(page, "admin-login")
    page.get_by_label("Admin key").fill(browser.env("CREDITD_ADMIN_KEY"))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Search by id, name or metadata").fill("Lovelace")
    page.get_by_role("button", name="Search").click()
    browser.look(page, "admin-accounts")
    page.get_by_role("link", name="ada").click()
    before = float(available("ada"))
    page.get_by_label("Credits", exact=True).fill("25")
    page.get_by_label("Reason", exact=True).fill("support ticket 7")
    page.get_by_role("button", name="Grant", exact=True).click()
    assert "Credits granted." in page.locator("p.notice").first.inner_text()
    browser.look(page, "admin-account")
    assert float(available("ada")) == before + 25
    # The customer sees it.
    customer_page.goto(BASE + "/dashboard")
    assert float(figure(customer_page.get_by_test_id("available").inner_text())) == before + 25
    # The customer's page as the operator sees it: read-only.
    page.get_by_role("link", name=re.compile("Credits page")).click()
    assert "Read-only view" in page.content()
    browser.look(page, "admin-customer-view")
    # A hold pending, which the account's page lists and the health page counts.
    hold = api("POST", "/v1/accounts/ada/holds", {"amount": "5"})["hold"]["id"]
    page.goto(BASE + "/admin/accounts/ada")
    row = page.get_by_role("region", name="Pending holds").get_by_role("row", name=re.compile(hold))
    assert re.search(r"\b5\b", row.inner_text()), row.inner_text()
    # Every other section of the panel.
    page.goto(BASE + "/admin")
    for section in ("packages", "plans", "prices", "settings", "health"):
        page.get_by_role("navigation").get_by_role("link", name=section.capitalize()).click()
        assert page.url.endswith("/admin/" + section), page.url
        browser.look(page, "admin-" + section)
    held = page.get_by_test_id("holds-pending").inner_text()
    assert re.search(r"Holds pending\s+1\b", held), held
    # A price list imported from a file chosen on the prices page.
    page.goto(BASE + "/admin/prices")
    price_list = {"uploaded-model": {"litellm_provider": "openai", "mode": "chat",
                                     "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}}
    page.get_by_label("Price list file (JSON)").set_input_files(files=[{
        "name": "model_prices_and_context_window.json", "mimeType": "application/json",
        "buffer": json.dumps(price_list).encode()}])
    page.get_by_role("button", name="Import", exact=True).click()
    notice = page.locator("p.notice").first.inner_text()
    assert "Imported: 1 written" in notice, notice
    assert api("GET", "/v1/prices/uploaded-model")["input"] == "2.5"


set_up()
with browser.chromium() as chromium:
    page = customer(chromium)
    in_chinese(chromium)
    embedded(chromium)
    operator(chromium, page)
print("the dashboard scenario passed")
