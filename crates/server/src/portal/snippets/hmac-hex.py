import hashlib
import hmac


# headers: the request's headers, names in lower case; raw_body: the body's
# bytes as received (before any JSON parsing); secret: the endpoint's
# secret, used as it is written (UTF-8).
def verify_webhook(headers, raw_body, secret):
    given = headers.get("{{HEADER}}", "").encode()
    expected = ("{{PREFIX}}" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()).encode()
    return hmac.compare_digest(given, expected)
