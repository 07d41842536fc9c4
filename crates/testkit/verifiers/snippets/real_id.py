# Verbatim from ../shared/seeds/001_9dc1a493f028d298.txt (Real ID, Python tab),
# indentation restored.
import os
import hmac
import hashlib
import json
def verify_webhook(body, headers):
    # NOTE: by default, Python's json.dumps returns additional pretty printing that will introduce whitespace not included during generation
    # Remove extra whitespace if using json.dumps as the payload body
    # If you're using Flask, use the `request.get_data()` method to retrieve the raw body
    payload = json.dumps(body, separators=(',', ':'))
    # The signature included in the request headers
    signature = headers["x-real-id-signature"]
    # The webhook private signing key you can find within the Real ID app settings
    secret_key = os.environ.get('REAL_ID_SIGNING_KEY')
    # Compute the HMAC signature using the provided secret key and payload
    computed_signature = hmac.new(
        key=bytes(secret_key, 'utf-8'),
        msg=bytes(payload, 'utf-8'),
        digestmod=hashlib.sha256
    ).hexdigest()
    # Compare the computed signature with the one included in the request headers
    if computed_signature == signature:
        return True
    else:
        return False
