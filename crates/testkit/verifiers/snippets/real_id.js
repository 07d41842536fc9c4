// Verbatim from ../shared/seeds/001_9dc1a493f028d298.txt (Real ID, Node.js tab).
// As printed it reads the key into `secret_key` but signs with `secretKey`;
// the harness defines `secretKey` from the same environment variable, as any
// customer running it must.
const crypto = require("crypto");
function verifyWebhookSignature(payload, headers) {
// The signature included in the request headers
signature = headers["x-real-id-signature"];
// The webhook private signing key you can find within the Real ID app settings
secret_key = process.env.REAL_ID_SIGNING_KEY;
// Compute the HMAC signature using the provided secret key and payload
const computedSignature = crypto
.createHmac("sha256", secretKey)
.update(JSON.stringify(payload))
.digest("hex");
// Compare the computed signature with the one included in the request headers
if (computedSignature === signature) {
console.log("Webhook signature is valid");
} else {
console.log("Webhook signature is invalid");
}
}
