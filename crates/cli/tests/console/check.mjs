// Drives Debian's chromium through a node's web console as a user would,
// for `the_web_console_shows_a_rendering_job_live` in ../market.rs:
//
//   node check.mjs <console url> <api token> <screenshot.png> <frames>
//
// It refuses a wrong token, opens the console with the right one, waits
// for the newest job to reach 100% (a job that asks for approval: rejects
// a frame, waits for it again, approves them all) with <frames>
// thumbnails loaded, for
// providers and blocks to be listed, opens a frame full size, reloads
// (the token stays for the tab), saves a screenshot, and prints what the
// page showed as one JSON line. Any script error on the page fails it.
// playwright-core never downloads a browser: it drives /usr/bin/chromium.
import { chromium } from 'playwright-core';

const [url, token, screenshot, frames] = process.argv.slice(2);
if (!frames) {
  console.error('usage: node check.mjs <url> <token> <screenshot.png> <frames>');
  process.exit(2);
}
// Every wait below has its own limit; this bounds them all.
setTimeout(() => { console.error('check.mjs: over 5 minutes'); process.exit(3); }, 300_000).unref();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The flags that keep chromium off a closed network (it would try
  // Google's hosts at every start), and no sandbox as root.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(60_000);
  page.on('pageerror', (error) => failures.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // A refused token shows as a failed load (401), which this check causes.
    if (message.type() === 'error' && !message.text().includes('Failed to load resource')) {
      failures.push(`console error: ${message.text()}`);
    }
  });
  const text = (selector) => page.locator(selector).first().textContent();

  await page.goto(url);
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#token', 'ab'.repeat(32));
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.includes('refused'));
  const refused = await text('#login-error');

  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#jobs tbody tr');
  await page.waitForFunction(
    () => document.getElementById('job-progress').textContent.includes('(100%)'),
    null, { timeout: 240_000 });
  await page.waitForFunction((want) => [...document.querySelectorAll('#frames img')]
    .filter((img) => img.complete && img.naturalWidth > 0).length >= want, Number(frames));
  // A job that asks for approval waits for its requester: reject the
  // first frame in the viewer (it is rendered again elsewhere), then
  // approve them all, and the job settles.
  page.on('dialog', (dialog) => dialog.accept());
  let judged = null;
  if ((await text('#job-progress')).endsWith('· approval')) {
    await page.click('#frames figure');
    await page.waitForSelector('#viewer-judge:not([hidden])');
    await page.click('#viewer-reject');
    await page.waitForFunction(() => !document.getElementById('viewer').open);
    await page.waitForFunction(() => document.getElementById('job-facts').textContent.includes('1 rejected'));
    await page.waitForFunction(
      () => document.getElementById('job-progress').textContent.endsWith('(100%) · approval'),
      null, { timeout: 240_000 });
    await page.click('#job-approve');
    await page.waitForFunction(
      () => document.getElementById('job-progress').textContent.endsWith('· done'),
      null, { timeout: 120_000 });
    judged = await text('#job-facts');
  }
  await page.waitForFunction((want) => [...document.querySelectorAll('#frames img')]
    .filter((img) => img.complete && img.naturalWidth > 0).length >= want, Number(frames));
  await page.waitForSelector('#providers tbody tr');
  await page.waitForSelector('#blocks tbody tr');
  await page.waitForFunction(() => document.querySelector('#prices polyline') !== null);

  await page.click('#frames figure');
  await page.waitForFunction(() => document.getElementById('viewer').open
    && document.getElementById('viewer-image').naturalWidth > 0);
  const full = await page.evaluate(() => {
    const img = document.getElementById('viewer-image');
    return [img.naturalWidth, img.naturalHeight];
  });
  await page.click('#viewer-close');

  await page.reload();
  await page.waitForSelector('#jobs tbody tr');
  await page.waitForFunction((want) => [...document.querySelectorAll('#frames img')]
    .filter((img) => img.complete && img.naturalWidth > 0).length >= want, Number(frames));
  await page.screenshot({ path: screenshot, fullPage: true });

  const shown = await page.evaluate(() => ({
    jobs: document.querySelectorAll('#jobs tbody tr').length,
    progress: document.getElementById('job-progress').textContent,
    frames: document.querySelectorAll('#frames img').length,
    providers: [...document.querySelectorAll('#providers tbody tr')].map((r) => r.cells[0].firstElementChild.title),
    blocks: document.querySelectorAll('#blocks tbody tr').length,
    cancellable: !document.getElementById('job-cancel').hidden,
    approvable: !document.getElementById('job-approve').hidden,
    balance: [...document.querySelectorAll('#account dd')].map((d) => d.textContent)[0],
    address: location.href,
  }));
  console.log(JSON.stringify({ refused, full, judged, ...shown, failures }));
} catch (error) {
  failures.push(String(error));
  // What the page showed when it failed.
  const page = browser.contexts()[0]?.pages()[0];
  const seen = page ? await page.evaluate(() => ({
    progress: document.getElementById('job-progress').textContent,
    facts: document.getElementById('job-facts').textContent,
    error: document.getElementById('job-error').textContent,
  })).catch(() => null) : null;
  console.log(JSON.stringify({ failures, seen }));
} finally {
  await browser.close();
}
process.exit(failures.length ? 1 : 0);
