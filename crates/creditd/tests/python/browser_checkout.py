"""A customer saves a card, buys a package and subscribes to a plan on the fake Stripe's hosted checkout pages.

Run by crates/creditd/tests/browser.rs with the server started, the account
opened, the package on sale and both checkouts created through the API:
  CREDITD_BASE, CREDITD_ADMIN_KEY  the server, and its admin key
  ACCOUNT                          the account buying
  SETUP_URL, SETUP_SESSION         the setup checkout's page and session id
  PACKAGE_URL, PACKAGE_SESSION     the package checkout's page and session id
  PACKAGE_CREDITS                  what the package grants
  PLAN, PLAN_URL, PLAN_SESSION     the plan, its checkout's page and session id
  PLAN_CREDITS                     what the plan grants each period
"""

from decimal import Decimal

import browser

account = browser.env("ACCOUNT")


def available():
    return Decimal(browser.api("GET", f"/v1/accounts/{account}/balance")["available"])


def card():
    return browser.api("GET", f"/v1/accounts/{account}/payment-method")["card"]


def session_status(session):
    return browser.api("GET", f"/v1/accounts/{account}/checkout/{session}")["status"]


with browser.chromium() as chromium:
    page = browser.desktop(chromium)

    # Saving a card: the page is checked, the button submits, creditd keeps the card.
    assert card() is None, f"a card was saved before the setup: {card()}"
    session = browser.env("SETUP_SESSION")
    page.goto(browser.env("SETUP_URL"))
    assert page.title() == "Save a card · Test checkout", page.title()
    browser.look(page, "checkout-setup")
    page.get_by_role("button", name="Save card", exact=True).click()
    page.wait_for_url(f"**session_id={session}")
    saved = card()
    assert saved == {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030}, saved
    assert session_status(session) == "card_saved", session_status(session)

    # Buying the package: its credits are granted by the time the customer is back.
    session = browser.env("PACKAGE_SESSION")
    before = available()
    page.goto(browser.env("PACKAGE_URL"))
    assert page.title() == "Pay · Test checkout", page.title()
    browser.look(page, "checkout-package")
    page.get_by_role("button", name="Pay", exact=True).click()
    page.wait_for_url(f"**session_id={session}")
    after = available()
    credits = Decimal(browser.env("PACKAGE_CREDITS"))
    assert after == before + credits, f"the balance went from {before} to {after}, not up {credits}"
    assert session_status(session) == "granted", session_status(session)

    # Subscribing: the plan's first period is granted by the time the customer is back.
    session = browser.env("PLAN_SESSION")
    before = available()
    page.goto(browser.env("PLAN_URL"))
    assert page.title() == "Subscribe · Test checkout", page.title()
    browser.look(page, "checkout-plan")
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.wait_for_url(f"**session_id={session}")
    after = available()
    credits = Decimal(browser.env("PLAN_CREDITS"))
    assert after == before + credits, f"the balance went from {before} to {after}, not up {credits}"
    subscription = browser.api("GET", f"/v1/accounts/{account}/subscription")
    assert subscription["plan_id"] == browser.env("PLAN"), subscription
    assert subscription["provider_subscription"].startswith("sub_"), subscription
    assert session_status(session) == "granted", session_status(session)

    # Back on a paid session's page, there is nothing left to pay.
    page.goto(browser.env("PACKAGE_URL"))
    assert page.get_by_role("button").count() == 0
    browser.axe(page)

print("the card was saved, the package bought and the plan subscribed to through Chromium")
