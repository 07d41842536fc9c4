// Verbatim from ../shared/seeds/004_bc7789395709398c.txt (Cometh, node.js).
// `WebhookEvent` is their SDK's type and `marketplaceSdk` their SDK client;
// the harness supplies a client whose getWebhookPublicKey() returns our PEM.
import { createVerify } from 'crypto';

const SIGNATURE_ALGORITHM = 'RSA-SHA256'
const SIGNATURE_OUTPUT_FORMAT = 'base64'
const PRIVATE_KEY_ENCODING = 'utf8'

export const validateWebhookEvent = async (
  webhookEvent: WebhookEvent,
  signature: string
): Promise<boolean> => {
  // Step 1: Retrieve the public key
  const webhookPublicKey = await marketplaceSdk.webhook.getWebhookPublicKey()
  
  // Step 2: Create a verifier
  const verifier = createVerify(SIGNATURE_ALGORITHM)
  verifier.update(JSON.stringify(webhookEvent), PRIVATE_KEY_ENCODING)
  verifier.end()

  // Step 3: Verify the signature
  return verifier.verify(webhookPublicKey, signature, SIGNATURE_OUTPUT_FORMAT)
}
