// The switchboard console: polls /@console/api/* once a second and draws the
// panels. Every value that comes from a client (ids, users, payloads,
// reasons) is put into the page as text (textContent / text nodes), never
// parsed as HTML. No libraries, no network beyond this origin.
'use strict';

(function () {
  const API = '/@console/api';
  const TOKEN = document.querySelector('meta[name="console-token"]').content;
  const $ = (id) => document.getElementById(id);
  const COLORS = ['#3366cc', '#dc3912', '#ff9900', '#109618', '#990099', '#0099c6',
    '#dd4477', '#66aa00', '#b82e2e', '#316395', '#994499', '#22aa99', '#aaaa11', '#6633cc'];

  let selectedSession = null;
  let busy = false;

  // An element with text children only: strings become text nodes.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function fill(parent, nodes) {
    parent.replaceChildren(...nodes);
  }

  function time(ms) {
    if (!ms) return '';
    return new Date(ms).toLocaleTimeString();
  }

  function ago(ms) {
    if (!ms) return '';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return s < 60 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
  }

  async function getJson(path) {
    const r = await fetch(API + path, { credentials: 'same-origin', cache: 'no-store' });
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return r.json();
  }

  async function act(path, body) {
    const r = await fetch(API + path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-switchboard-console-token': TOKEN },
      body: JSON.stringify(body || {}),
    });
    let answer = {};
    try { answer = await r.json(); } catch (_) { /* no body */ }
    $('notice').textContent = r.ok
      ? (answer.summary || (answer.disconnected && 'disconnected ' + answer.disconnected) ||
         (answer.deleted && 'deleted ' + answer.deleted) || 'done')
      : 'refused: ' + (answer.error || ('HTTP ' + r.status));
    await refresh();
    return answer;
  }

  // ---- plots ---------------------------------------------------------------

  // Draws `series` ([{name, color, values}]) of numbers-or-null over the
  // last 300 s on `canvas`; says so when no value exists at all.
  function plot(canvas, series, samples) {
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height, left = 34, bottom = 14;
    ctx.clearRect(0, 0, w, h);
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = '#777';
    const any = series.some((s) => s.values.some((v) => v !== null && v !== undefined));
    if (!any) {
      ctx.fillText(samples.length ? 'not available in this process' : 'waiting for samples…', left, h / 2);
      return;
    }
    let max = 0;
    for (const s of series) for (const v of s.values) if (v > max) max = v;
    max = max <= 0 ? 1 : max * 1.1;
    const now = Date.now();
    const x = (t) => left + (w - left - 4) * (1 - Math.min(300000, Math.max(0, now - t)) / 300000);
    const y = (v) => (h - bottom) - (h - bottom - 4) * (v / max);
    ctx.strokeStyle = '#e4e8f0';
    ctx.beginPath();
    for (const f of [0, 0.5, 1]) { ctx.moveTo(left, y(max * f)); ctx.lineTo(w, y(max * f)); }
    ctx.stroke();
    ctx.fillText(fmt(max), 2, 10);
    ctx.fillText('0', 2, h - bottom);
    ctx.fillText('-5 min', left, h - 2);
    ctx.fillText('now', w - 22, h - 2);
    for (const s of series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        const px = x(samples[i].t), py = y(v);
        if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        pen = true;
      });
      ctx.stroke();
      // A point without neighbours draws no line: mark it.
      ctx.fillStyle = s.color;
      s.values.forEach((v, i) => {
        const gap = (j) => j < 0 || j >= s.values.length || s.values[j] === null || s.values[j] === undefined;
        if (v !== null && v !== undefined && gap(i - 1) && gap(i + 1)) {
          ctx.fillRect(x(samples[i].t) - 1.5, y(v) - 1.5, 3, 3);
        }
      });
    }
  }

  function fmt(v) {
    return v >= 100 ? String(Math.round(v)) : v.toFixed(v >= 10 ? 1 : 2);
  }

  function drawPlots(m) {
    const s = m.samples;
    const col = (k) => s.map((x) => x[k]);
    plot($('plot-messages-in'), [{ color: COLORS[0], values: col('messagesIn') }], s);
    plot($('plot-deliveries'), [{ color: COLORS[3], values: col('deliveries') }], s);
    plot($('plot-latency'), [
      { color: COLORS[0], values: col('deliveryP50Ms') },
      { color: COLORS[1], values: col('deliveryP99Ms') },
    ], s);
    plot($('plot-pruned'), [{ color: COLORS[4], values: col('pruned') }], s);
    plot($('plot-throttled'), [{ color: COLORS[1], values: col('throttled') }], s);
    const reasons = [...new Set(s.flatMap((x) => Object.keys(x.rejections)))].sort();
    const series = reasons.map((r, i) => ({
      name: r,
      color: COLORS[i % COLORS.length],
      values: s.map((x) => x.rejections[r] || 0),
    }));
    plot($('plot-rejections'), series.length ? series : [{ color: '#ccc', values: s.map(() => 0) }], s);
    fill($('rejection-legend'), series.map((x) => {
      const sw = el('span', { class: 'swatch' });
      sw.style.background = x.color;
      return el('li', {}, sw, x.name);
    }));
  }

  // ---- panels --------------------------------------------------------------

  function counts(list, obj) {
    const entries = Object.entries(obj || {}).sort((a, b) => b[1] - a[1]);
    fill(list, entries.map(([k, n]) => el('li', {}, el('span', { class: 'mono' }, k), ': ' + n)));
  }

  function drawConnections(c) {
    $('conn-total').textContent = String(c.total);
    counts($('by-stage'), c.byStage);
    counts($('by-session'), c.bySession);
    $('conn-note').textContent = [
      c.sessionsUnavailable ? 'sessions and users ' + c.sessionsUnavailable : '',
      c.truncated ? 'showing ' + c.items.length + ' of ' + c.matched + ' matches' : '',
    ].filter(Boolean).join(' — ');
    fill($('connections').tBodies[0], c.items.map((x) => el('tr', { dataset: { id: x.connectionId } },
      el('td', { class: 'mono' }, x.connectionId),
      el('td', {}, x.userId || ''),
      el('td', { class: 'mono' }, x.sessionId || ''),
      el('td', { class: 'mono' }, x.sourceIp),
      el('td', {}, x.stage),
      el('td', {}, time(x.connectedAt)),
      el('td', {}, ago(x.lastActiveAt)),
      el('td', {}, x.open
        ? el('button', { type: 'button', class: 'disconnect',
            onclick: () => act('/connections/' + encodeURIComponent(x.connectionId) + '/disconnect') }, 'disconnect')
        : 'connecting'),
    )));
  }

  function drawSessions(s) {
    $('sessions-note').textContent = s.available ? '' : s.reason;
    const items = s.available ? s.items : [];
    fill($('sessions').tBodies[0], items.map((x) => {
      const tr = el('tr', { dataset: { session: x.sessionId }, class: x.sessionId === selectedSession ? 'selected' : '' },
        el('td', { class: 'mono' }, x.sessionId),
        el('td', {}, x.members),
        el('td', {}, x.stored),
        el('td', {}, time(x.lastMessageAt)));
      tr.addEventListener('click', () => { selectedSession = x.sessionId; refresh(); });
      return tr;
    }));
  }

  function drawHistory(h) {
    const box = $('history');
    if (!h || !h.available) { box.hidden = true; return; }
    box.hidden = false;
    $('history-session').textContent = h.sessionId;
    // `lastSeq` is shown only once stored messages carry a `seq`.
    $('history-seq').textContent = h.lastSeq === null || h.lastSeq === undefined ? '' : '(last seq ' + h.lastSeq + ')';
    fill($('history-list'), h.messages.map((m) => el('li', {},
      time(m.receivedAt) + ' ',
      el('strong', {}, (m.sender && (m.sender.userId || m.sender.connectionId)) || '?'),
      ': ',
      el('span', { class: 'mono' }, JSON.stringify(m.payload)))));
  }

  function drawQueue(q) {
    $('queue-note').textContent = q.available ? '' : q.reason;
    for (const [id, part] of [['queue-inbound', q.inbound], ['queue-dlq', q.dlq]]) {
      const box = $(id);
      const d = part ? part.depth : null;
      fill(box.querySelector('dl'), d ? [
        el('dt', {}, 'visible'), el('dd', { class: 'visible' }, d.visible),
        el('dt', {}, 'in flight'), el('dd', { class: 'in-flight' }, d.inFlight),
        el('dt', {}, 'delayed'), el('dd', { class: 'delayed' }, d.delayed),
      ] : []);
      fill(box.querySelector('.groups'), d ? d.busiestGroups.map((g) =>
        el('li', {}, el('span', { class: 'mono' }, g.group), ': ' + g.messages)) : []);
    }
  }

  function drawDeadLetters(d) {
    $('dlq-note').textContent = d.available ? '' : d.reason;
    $('dlq-count').textContent = String(d.available ? d.total : 0);
    $('replay-all').disabled = !d.available || d.total === 0;
    const items = d.available ? d.items : [];
    fill($('dead-letters').tBodies[0], items.map((m) => {
      const reason = m.attributes.reason || m.attributes.errorType || '(redrive: maxReceiveCount)';
      const other = Object.entries(m.attributes).filter(([k]) => k !== 'reason')
        .map(([k, v]) => el('div', {}, el('span', { class: 'mono' }, k), ' = ', v));
      const replayLabel = m.replayTakes > 1 ? 'replay (+' + (m.replayTakes - 1) + ' earlier of its group)' : 'replay';
      return el('tr', { dataset: { id: m.messageId } },
        el('td', { class: 'mono' }, m.messageId),
        el('td', { class: 'mono' }, m.group),
        el('td', { class: 'reason' }, reason),
        el('td', {}, ...other),
        el('td', { class: 'body mono' }, m.body + (m.bodyTruncated ? ' … (' + m.bodyBytes + ' bytes)' : '')),
        el('td', {}, m.receiveCount + (m.inFlight ? ' (in flight)' : '')),
        el('td', {},
          el('button', { type: 'button', class: 'replay',
            onclick: () => act('/dead-letters/replay', { messageId: m.messageId }) }, replayLabel),
          ' ',
          el('button', { type: 'button', class: 'delete',
            onclick: () => act('/dead-letters/' + encodeURIComponent(m.messageId) + '/delete') }, 'delete')));
    }));
  }

  // ---- loop ----------------------------------------------------------------

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const q = encodeURIComponent($('conn-search').value.trim());
      const [conns, sessions, queue, dlq, metrics] = await Promise.all([
        getJson('/connections?q=' + q),
        getJson('/sessions'),
        getJson('/queue'),
        getJson('/dead-letters'),
        getJson('/metrics'),
      ]);
      const history = selectedSession !== null && sessions.available
        ? await getJson('/sessions/' + encodeURIComponent(selectedSession) + '/history')
        : null;
      drawConnections(conns);
      drawSessions(sessions);
      drawHistory(history);
      drawQueue(queue);
      drawDeadLetters(dlq);
      drawPlots(metrics);
      const s = $('status');
      s.dataset.state = 'live';
      s.textContent = 'live, ' + new Date().toLocaleTimeString();
    } catch (e) {
      const s = $('status');
      s.dataset.state = 'error';
      s.textContent = 'cannot reach the console API: ' + e.message;
    } finally {
      busy = false;
    }
  }

  async function start() {
    try {
      const o = await getJson('/overview');
      $('mode').textContent = o.mode + ' — stages ' + o.stages.join(', ');
    } catch (_) { /* the status line says it */ }
    $('conn-search').addEventListener('input', refresh);
    $('replay-all').addEventListener('click', () => act('/dead-letters/replay', {}));
    await refresh();
    setInterval(refresh, 1000);
  }

  start();
})();
