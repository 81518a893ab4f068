"""Signs and verifies Stripe webhook signatures with the official stripe package.

Usage: stripe_signatures.py SCENARIO [PAYLOAD_FILE]

Reads the webhook's raw body from PAYLOAD_FILE, or from stdin without one, and
the endpoint's signing secret from STRIPE_WEBHOOK_SECRET. The scenarios:

  sign    makes the Stripe-Signature header for the body at the current time,
          as Stripe signs a delivery
  verify  checks the header in STRIPE_SIGNATURE against the body, as a Stripe
          integration checks a delivery, and parses the event

Each prints one JSON line with what the package made or observed; the secret
is never printed. An unexpected failure exits with a traceback and a non-zero
status.
"""

import json
import os
import sys
import time

import stripe


def payload():
    if len(sys.argv) == 3:
        with open(sys.argv[2], "rb") as file:
            raw = file.read()
    else:
        raw = sys.stdin.buffer.read()
    # Stripe signs the body's text; the bytes are passed through unchanged.
    return raw.decode("utf-8")


def secret():
    return os.environ["STRIPE_WEBHOOK_SECRET"]


def sign():
    # The package's own header, which it offers for signing test payloads
    # from stripe 16 on: "t={timestamp},v1={HMAC-SHA256 of 'timestamp.body'}".
    timestamp = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(
        payload(), secret(), timestamp
    )
    return {"header": header, "timestamp": timestamp}


def verify():
    header = os.environ["STRIPE_SIGNATURE"]
    try:
        event = stripe.Webhook.construct_event(payload(), header, secret())
    except stripe.SignatureVerificationError as error:
        return {
            "event": None,
            "error": {"class": type(error).__name__, "message": error.user_message},
        }
    return {
        "event": {
            "id": event.id,
            "type": event.type,
            "object_id": event.data.object.id,
        },
        "error": None,
    }


SCENARIOS = {
    "sign": sign,
    "verify": verify,
}


def main():
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in SCENARIOS:
        sys.exit(
            "usage: stripe_signatures.py {" + ",".join(SCENARIOS) + "} [PAYLOAD_FILE]"
        )
    scenario = sys.argv[1]
    observed = SCENARIOS[scenario]()
    observed["scenario"] = scenario
    observed["version"] = stripe.VERSION
    print(json.dumps(observed))


if __name__ == "__main__":
    main()
