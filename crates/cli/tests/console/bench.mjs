// Measures the web console in Debian's chromium, for `cairn bench console`
// (crates/cli/src/bench/console.rs):
//
//   node bench.mjs <console url> <api token> <seconds>
//
// It opens the console with the token in the address's fragment, prints
// `ready` once the page is loaded, and waits for a line on its standard
// input: the job to watch has been submitted (then, so that the page sees
// it from its start however slowly the browser came up). It loads the
// page again and records, in the page:
// when the job's progress line first shows (the first render, from the
// start of navigation), every later change of that line (a status update
// applied), every animation frame, and every long task (the main thread
// busy for 50 ms or more). It stops when the job is over, or after
// <seconds>, and prints the figures as one JSON line. A script error on
// the page fails it. playwright-core drives /usr/bin/chromium and never
// downloads a browser.
import { chromium } from 'playwright-core';

const [url, token, seconds] = process.argv.slice(2);
if (!seconds) {
  console.error('usage: node bench.mjs <url> <token> <seconds>');
  process.exit(2);
}
setTimeout(() => { console.error('bench.mjs: over its time'); process.exit(3); },
  (Number(seconds) + 120) * 1000).unref();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Off every network but loopback (chromium would try Google's hosts at
  // every start), and no sandbox as root.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(60_000);
  page.on('pageerror', (error) => failures.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // A closed escrow reads as a 404, which chromium logs as a failed load.
    if (message.type() === 'error' && !message.text().includes('Failed to load resource')) {
      failures.push(`console error: ${message.text()}`);
    }
  });
  // Installed before the console's own script runs.
  await page.addInitScript(() => {
    const bench = { changes: [], frames: [], longTasks: [] };
    window.cairnBench = bench;
    // Long tasks as [start, duration]: those of the watched span count.
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) bench.longTasks.push([entry.startTime, entry.duration]);
    }).observe({ type: 'longtask', buffered: true });
    const frame = (time) => { bench.frames.push(time); requestAnimationFrame(frame); };
    requestAnimationFrame(frame);
    document.addEventListener('DOMContentLoaded', () => {
      const line = document.getElementById('job-progress');
      new MutationObserver(() => {
        if (line.textContent) bench.changes.push([performance.now(), line.textContent]);
      }).observe(line, { childList: true, characterData: true, subtree: true });
    });
  });
  await page.goto(`${url}#token=${token}`);
  console.log('ready');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.pause();
  await page.reload();
  await page.waitForFunction(() => window.cairnBench.changes.length > 0);
  const over = /· (done|failed|cancelled)$/;
  await page.waitForFunction((pattern) => {
    const changes = window.cairnBench.changes;
    return new RegExp(pattern).test(changes[changes.length - 1][1]);
  }, over.source, { timeout: Number(seconds) * 1000 }).catch(() => {});
  const seen = await page.evaluate(() => window.cairnBench);
  const [[firstAt, firstText], ...later] = seen.changes;
  const lastAt = seen.changes[seen.changes.length - 1][0];
  const done = (text) => Number(/^(\d+)\//.exec(text)?.[1] ?? NaN);
  const total = Number(/^\d+\/(\d+)/.exec(firstText)?.[1] ?? NaN);
  const lastText = seen.changes[seen.changes.length - 1][1];
  // Frames while the job ran: the gaps between them are how long the page
  // could not answer a user.
  const frames = seen.frames.filter((t) => t >= firstAt && t <= lastAt);
  const gaps = frames.slice(1).map((t, i) => t - frames[i]).sort((a, b) => a - b);
  const pick = (q) => (gaps.length ? gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))] : 0);
  const running = Math.max(lastAt - firstAt, 1);
  const blocked = seen.longTasks
    .filter(([start, duration]) => start + duration >= firstAt && start <= lastAt)
    .map(([start, duration]) => Math.min(start + duration, lastAt) - Math.max(start, firstAt));
  console.log(JSON.stringify({
    first_render_ms: firstAt,
    updates: later.length,
    updates_per_s: (1000 * later.length) / running,
    tasks_shown_per_s: (1000 * (done(lastText) - done(firstText))) / running,
    first_done: done(firstText),
    last_done: done(lastText),
    total,
    over: over.test(lastText),
    frame_gap_p50_ms: pick(0.5),
    frame_gap_p99_ms: pick(0.99),
    frame_gap_max_ms: gaps.length ? gaps[gaps.length - 1] : 0,
    long_tasks: blocked.length,
    long_tasks_ms: blocked.reduce((a, b) => a + b, 0),
    watched_ms: running,
    failures,
  }));
} catch (error) {
  failures.push(String(error));
  console.log(JSON.stringify({ failures }));
} finally {
  await browser.close();
}
process.exit(failures.length ? 1 : 0);
