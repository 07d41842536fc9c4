const crypto = require('node:crypto');

// headers: the request's headers, names in lower case; rawBody: the body's
// bytes as received (a Buffer); secret: the endpoint's secret ("whsec_…"),
// used as it is written (UTF-8).
function verifyWebhook(headers, rawBody, secret) {
  const parts = (headers['stripe-signature'] || '').split(',').map((p) => p.trim().split('='));
  const timestamp = (parts.find(([k]) => k === 't') || [])[1];
  const signatures = parts.filter(([k]) => k === 'v1').map(([, v]) => Buffer.from(v || ''));
  if (!timestamp || signatures.length === 0) return false;
  // Refuse replays: the timestamp must be within five minutes of now.
  if (!(Math.abs(Date.now() / 1000 - Number(timestamp)) <= 300)) return false;
  const expected = Buffer.from(crypto.createHmac('sha256', secret)
    .update(`${timestamp}.`).update(rawBody).digest('hex'));
  return signatures.some((given) => given.length === expected.length && crypto.timingSafeEqual(given, expected));
}
