# Verbatim from ../shared/seeds/000_3c889ae0d9651723.txt (The RealReal, "Example
# Pseudocode for Signature Verification"); the page's indentation was lost in
# the copy and is restored here. Only the function is taken; the page's
# "Usage" lines are prose around a web framework.
import hmac
import hashlib
def verify_webhook_signature(payload, signature, signing_secret):
    computed_signature = hmac.new(
        signing_secret.encode('utf-8'),
        payload.encode('utf-8'),
        hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(computed_signature, signature)
