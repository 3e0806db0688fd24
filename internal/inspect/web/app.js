// porthole request inspector. Plain browser JavaScript with no outside
// assets: the list follows /api/requests/events (server-sent events), the
// detail comes from /api/requests/{id}, the header from /api/status.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);

const state = {
  items: new Map(),  // id -> summary
  capacity: 100,
  selected: 0,
  detail: null,      // the selected exchange in full
  filter: '',
};

const statusText = {
  100: 'Continue', 101: 'Switching Protocols', 200: 'OK', 201: 'Created', 202: 'Accepted',
  204: 'No Content', 206: 'Partial Content', 301: 'Moved Permanently', 302: 'Found',
  303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 408: 'Request Timeout', 409: 'Conflict', 413: 'Content Too Large',
  415: 'Unsupported Media Type', 422: 'Unprocessable Content', 429: 'Too Many Requests',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c != null) e.append(c);
  }
  return e;
}

function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n, i = -1;
  do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
  return v.toFixed(v < 10 ? 1 : 0) + ' ' + units[i];
}

function fmtDuration(ms) {
  if (ms < 1) return (ms * 1000).toFixed(0) + ' µs';
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + ' ms';
  return (ms / 1000).toFixed(2) + ' s';
}

function fmtTime(iso) {
  const d = new Date(iso);
  return d.toTimeString().slice(0, 8);
}

function statusLabel(s) {
  if (!s.done && !s.status) return 'pending';
  if (!s.status) return 'no response';
  return s.status + (statusText[s.status] ? ' ' + statusText[s.status] : '');
}

// ---- list ----

function matches(s) {
  if (!state.filter) return true;
  const f = state.filter.toLowerCase();
  return s.path.toLowerCase().includes(f) || s.method.toLowerCase() === f ||
    String(s.status).startsWith(f) || s.tunnel.toLowerCase() === f;
}

let renderQueued = false;
function renderList() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    const ids = [...state.items.keys()].sort((a, b) => b - a);
    // Keep what the server keeps: the newest `capacity` exchanges.
    for (const id of ids.slice(state.capacity)) state.items.delete(id);
    const tbody = $('#requests tbody');
    const rows = [];
    for (const id of ids.slice(0, state.capacity)) {
      const s = state.items.get(id);
      if (!matches(s)) continue;
      const cls = ['req'];
      if (id === state.selected) cls.push('selected');
      if (!s.done) cls.push('pending');
      if (s.replay_of) cls.push('replay');
      rows.push(el('tr', { class: cls.join(' '), dataset: { id: String(id) }, onclick: () => select(id) },
        el('td', {}, fmtTime(s.start)),
        el('td', { class: 'method' }, s.method),
        el('td', { class: 'path', title: s.host + s.path }, s.path,
          s.replay_of ? el('span', { class: 'badge', title: 'replay of #' + s.replay_of }, 'replay') : null),
        el('td', { class: 'status s' + Math.floor(s.status / 100) }, statusLabel(s)),
        el('td', { class: 'num duration' }, s.done ? fmtDuration(s.duration_ms) : '…'),
        el('td', { class: 'num size-in' }, fmtBytes(s.request_size)),
        el('td', { class: 'num size-out' }, fmtBytes(s.response_size)),
      ));
    }
    tbody.replaceChildren(...rows);
    $('#empty').hidden = state.items.size > 0;
  });
}

function connect() {
  const es = new EventSource('/api/requests/events');
  const live = $('#live');
  es.onopen = () => live.classList.remove('off');
  es.onerror = () => live.classList.add('off');
  es.addEventListener('reset', (e) => {
    const msg = JSON.parse(e.data);
    state.capacity = msg.capacity || state.capacity;
    state.items.clear();
    for (const s of msg.requests) state.items.set(s.id, s);
    renderList();
  });
  es.addEventListener('exchange', (e) => {
    const s = JSON.parse(e.data);
    const before = state.items.get(s.id);
    state.items.set(s.id, s);
    renderList();
    // The tunnel counters in the header moved too.
    if (s.done) refreshStatusSoon();
    // The open exchange finished or got its response: show the rest.
    if (s.id === state.selected && (!before || before.done !== s.done || before.status !== s.status)) {
      loadDetail(s.id);
    }
  });
}

// ---- detail ----

async function select(id) {
  state.selected = id;
  renderList();
  await loadDetail(id);
}

async function loadDetail(id) {
  const pane = $('#detail-pane');
  let d;
  try {
    const r = await fetch('/api/requests/' + id);
    d = await r.json();
    if (!r.ok) throw new Error(d.error || r.statusText);
  } catch (err) {
    pane.replaceChildren(el('p', { class: 'error' }, 'Cannot load request #' + id + ': ' + err.message));
    return;
  }
  if (id !== state.selected) return;
  state.detail = d;
  const keepResult = $('#replay-result');
  pane.replaceChildren(renderDetail(d));
  if (keepResult && keepResult.dataset.for === String(id)) $('#replay-result').replaceWith(keepResult);
}

function headersTable(h) {
  const rows = [];
  for (const name of Object.keys(h || {}).sort()) {
    for (const v of h[name]) rows.push(el('tr', {}, el('td', {}, name), el('td', {}, v)));
  }
  if (!rows.length) return el('p', { class: 'note' }, 'No headers.');
  return el('table', { class: 'headers' }, el('tbody', {}, ...rows));
}

function bodyView(b, which) {
  const parts = [];
  if (b.kind === 'empty') {
    parts.push(el('p', { class: 'note' }, b.size > 0 ? 'Body of ' + fmtBytes(b.size) + ' not kept (body limit is 0).' : 'No body.'));
    return el('div', { class: 'body-wrap ' + which }, ...parts);
  }
  const info = [fmtBytes(b.size), b.content_type || 'no Content-Type', b.kind];
  if (b.decoded) info.push(b.decoded + '-decoded');
  parts.push(el('p', { class: 'note' }, info.join(' · ')));
  if (b.truncated) {
    parts.push(el('p', { class: 'note warn truncated' }, 'Showing the first ' + fmtBytes(b.captured) + ' of ' + fmtBytes(b.size) + ' (the inspector\'s body limit).'));
  }
  parts.push(el('pre', { class: 'body ' + b.kind }, b.display));
  return el('div', { class: 'body-wrap ' + which }, ...parts);
}

function renderDetail(d) {
  const statusCls = 's' + Math.floor(d.status / 100);
  const head = el('div', { class: 'detail-head' },
    el('strong', { class: 'method' }, d.method),
    el('span', { class: 'path' }, d.path),
    el('span', { class: 'status ' + statusCls }, statusLabel(d)),
    el('span', { class: 'meta' }, d.done ? fmtDuration(d.duration_ms) : 'in progress'),
    el('span', { class: 'meta' }, '#' + d.id + (d.replay_of ? ' (replay of #' + d.replay_of + ')' : '')),
    el('span', { class: 'actions' },
      el('button', { id: 'replay', type: 'button', class: 'primary', title: 'Send this request to the local app again', onclick: () => replay(d.id, {}) }, 'Replay'),
      el('button', { id: 'edit-replay', type: 'button', title: 'Change the request, then send it', onclick: () => openEditor(d) }, 'Edit and replay'),
    ),
  );
  const meta = el('p', { class: 'note' },
    'Tunnel ' + d.tunnel + ' · ' + d.proto + ' · from ' + d.remote_addr + ' · Host ' + d.host + ' · ' + new Date(d.start).toLocaleString());
  const err = d.error ? el('p', { class: 'error' }, d.error) : null;
  return el('div', { id: 'detail', dataset: { id: String(d.id) } },
    head, meta, err,
    el('p', { id: 'replay-result', class: 'note' }),
    el('h2', {}, 'Request'),
    el('h3', {}, 'Headers'), headersTable(d.request.headers),
    el('h3', {}, 'Body'), bodyView(d.request.body, 'request'),
    el('h2', {}, 'Response'),
    el('h3', {}, 'Headers'), headersTable(d.response.headers),
    el('h3', {}, 'Body'), bodyView(d.response.body, 'response'),
  );
}

// ---- replay ----

function decodeBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function openEditor(d) {
  const old = $('#replay-form');
  if (old) { old.remove(); return; }
  const lines = [];
  for (const name of Object.keys(d.request.headers || {}).sort()) {
    for (const v of d.request.headers[name]) lines.push(name + ': ' + v);
  }
  const b = d.request.body;
  const binary = b.kind === 'binary';
  const bodyText = binary ? b.base64 : new TextDecoder().decode(decodeBase64(b.base64));
  const form = el('form', { id: 'replay-form' },
    el('label', { for: 'replay-method' }, 'Method'),
    el('input', { id: 'replay-method', value: d.method }),
    el('label', { for: 'replay-path' }, 'Path'),
    el('input', { id: 'replay-path', value: d.path }),
    el('label', { for: 'replay-headers' }, 'Headers'),
    el('textarea', { id: 'replay-headers', rows: String(Math.min(12, lines.length + 1)) }),
    el('label', { for: 'replay-body' }, binary ? 'Body (base64)' : 'Body'),
    el('textarea', { id: 'replay-body', rows: '8' }),
    el('div', { class: 'buttons' },
      el('button', { id: 'replay-send', type: 'submit', class: 'primary' }, 'Send'),
      el('button', { type: 'button', onclick: () => form.remove() }, 'Cancel'),
      b.truncated ? el('span', { class: 'note warn' }, 'The recorded body was cut: what you send is what is in the box.') : null,
    ),
  );
  $('#replay-headers', form).value = lines.join('\n');
  $('#replay-body', form).value = bodyText;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const headers = {};
    for (const line of $('#replay-headers', form).value.split('\n')) {
      const i = line.indexOf(':');
      if (i <= 0) continue;
      const name = line.slice(0, i).trim(), value = line.slice(i + 1).trim();
      (headers[name] = headers[name] || []).push(value);
    }
    const edit = {
      method: $('#replay-method', form).value,
      path: $('#replay-path', form).value,
      headers,
    };
    const body = $('#replay-body', form).value;
    if (binary) edit.body_base64 = body.replace(/\s+/g, ''); else edit.body = body;
    replay(d.id, edit);
  });
  $('.detail-head').after(form);
}

async function replay(id, edit) {
  const out = $('#replay-result');
  out.dataset.for = String(id);
  out.className = 'note';
  out.textContent = 'Replaying…';
  try {
    const r = await fetch('/api/requests/' + id + '/replay', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(edit),
    });
    const res = await r.json();
    if (!r.ok) throw new Error(res.error || r.statusText);
    out.replaceChildren('Replayed as ', el('a', { class: 'replay-link', onclick: () => select(res.id) }, '#' + res.id),
      ': ' + res.status + (statusText[res.status] ? ' ' + statusText[res.status] : ''));
    const form = $('#replay-form');
    if (form) form.remove();
  } catch (err) {
    out.className = 'note error';
    out.textContent = 'Replay failed: ' + err.message;
  }
}

// ---- status header ----

let statusTimer = 0;
function refreshStatusSoon() {
  clearTimeout(statusTimer);
  statusTimer = setTimeout(pollStatus, 300);
}

async function pollStatus() {
  clearTimeout(statusTimer);
  try {
    const r = await fetch('/api/status');
    if (r.ok) {
      const st = await r.json();
      const s = $('#state');
      s.textContent = st.state;
      s.className = 'state ' + st.state;
      $('#server').textContent = st.server || '';
      $('#latency').textContent = st.latency_ms ? 'latency ' + st.latency_ms.toFixed(1) + ' ms' : '';
      const rows = (st.tunnels || []).map((t) => el('div', { class: 'tunnel' },
        'Forwarding ' + (t.public_url || '(not bound yet)') + ' -> ' + t.target,
        el('span', { class: 'counts' }, t.requests + ' requests · ' + t.open_connections + ' open · ' + t.errors + ' errors · in ' + fmtBytes(t.bytes_in) + ' · out ' + fmtBytes(t.bytes_out))));
      $('#tunnels').replaceChildren(...rows);
    }
  } catch (err) {
    const s = $('#state');
    s.textContent = 'client not answering';
    s.className = 'state stopped';
  }
  statusTimer = setTimeout(pollStatus, 2000);
}

document.addEventListener('DOMContentLoaded', () => {
  $('#filter').addEventListener('input', (e) => { state.filter = e.target.value.trim(); renderList(); });
  $('#clear').addEventListener('click', async () => {
    await fetch('/api/requests', { method: 'DELETE' });
    state.selected = 0;
    $('#detail-pane').replaceChildren(el('p', { class: 'hint' }, 'Select a request to see its headers and bodies, and to replay it.'));
  });
  connect();
  pollStatus();
});
