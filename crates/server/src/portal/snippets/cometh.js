const crypto = require('node:crypto');

// headers: the request's headers, names in lower case; rawBody: the body's
// bytes as received (a Buffer); publicKeyPem: the provider's public key, as
// served at the address shown above.
function verifyWebhook(headers, rawBody, publicKeyPem) {
  const signature = headers['x-cometh-indexer-signature'];
  if (!signature) return false;
  // The body is sent as JSON.stringify of the event, so its bytes are
  // exactly what was signed.
  return crypto.verify('sha256', rawBody, publicKeyPem, Buffer.from(signature, 'base64'));
}
