const crypto = require('node:crypto');

// headers: the request's headers, names in lower case; rawBody: the body's
// bytes as received (a Buffer); publicKey: "whpk_…".
function verifyWebhook(headers, rawBody, publicKey) {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !timestamp || !signatures) return false;
  // Refuse replays: the timestamp must be within five minutes of now.
  if (!(Math.abs(Date.now() / 1000 - Number(timestamp)) <= 300)) return false;
  // The raw Ed25519 key, wrapped as SubjectPublicKeyInfo for Node.
  const raw = Buffer.from(publicKey.replace(/^whpk_/, ''), 'base64');
  const key = crypto.createPublicKey({
    key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]),
    format: 'der',
    type: 'spki',
  });
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), rawBody]);
  return signatures.split(' ').some((entry) => {
    const [version, signature] = entry.split(',');
    return version === 'v1a' && crypto.verify(null, signed, key, Buffer.from(signature || '', 'base64'));
  });
}
