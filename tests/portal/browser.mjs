// The portal in a real browser: Debian's Chromium driven by playwright-core,
// every page checked with axe-core. Started by tests/it/portal_browser.rs,
// which runs a real `outhook serve`, worker, PostgreSQL and receiver, and
// passes what it made in the environment. Exits non-zero on the first
// failed check, naming it.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing ${name}`);
  return v;
};
const BASE = env('PORTAL_BASE');
const LINK = env('PORTAL_LINK');
const OTHER_LINK = env('PORTAL_OTHER_LINK');
const EXPIRED_LINK = env('PORTAL_EXPIRED_LINK');
const ADMIN_TOKEN = env('PORTAL_ADMIN_TOKEN');
const ENDPOINT_URL = env('PORTAL_ENDPOINT_URL');
const OTHER_URL = env('PORTAL_OTHER_URL');
const DEAD_ID = env('PORTAL_DEAD_DELIVERY');
const NEW_URL = env('PORTAL_NEW_URL');
const CLIENT_CERT = env('PORTAL_CLIENT_CERT');
const CLIENT_KEY = env('PORTAL_CLIENT_KEY');
const TOKEN_URL = env('PORTAL_TOKEN_URL');
const CLIENT_SECRET = env('PORTAL_CLIENT_SECRET');
const SHOTS = process.env.PORTAL_SCREENSHOTS || '';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let step = 'start';
const check = (ok, what) => {
  if (!ok) throw new Error(`${step}: ${what}`);
};

async function axe(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP (no
  // script at all) does not govern.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    const text = bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    throw new Error(`axe on ${name}: ${text.join('; ')}`);
  }
  console.log(`axe ${name}: ${result.violations.length} minor or moderate, 0 serious or critical`);
}

async function shot(page, name) {
  if (SHOTS) {
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }
}

// Playwright starts Chromium with a fresh, empty --user-data-dir of its own
// (it refuses the flag here) and deletes it on close.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic',
  ],
});

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();

  step = 'a tampered link is refused';
  const tampered = LINK.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
  let response = await page.goto(tampered);
  check(response.status() === 403, `status ${response.status()}`);
  check((await page.textContent('body')).includes('invalid or has expired'), 'no explanation');

  step = 'an expired link is refused';
  response = await page.goto(EXPIRED_LINK);
  check(response.status() === 403, `status ${response.status()}`);

  step = 'the link opens the owner\'s endpoints';
  response = await page.goto(LINK);
  check(response.status() === 200, `status ${response.status()}`);
  check(new URL(page.url()).pathname === '/portal', `landed on ${page.url()}`);
  check(!page.url().includes('token='), 'the token stays in the address bar');
  await page.getByRole('heading', { name: 'Endpoints', level: 1 }).waitFor();
  let body = await page.textContent('body');
  check(body.includes(ENDPOINT_URL), 'own endpoint missing');
  check(!body.includes(OTHER_URL), 'another owner\'s endpoint shown');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'outhook_portal');
  check(session && session.httpOnly && session.sameSite === 'Lax', `cookie ${JSON.stringify(session)}`);
  await axe(page, 'endpoints');
  await shot(page, 'endpoints');

  step = 'the provider\'s brand: title, logo, colour, support link';
  check((await page.title()).includes('Acme Resale'), `title ${await page.title()}`);
  check((await page.locator('header .brand').textContent()).includes('Acme Resale'), 'brand name');
  const logoWidth = await page.locator('img.brand-logo').evaluate((img) => img.naturalWidth);
  check(logoWidth > 0, 'the logo did not load under the CSP');
  check(await page.getByRole('link', { name: 'Help and support' }).getAttribute('href') === 'mailto:help@acme.example', 'support link');
  const addColour = await page.getByRole('link', { name: 'Add endpoint' })
    .evaluate((a) => getComputedStyle(a).backgroundColor);
  check(addColour === 'rgb(10, 125, 90)', `primary colour ${addColour}`);

  step = 'dark mode follows the browser';
  const dark = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'dark' });
  const darkPage = await dark.newPage();
  await darkPage.goto(LINK);
  await darkPage.getByRole('heading', { name: 'Endpoints', level: 1 }).waitFor();
  const darkBg = await darkPage.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(darkBg === 'rgb(11, 16, 32)', `dark background ${darkBg}`);
  await axe(darkPage, 'endpoints (dark)');
  await shot(darkPage, 'endpoints-dark');
  await darkPage.goto(`${BASE}/portal/endpoints/new`);
  await axe(darkPage, 'endpoint form (dark)');
  await shot(darkPage, 'endpoint-new-dark');
  await dark.close();

  step = 'the endpoint page';
  await page.getByRole('link', { name: ENDPOINT_URL }).click();
  await page.getByRole('heading', { name: 'Signing secret' }).waitFor();
  body = await page.textContent('body');
  check(body.includes('x-tenant'), 'static header name missing');
  check(!body.includes('tenant-secret-value'), 'a static header value is shown');
  check(!body.includes('whsec_'), 'the secret is shown before asking');
  await axe(page, 'endpoint');
  await shot(page, 'endpoint');

  step = 'reveal and rotate the secret';
  await page.getByRole('link', { name: 'Reveal secret' }).click();
  const before = (await page.locator('code.secret').allTextContents()).map((s) => s.trim());
  check(before.length === 1 && before[0].startsWith('whsec_'), `secrets ${before}`);
  await page.getByRole('button', { name: 'Rotate secret' }).click();
  await page.getByText('A new secret was made').waitFor();
  const after = (await page.locator('code.secret').allTextContents()).map((s) => s.trim());
  check(after.length === 2 && after[1] === before[0] && after[0] !== before[0] && after[0].startsWith('whsec_'),
    `after rotation ${after}`);

  step = 'disable and enable the endpoint';
  await page.getByLabel('Reason for disabling').fill('maintenance window');
  await page.getByRole('button', { name: 'Disable endpoint' }).click();
  await page.getByText('The endpoint is disabled.').waitFor();
  check((await page.textContent('body')).includes('Held: they are sent when the endpoint is enabled again.'), 'held deliveries explained');
  body = await page.textContent('body');
  check(body.includes('maintenance window'), 'reason not shown');
  await page.getByRole('button', { name: 'Enable endpoint' }).click();
  await page.getByText('The endpoint is enabled.').waitFor();
  check(await page.getByRole('button', { name: 'Disable endpoint' }).isVisible(), 'still disabled');

  step = 'a form posted without its CSRF token is refused';
  const endpointPath = new URL(page.url()).pathname;
  let posted = await context.request.post(`${BASE}${endpointPath}/disable`, { form: { reason: 'forged' }, maxRedirects: 0 });
  check(posted.status() === 403, `without token: ${posted.status()}`);
  posted = await context.request.post(`${BASE}${endpointPath}/disable`, { form: { reason: 'forged', csrf: 'AAAA' }, maxRedirects: 0 });
  check(posted.status() === 403, `with a wrong token: ${posted.status()}`);
  await page.reload();
  check(await page.getByRole('button', { name: 'Disable endpoint' }).isVisible(), 'the forged form disabled it');

  step = 'the delivery log, filtered to failed deliveries';
  await page.getByRole('link', { name: 'Delivery log' }).click();
  await page.getByRole('heading', { name: 'Delivery log', level: 1 }).waitFor();
  await axe(page, 'deliveries');
  await shot(page, 'deliveries');
  await page.getByLabel('Status').selectOption('dead');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/status=dead/);
  await page.getByRole('link', { name: `#${DEAD_ID}` }).click();

  step = 'the failed delivery\'s attempt';
  await page.getByRole('heading', { name: 'Attempts' }).waitFor();
  body = await page.textContent('body');
  check(body.includes('Failed'), 'status badge');
  const attemptLinks = page.locator('ol.attempts a');
  const attemptsBefore = await attemptLinks.count();
  check(attemptsBefore >= 1, 'no attempts listed');
  await attemptLinks.last().click(); // the oldest, the first attempt
  await page.waitForURL(/attempt_id=[0-9]+/);
  const detail = page.locator('section.attempt');
  const detailText = await detail.textContent();
  check(detailText.includes('Attempt 1'), 'attempt title');
  check(detailText.includes('500'), 'response status');
  check(detailText.includes('webhook-signature'), 'request headers as sent');
  check(/[0-9a-f]{64}/.test(detailText), 'body SHA-256');
  check(detailText.includes('from-the-receiver'), 'response body excerpt');
  await axe(page, 'attempt');
  await shot(page, 'attempt');

  step = 'retry the failed delivery and see the new attempt';
  await page.getByRole('button', { name: 'Retry' }).click();
  await page.getByText('queued for another attempt').waitFor();
  let delivered = false;
  for (let i = 0; i < 50 && !delivered; i++) {
    await page.waitForTimeout(200);
    await page.reload();
    delivered = (await attemptLinks.count()) === attemptsBefore + 1
      && (await page.locator('h1 .badge').textContent()).includes('Delivered');
  }
  check(delivered, 'no new, delivered attempt appeared');
  check((await page.locator('section.attempt').textContent()).includes('200'), 'the new attempt\'s status');

  step = 'another owner\'s link shows only its own data';
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  await otherPage.goto(OTHER_LINK);
  body = await otherPage.textContent('body');
  check(body.includes(OTHER_URL) && !body.includes(ENDPOINT_URL), 'isolation on the list');
  response = await otherPage.goto(`${BASE}${endpointPath}`);
  check(response.status() === 404, `another owner's endpoint page: ${response.status()}`);
  response = await otherPage.goto(`${BASE}/portal/deliveries/${DEAD_ID}`);
  check(response.status() === 404, `another owner's delivery: ${response.status()}`);
  await other.close();

  step = 'a customer adds an endpoint from the catalog';
  await page.goto(`${BASE}/portal`);
  await page.getByRole('link', { name: 'Add endpoint' }).click();
  await page.getByRole('heading', { name: 'Add an endpoint', level: 1 }).waitFor();
  await axe(page, 'endpoint form');
  await shot(page, 'endpoint-new');
  await page.getByLabel('Endpoint URL', { exact: true }).fill('http://10.9.9.9/hook');
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.getByRole('alert').getByText('private or reserved address').waitFor();
  await axe(page, 'endpoint form refused');
  await shot(page, 'endpoint-refused');
  await page.getByLabel('Endpoint URL', { exact: true }).fill(NEW_URL);
  await page.getByLabel('Description', { exact: true }).fill('the new one');
  await page.getByRole('checkbox', { name: /item\.sold/ }).check();
  await page.getByRole('checkbox', { name: /item\.listed/ }).check();
  await page.getByLabel('Content filter', { exact: true }).fill('price.amount >= 100');
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.getByRole('heading', { name: 'Endpoint added', level: 1 }).waitFor();
  const newSecret = await page.getByRole('textbox', { name: 'Secret' }).inputValue();
  check(newSecret.startsWith('whsec_'), `secret ${newSecret}`);
  console.log(`new secret ${newSecret}`);
  await axe(page, 'endpoint added');
  await shot(page, 'endpoint-created');

  step = 'the customer sends a catalog example and watches the attempt';
  await page.getByRole('link', { name: 'Go to the endpoint' }).click();
  await page.getByRole('heading', { name: 'Send an example' }).waitFor();
  const newEndpointPath = new URL(page.url()).pathname;
  await page.getByRole('link', { name: /How your server verifies/ }).click();
  await page.getByRole('heading', { name: 'Verify requests', level: 1 }).waitFor();
  check((await page.locator('code.snippet.node').textContent()).includes('function verifyWebhook'), 'no Node snippet');
  check((await page.locator('code.snippet.python').textContent()).includes('def verify_webhook'), 'no Python snippet');
  await axe(page, 'verify');
  await shot(page, 'verify');
  await page.goto(`${BASE}${newEndpointPath}`);
  await page.getByLabel('Example', { exact: true }).selectOption({ label: 'item.sold' });
  await page.getByRole('button', { name: 'Send example' }).click();
  await page.getByText('The example was sent as this delivery').waitFor();
  let sent = false;
  for (let i = 0; i < 50 && !sent; i++) {
    await page.waitForTimeout(200);
    await page.reload();
    sent = (await page.locator('h1 .badge').textContent()).includes('Delivered');
  }
  check(sent, 'the example was not delivered');

  step = 'the customer edits the URL, then deletes the endpoint';
  await page.goto(`${BASE}${newEndpointPath}/edit`);
  await axe(page, 'endpoint edit');
  await shot(page, 'endpoint-edit');
  await page.getByLabel('Endpoint URL', { exact: true }).fill(`${NEW_URL}/v2`);
  await page.getByRole('button', { name: 'Save changes' }).click();
  await page.getByText('settings were saved').waitFor();
  check((await page.textContent('h1')).includes(`${NEW_URL}/v2`), 'the new URL is not shown');
  await page.getByRole('link', { name: 'Delete' }).click();
  await page.getByRole('heading', { name: 'Delete this endpoint?' }).waitFor();
  await axe(page, 'endpoint delete');
  await shot(page, 'endpoint-delete');
  await page.getByRole('button', { name: 'Delete the endpoint' }).click();
  await page.getByText('The endpoint was deleted').waitFor();
  check(!(await page.textContent('body')).includes(`${NEW_URL}/v2`), 'the deleted endpoint is listed');

  step = 'the customer uploads a client certificate and sets OAuth2 details';
  // A line of the key's base64: what no page may show.
  const keyLine = readFileSync(CLIENT_KEY, 'utf8').split('\n').find((l) => l && !l.startsWith('-----'));
  await page.goto(`${BASE}${endpointPath}`);
  await page.getByRole('link', { name: 'Connection settings' }).click();
  await page.getByRole('heading', { name: 'Connection settings', level: 1 }).waitFor();
  await axe(page, 'connection');
  await shot(page, 'connection');
  await page.getByLabel('Certificate file', { exact: true }).setInputFiles(CLIENT_CERT);
  await page.getByRole('button', { name: 'Save connection settings' }).click();
  await page.getByRole('alert').getByText('client_key').waitFor();
  await axe(page, 'connection refused');
  await page.getByLabel('Certificate file', { exact: true }).setInputFiles(CLIENT_CERT);
  await page.getByLabel('Private key file', { exact: true }).setInputFiles(CLIENT_KEY);
  await page.getByLabel('Kind', { exact: true }).selectOption('oauth2');
  await page.getByLabel('Token URL', { exact: true }).fill(TOKEN_URL);
  await page.getByLabel('Client id', { exact: true }).fill('portal-client');
  await page.getByLabel('Client secret', { exact: true }).fill(CLIENT_SECRET);
  await page.getByLabel('Scope', { exact: true }).fill('webhooks:write');
  await page.getByRole('button', { name: 'Save connection settings' }).click();
  await page.getByText('connection settings were saved').waitFor();
  body = await page.textContent('#connection');
  check(body.includes('CN=portal-client'), `the certificate's subject is not shown: ${body}`);
  check(body.includes('OAuth2 client credentials'), `the credentials are not shown: ${body}`);
  for (const path of [endpointPath, `${endpointPath}/connection`]) {
    await page.goto(`${BASE}${path}`);
    const html = await page.content();
    check(!html.includes(CLIENT_SECRET) && !html.includes(keyLine), `a secret came back on ${path}`);
  }
  await shot(page, 'connection-saved');
  await page.goto(`${BASE}${endpointPath}/connection`);
  await axe(page, 'connection with a certificate');
  await shot(page, 'connection-with-certificate');
  await page.getByLabel('Remove the client certificate and its key').check();
  await page.getByRole('button', { name: 'Save connection settings' }).click();
  await page.getByText('connection settings were saved').waitFor();
  body = await page.textContent('#connection');
  check(!body.includes('CN=portal-client'), `the removed certificate is still shown: ${body}`);
  check(body.includes('OAuth2 client credentials'), `removing the certificate changed the credentials: ${body}`);

  step = 'an operator signs in with an admin token and sees every owner';
  const operator = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const opPage = await operator.newPage();
  await opPage.goto(`${BASE}/portal/login`);
  await axe(opPage, 'login');
  await opPage.getByLabel('API token').fill('oh_not_a_token');
  await opPage.getByRole('button', { name: 'Sign in' }).click();
  await opPage.getByText('unknown, revoked or expired').waitFor();
  await opPage.getByLabel('API token').fill(ADMIN_TOKEN);
  await opPage.getByRole('button', { name: 'Sign in' }).click();
  await opPage.getByRole('heading', { name: 'Endpoints', level: 1 }).waitFor();
  body = await opPage.textContent('body');
  check(body.includes(ENDPOINT_URL) && body.includes(OTHER_URL), 'operator sees both owners');
  await axe(opPage, 'operator endpoints');
  await shot(opPage, 'operator');
  await operator.close();

  console.log('portal browser checks passed');
} catch (e) {
  console.error(String(e && e.stack || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
