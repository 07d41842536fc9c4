// Verbatim from ../shared/seeds/003_cd36dcb1b6601713.txt (Rheo, TypeScript / Node.js).
import { createHmac, timingSafeEqual } from 'crypto';
function verifyWebhookSignature(
rawBody: string,
signatureHeader: string,
secret: string
): boolean {
if (!signatureHeader.startsWith('sha256=')) return false;
const expected = signatureHeader.slice('sha256='.length);
const computed = createHmac('sha256', secret)
.update(rawBody)
.digest('hex');
return timingSafeEqual(Buffer.from(computed), Buffer.from(expected));
}
