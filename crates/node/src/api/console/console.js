// The Cairn web console: the node's API, shown live. Plain JavaScript,
// served by the node (see crates/node/src/api/console.rs); every value
// from the API is put on the page as text, never as markup.
'use strict';

const TOKEN_KEY = 'cairn.token';
// Thumbnails shown per job; a 10,000-frame job shows its first ones and
// says there are more. Also the page of results read for them.
const THUMBS_MAX = 240;
// How often the selected job's escrow is read while its status changes.
const ESCROW_EVERY_MS = 2000;
// How often its results are read for new images while it runs.
const FRAMES_EVERY_MS = 1000;
// Blocks listed.
const BLOCKS_SHOWN = 20;
const IMAGE = /\.(png|jpe?g|gif|webp|bmp)$/i;
// The states of a job that is over.
const OVER = ['done', 'failed', 'cancelled'];

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  selected: null,
  stream: null,     // AbortController of the selected job's event stream
  jobs: new Map(),  // id -> status
  thumbs: new Map(), // blob id -> img, for the selected job
  framesSeen: -1,   // the selected job's `done` when its frames were last read
  framesBusy: false,
  escrow: { id: null, at: 0, text: '' }, // the selected job's, as last read
  renderQueued: false,
  key: null,        // the node's account
};

// ---- formatting ----

function short(hex) { return hex ? hex.slice(0, 10) + '…' : ''; }

// µCAIRN as CAIRN, digits grouped: 1000000000000000 µCAIRN is "1,000,000,000 CAIRN".
function cairn(micro) {
  const units = BigInt(micro);
  const whole = units / 1000000n;
  const frac = (units % 1000000n).toString().padStart(6, '0').replace(/0+$/, '');
  return whole.toLocaleString('en-US') + (frac ? '.' + frac : '') + ' CAIRN';
}

function ago(ms) {
  if (!ms) return '';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell); else td.textContent = cell === undefined ? '' : String(cell);
    tr.append(td);
  }
  return tr;
}

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [name, value] of pairs) {
    dl.append(el('dt', name), el('dd', value));
  }
}

// ---- the API ----

class Unauthorized extends Error {}

async function call(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: 'Bearer ' + state.token, ...(options.headers || {}) },
  });
  if (response.status === 401) throw new Unauthorized('the node refused the token');
  if (!response.ok) {
    let why = response.status + ' ' + response.statusText;
    try { why = (await response.json()).error || why; } catch (_) { /* not JSON */ }
    const error = new Error(why);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function json(path) { return (await call(path)).json(); }

// Server-sent events over fetch (EventSource cannot send the token):
// calls onEvent(name, data) for each, until the stream ends or `signal`
// aborts it.
async function events(path, signal, onEvent) {
  const response = await call(path, { signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Runs `work` again and again, `ms` apart, until the token is refused.
async function every(ms, work) {
  for (;;) {
    try { await work(); } catch (error) {
      if (error instanceof Unauthorized) return logout(error.message);
      console.warn(error);
    }
    await sleep(ms);
  }
}

// ---- jobs ----

function progressCell(job) {
  const pct = job.total ? Math.floor((100 * job.done) / job.total) : 0;
  const wrap = el('div', null, 'progress small');
  const bar = el('div');
  bar.style.width = pct + '%';
  wrap.append(bar, el('span', `${job.done}/${job.total} (${pct}%)`));
  return wrap;
}

// Redraws the job list and the selected job at the next frame, once
// however many statuses arrived since: a busy node's events never queue
// up more drawing than the screen shows.
function render() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(() => {
    state.renderQueued = false;
    renderJobs();
    const job = state.jobs.get(state.selected);
    if (job) showJob(job);
  });
}

function renderJobs() {
  const body = $('jobs').tBodies[0];
  body.replaceChildren();
  const jobs = [...state.jobs.values()].sort((a, b) => b.submitted_ms - a.submitted_ms);
  $('jobs-empty').hidden = jobs.length > 0;
  $('jobs').hidden = jobs.length === 0;
  for (const job of jobs) {
    const name = el('span', job.name);
    name.title = job.id;
    const tr = row([name, el('span', job.state, 'state ' + job.state), progressCell(job),
      job.running, job.providers, job.executions, job.disputes, job.convicted.length,
      job.reason || '']);
    tr.dataset.job = job.id;
    tr.className = job.id === state.selected ? 'selected' : '';
    tr.addEventListener('click', () => select(job.id));
    body.append(tr);
  }
}

async function refreshJobs() {
  const list = await json('/v1/jobs');
  for (const job of list.jobs) {
    // The selected job's stream is fresher than the list.
    if (job.id !== state.selected || !state.jobs.has(job.id)) state.jobs.set(job.id, job);
  }
  render();
  if (!state.selected && list.jobs.length) {
    const live = list.jobs.filter((j) => !OVER.includes(j.state));
    const newest = (live.length ? live : list.jobs).reduce((a, b) => (b.submitted_ms > a.submitted_ms ? b : a));
    select(newest.id);
  }
}

// Cancels the selected job, once the user confirms: its accepted results
// are kept and paid, the rest of its tasks given up.
async function cancelJob() {
  const id = state.selected;
  const job = state.jobs.get(id);
  if (!id || !confirm(`Cancel ${job ? job.name : short(id)}? Results accepted so far are kept and paid; ` +
    'every other task is given up, and the rest of the escrow returns.')) return;
  $('job-error').textContent = '';
  try {
    const status = await (await call(`/v1/jobs/${id}/cancel`, { method: 'POST' })).json();
    state.jobs.set(status.id, status);
    render();
  } catch (error) {
    if (error instanceof Unauthorized) return logout(error.message);
    $('job-error').textContent = `Not cancelled: ${error.message}`;
  }
}

// Whether the selected job's results may be judged now: it asks for
// approval and is not settling or over.
function judging(job) {
  return job && job.approved !== undefined && ![...OVER, 'settling'].includes(job.state);
}

// Sends a judgement of the selected job's results (`{approve, reject}`, by
// task); true once the node stored it.
async function judge(body, what) {
  const id = state.selected;
  $('job-error').textContent = '';
  try {
    const status = await (await call(`/v1/jobs/${id}/approval`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    })).json();
    state.jobs.set(status.id, status);
    render();
    return true;
  } catch (error) {
    if (error instanceof Unauthorized) { logout(error.message); return false; }
    $('job-error').textContent = `Not ${what}: ${error.message}`;
    return false;
  }
}

// Approves every result the selected job has now, page by page.
async function approveAll() {
  const id = state.selected;
  const job = state.jobs.get(id);
  if (!id || !confirm(`Approve every result of ${job ? job.name : short(id)}? They are paid when it settles.`)) return;
  const approve = [];
  try {
    let from = 0;
    for (;;) {
      const page = await json(`/v1/jobs/${id}/results?from=${from}`);
      approve.push(...page.results.map((r) => r.task));
      if (page.next === undefined || page.next <= from) break;
      from = page.next;
    }
  } catch (error) {
    if (error instanceof Unauthorized) return logout(error.message);
    $('job-error').textContent = `Not approved: ${error.message}`;
    return;
  }
  // In judgements the node takes (APPROVAL_TASKS_MAX tasks each).
  for (let at = 0; at < approve.length; at += 100000) {
    if (!await judge({ approve: approve.slice(at, at + 100000), reject: [] }, 'approved')) return;
  }
}

// Judges the result open in the viewer.
async function judgeShown(verdict) {
  const task = Number($('viewer').dataset.task);
  const body = verdict === 'approve' ? { approve: [task], reject: [] } : { approve: [], reject: [task] };
  if (!await judge(body, verdict === 'approve' ? 'approved' : 'rejected')) return;
  $('viewer').close();
  if (verdict === 'reject') {
    // Forgotten by the node: its images go, and come back once run again.
    for (const [blob, figure] of state.thumbs) {
      if (Number(figure.dataset.task) !== task) continue;
      URL.revokeObjectURL(figure.dataset.url);
      figure.remove();
      state.thumbs.delete(blob);
    }
    state.framesSeen = -1;
  }
}

function select(id) {
  if (state.selected === id) return;
  if (state.stream) state.stream.abort();
  state.selected = id;
  // The previous job's images are let go of, not kept for the page's life.
  for (const figure of state.thumbs.values()) URL.revokeObjectURL(figure.dataset.url);
  state.thumbs = new Map();
  state.framesSeen = -1;
  $('frames').replaceChildren();
  $('frames-note').textContent = 'No image outputs yet.';
  $('job-error').textContent = '';
  $('job').hidden = false;
  render();
  followJob(id);
}

async function followJob(id) {
  const controller = new AbortController();
  state.stream = controller;
  while (!controller.signal.aborted) {
    let over = false;
    try {
      await events(`/v1/jobs/${id}/events`, controller.signal, (name, data) => {
        if (name !== 'status') return;
        const job = JSON.parse(data);
        over = OVER.includes(job.state);
        state.jobs.set(job.id, job);
        render();
      });
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof Unauthorized) return logout(error.message);
      if (error.status === 404) return;
    }
    if (over) return;
    await sleep(2000); // an hour-long stream ended, or the node restarted
  }
}

function showJob(job) {
  if (job.id !== state.selected) return;
  $('job-title').textContent = `${job.name} · ${short(job.id)}`;
  $('job-cancel').hidden = [...OVER, 'settling'].includes(job.state);
  $('job-approve').hidden = !judging(job) || job.done === 0;
  const pct = job.total ? Math.floor((100 * job.done) / job.total) : 0;
  $('job-bar').style.width = pct + '%';
  $('job-progress').textContent = `${job.done}/${job.total} tasks (${pct}%) · ${job.state}`;
  const runs = job.done ? (job.executions / job.done).toFixed(2) : '–';
  const pairs = [
    ['State', job.state + (job.reason ? ` — ${job.reason}` : '')],
    ['Tasks', `${job.done} done, ${job.running} running, ${job.pending} waiting, ${job.failed} failed`],
    ['Providers', job.providers],
    ['Auctions', job.auctions],
    ['Runs per result', runs],
    ['Disputes', job.disputes],
    ['Convicted', job.convicted.length ? job.convicted.map(short).join(', ') : 'none'],
    ['Results settled', job.settled],
    ['Submitted', new Date(job.submitted_ms).toLocaleString()],
  ];
  if (job.approved !== undefined) {
    let text = `${job.approved} approved, ${job.rejected} rejected`;
    if (job.approval_until_ms) text += `; the rest approved at ${new Date(job.approval_until_ms).toLocaleString()}`;
    pairs.push(['Approval', text]);
  }
  if (job.finished_ms) pairs.push(['Took', ((job.finished_ms - job.submitted_ms) / 1000).toFixed(1) + ' s']);
  if (state.escrow.id === job.id) pairs.push(['Escrow', state.escrow.text]);
  facts($('job-facts'), pairs);
  if (state.escrow.id !== job.id || Date.now() - state.escrow.at > ESCROW_EVERY_MS) refreshEscrow(job.id);
  if (job.done !== state.framesSeen) loadFrames();
}

// Reads the selected job's escrow, then shows it. Marked read at the
// start, so the statuses arriving meanwhile do not ask again.
async function refreshEscrow(id) {
  state.escrow = { id, at: Date.now(), text: state.escrow.id === id ? state.escrow.text : '…' };
  let text;
  try {
    const escrow = await json(`/v1/escrows/${id}`);
    text = cairn(escrow.balance) + (escrow.closing ? ' (closing)' : '');
  } catch (error) {
    if (error instanceof Unauthorized) return logout(error.message);
    text = error.status === 404 ? 'closed or not on this node' : '?';
  }
  if (state.escrow.id !== id) return;
  // Fresh from now: a slow answer does not make the next look due at once.
  state.escrow = { id, at: Date.now(), text };
  render();
}

// Adds the selected job's image outputs not shown yet, in task order,
// while its results change: one reader at a time, at most once a
// FRAMES_EVERY_MS, following whichever job is selected.
async function loadFrames() {
  if (state.framesBusy) return;
  state.framesBusy = true;
  try {
    for (;;) {
      const job = state.jobs.get(state.selected);
      if (!job || job.done === state.framesSeen) return;
      // Full: only the job's end changes what is shown (the note).
      if (state.thumbs.size >= THUMBS_MAX && !OVER.includes(job.state)) return;
      await readFrames(job);
      await sleep(FRAMES_EVERY_MS);
    }
  } catch (error) {
    if (error instanceof Unauthorized) return logout(error.message);
    console.warn(error);
  } finally {
    state.framesBusy = false;
  }
}

async function readFrames(job) {
  const seen = job.done;
  // One page: no more results than thumbnails are ever read, however
  // many tasks the job has.
  const { results, next } = await json(`/v1/jobs/${job.id}/results?limit=${THUMBS_MAX}`);
  if (job.id !== state.selected) return;
  const images = [];
  for (const record of results) {
    for (const file of record.outputs) {
      if (IMAGE.test(file.name)) images.push({ file, record });
    }
  }
  const shown = images.slice(0, THUMBS_MAX);
  for (const { file, record } of shown) {
    // The first page moves as earlier tasks finish: never more than the
    // most shown.
    if (state.thumbs.has(file.id) || state.thumbs.size >= THUMBS_MAX) continue;
    const blob = await (await call(`/v1/blobs/${file.id}`)).blob();
    if (job.id !== state.selected) return;
    addThumb(file, record, blob);
  }
  const more = next !== undefined || images.length > shown.length;
  $('frames-note').textContent = images.length
    ? (more ? `The first ${shown.length} images of ${seen} results`
      : `${images.length} image${images.length === 1 ? '' : 's'}`)
    : 'No image outputs yet.';
  state.framesSeen = seen;
}

function addThumb(file, record, blob) {
  const url = URL.createObjectURL(new Blob([blob], { type: blob.type || 'image/png' }));
  const figure = el('figure', null, 'thumb');
  const img = el('img');
  img.src = url;
  img.alt = file.name;
  img.loading = 'lazy';
  const caption = `${file.name} · task ${record.task} · ${short(record.provider)}`;
  figure.append(img, el('figcaption', caption));
  figure.addEventListener('click', () => {
    $('viewer-image').src = url;
    $('viewer-image').alt = file.name;
    $('viewer-caption').textContent = `${caption} · digest ${short(record.digest)}`;
    $('viewer').dataset.task = record.task;
    $('viewer-judge').hidden = !judging(state.jobs.get(state.selected));
    $('viewer').showModal();
  });
  // In task order: before the first thumbnail of a later task.
  const later = [...$('frames').children].find((f) => Number(f.dataset.task) > record.task);
  figure.dataset.task = record.task;
  figure.dataset.url = url;
  $('frames').insertBefore(figure, later || null);
  state.thumbs.set(file.id, figure);
}

// ---- providers and prices ----

async function refreshProviders() {
  const { providers } = await json('/v1/providers');
  const body = $('providers').tBodies[0];
  body.replaceChildren();
  $('providers-empty').hidden = providers.length > 0;
  $('providers').hidden = providers.length === 0;
  for (const p of providers) {
    const key = el('span', short(p.key));
    key.title = p.key;
    const tr = row([key, p.price_ucairn_per_gfuel, p.slots, p.cores, p.memory_mib + ' MiB',
      p.runtimes.join(', '), cairn(p.stake), p.latency_ms + ' ms', `${p.won}/${p.bids}`,
      p.confirmed, p.convictions, ago(p.last_bid_ms)]);
    if (p.convictions > 0) tr.className = 'convicted';
    body.append(tr);
  }
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function refreshPrices() {
  const { prices } = await json('/v1/prices');
  const chart = $('prices');
  chart.replaceChildren();
  if (!prices.length) {
    chart.append(svg('text', { x: 240, y: 100, 'text-anchor': 'middle', class: 'muted' }, 'No auction has cleared yet.'));
    return;
  }
  const [left, right, top, bottom] = [56, 470, 12, 176];
  const t0 = prices[0].at_ms;
  const t1 = Math.max(prices[prices.length - 1].at_ms, t0 + 1);
  const values = prices.map((p) => p.price_ucairn_per_gfuel);
  const low = Math.min(...values);
  const high = Math.max(Math.max(...values), low + 1);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (right - left);
  const y = (v) => bottom - ((v - low) / (high - low)) * (bottom - top);
  chart.append(
    svg('line', { x1: left, y1: bottom, x2: right, y2: bottom, class: 'axis' }),
    svg('line', { x1: left, y1: top, x2: left, y2: bottom, class: 'axis' }),
    svg('text', { x: left - 6, y: top + 4, 'text-anchor': 'end' }, String(high)),
    svg('text', { x: left - 6, y: bottom, 'text-anchor': 'end' }, String(low)),
    svg('text', { x: left, y: bottom + 18 }, new Date(t0).toLocaleTimeString()),
    svg('text', { x: right, y: bottom + 18, 'text-anchor': 'end' }, new Date(t1).toLocaleTimeString()),
    svg('polyline', { points: prices.map((p) => `${x(p.at_ms)},${y(p.price_ucairn_per_gfuel)}`).join(' '), class: 'line' }),
  );
  for (const p of prices.slice(-200)) {
    const dot = svg('circle', { cx: x(p.at_ms), cy: y(p.price_ucairn_per_gfuel), r: 3, class: 'dot' });
    dot.append(svg('title', {}, `${p.price_ucairn_per_gfuel} µCAIRN/Gfuel · ${short(p.provider)} · ${new Date(p.at_ms).toLocaleTimeString()}`));
    chart.append(dot);
  }
}

// ---- the ledger ----

async function refreshAccount() {
  if (!state.key) {
    const market = await json('/v1/market');
    state.key = market.key;
    $('node').textContent = `node ${short(market.key)} · ${market.peers} peer${market.peers === 1 ? '' : 's'}`;
  }
  try {
    const [account, status] = await Promise.all([json(`/v1/accounts/${state.key}`), json('/v1/status')]);
    facts($('account'), [
      ['Balance', cairn(account.balance)],
      ['Staked', cairn(account.stake)],
      ['Height', status.height],
      ['Supply', cairn(status.supply)],
      ['Validators', status.validators.length],
    ]);
  } catch (error) {
    if (error.status === 404) { $('ledger').hidden = true; return; }
    throw error;
  }
}

function addBlock(block) {
  const body = $('blocks').tBodies[0];
  if ([...body.rows].some((r) => r.dataset.height === String(block.height))) return;
  const digest = el('span', short(block.digest));
  digest.title = block.digest;
  const tr = row([block.height, new Date(block.timestamp_ms).toLocaleTimeString(), block.applied, block.refused, digest]);
  tr.dataset.height = block.height;
  body.prepend(tr);
  while (body.rows.length > BLOCKS_SHOWN) body.deleteRow(-1);
}

async function followBlocks() {
  for (;;) {
    try {
      await events('/v1/blocks/events', undefined, (name, data) => {
        if (name !== 'block') return;
        $('live').textContent = 'live';
        $('live').className = 'live on';
        addBlock(JSON.parse(data));
      });
    } catch (error) {
      if (error instanceof Unauthorized) return logout(error.message);
      if (error.status === 404) { $('ledger').hidden = true; return; }
    }
    $('live').textContent = 'offline';
    $('live').className = 'live';
    await sleep(2000);
  }
}

// ---- the token ----

function logout(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = '';
  // A fresh page: every loop and stream of the old token stops.
  if (why) sessionStorage.setItem('cairn.why', why);
  location.reload();
}

function showLogin() {
  $('main').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = sessionStorage.getItem('cairn.why') || '';
  sessionStorage.removeItem('cairn.why');
  $('token').focus();
}

async function login(event) {
  event.preventDefault();
  const token = $('token').value.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(token)) {
    $('login-error').textContent = 'A token is 64 hex digits, as in the api.token file.';
    return;
  }
  state.token = token;
  try {
    await json('/v1/jobs');
  } catch (error) {
    state.token = null;
    $('login-error').textContent = error instanceof Unauthorized
      ? 'The node refused this token: it is not the one in its api.token file.'
      : `The node did not answer: ${error.message}`;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
}

function start() {
  $('login').hidden = true;
  $('main').hidden = false;
  $('logout').hidden = false;
  every(3000, refreshJobs);
  every(5000, refreshProviders);
  every(5000, refreshPrices);
  every(5000, refreshAccount);
  followBlocks();
}

function main() {
  $('login').addEventListener('submit', login);
  $('logout').addEventListener('click', () => logout(''));
  $('viewer-close').addEventListener('click', () => $('viewer').close());
  $('job-cancel').addEventListener('click', cancelJob);
  $('job-approve').addEventListener('click', approveAll);
  $('viewer-approve').addEventListener('click', () => judgeShown('approve'));
  $('viewer-reject').addEventListener('click', () => judgeShown('reject'));
  // A link with the token in its fragment (never sent to a server) opens
  // the console at once; the fragment leaves the address bar and history.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has('token')) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get('token'));
    history.replaceState(null, '', location.pathname);
  }
  state.token = sessionStorage.getItem(TOKEN_KEY);
  if (state.token) start(); else showLogin();
}

main();
