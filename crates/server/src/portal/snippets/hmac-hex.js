const crypto = require('node:crypto');

// headers: the request's headers, names in lower case; rawBody: the body's
// bytes as received (a Buffer, before any JSON parsing); secret: the
// endpoint's secret, used as it is written (UTF-8).
function verifyWebhook(headers, rawBody, secret) {
  const given = Buffer.from(headers['{{HEADER}}'] || '');
  const expected = Buffer.from('{{PREFIX}}' + crypto.createHmac('sha256', secret).update(rawBody).digest('hex'));
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}
