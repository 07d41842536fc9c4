import base64
import binascii

# pip install cryptography
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


# headers: the request's headers, names in lower case; raw_body: the body's
# bytes as received; public_key_pem: the provider's public key, as served at
# the address shown above.
def verify_webhook(headers, raw_body, public_key_pem):
    signature = headers.get("x-cometh-indexer-signature")
    if not signature:
        return False
    key = serialization.load_pem_public_key(public_key_pem.encode())
    # The body is sent as JSON.stringify of the event, so its bytes are
    # exactly what was signed (do not re-serialise it with json.dumps).
    try:
        key.verify(base64.b64decode(signature), raw_body, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, binascii.Error, ValueError):
        return False
