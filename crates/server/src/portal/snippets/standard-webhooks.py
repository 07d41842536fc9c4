import base64
import hashlib
import hmac
import time


# headers: the request's headers, names in lower case; raw_body: the body's
# bytes as received (before any JSON parsing); secret: "whsec_…".
def verify_webhook(headers, raw_body, secret):
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return False
    # Refuse replays: the timestamp must be within five minutes of now.
    try:
        if abs(time.time() - int(timestamp)) > 300:
            return False
    except ValueError:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + raw_body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    # During a secret rotation several signatures are sent: any one may match.
    return any(
        hmac.compare_digest(entry.partition(",")[2].encode(), expected)
        for entry in signatures.split(" ")
        if entry.startswith("v1,")
    )
