import hashlib
import hmac
import time


# headers: the request's headers, names in lower case; raw_body: the body's
# bytes as received; secret: the endpoint's secret ("whsec_…"), used as it
# is written (UTF-8).
def verify_webhook(headers, raw_body, secret):
    parts = [p.strip().partition("=") for p in headers.get("stripe-signature", "").split(",")]
    timestamp = next((v for k, _, v in parts if k == "t"), None)
    signatures = [v.encode() for k, _, v in parts if k == "v1"]
    if not timestamp or not signatures:
        return False
    # Refuse replays: the timestamp must be within five minutes of now.
    try:
        if abs(time.time() - int(timestamp)) > 300:
            return False
    except ValueError:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest().encode()
    return any(hmac.compare_digest(given, expected) for given in signatures)
