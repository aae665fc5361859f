// Switchboard demo client: plain WebSocket API, no build step.
// Joins a session (ws://host/{stage}?session=...), asks for history on the
// first open and resumes from the last seq it holds on every reconnect (so
// no message is missed, and a gap is reported), shows live messages and who
// is online (presence, join/leave), drops duplicates by id (delivery is
// at-least-once), and reconnects with exponential backoff and jitter.
"use strict";

const params = new URLSearchParams(location.search);
const stage = params.get("stage") || "dev";
const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), join: $("join"), session: $("session"), name: $("name"),
  joinButton: $("join-button"), leave: $("leave-button"), messages: $("messages"),
  compose: $("compose"), text: $("text"), send: $("send"), wsUrl: $("ws-url"),
  notice: $("notice"), members: $("member-list"), memberCount: $("member-count"),
};

ui.session.value = params.get("session") || localStorage.getItem("switchboard.session") || "lobby";
ui.name.value = params.get("name") || localStorage.getItem("switchboard.name") || "";

let socket = null;
let wanted = false;       // the user wants to be connected
let attempt = 0;          // reconnect attempts since the last open
let reconnectTimer = null;
const seen = new Set();   // message ids already shown
let lastSeq = 0;          // the highest seq held: where a resume starts
let joined = false;       // history was asked for once in this session
let recovery = null;      // the resume under way: {count, complete}
const members = new Map(); // connectionId -> {userId, connectedAt}

function setStatus(state, text) {
  ui.status.className = "status " + state;
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  const open = state === "open";
  ui.text.disabled = !open;
  ui.send.disabled = !open;
}

function wsUrl(session) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/${encodeURIComponent(stage)}?session=${encodeURIComponent(session)}`;
}

function who(frame) {
  const p = frame.payload || {};
  if (typeof p.name === "string" && p.name) return p.name;
  if (frame.from && frame.from.userId) return frame.from.userId;
  return frame.from ? frame.from.connectionId.slice(0, 6) : "?";
}

function show(frame, kind) {
  if (typeof frame.seq === "number" && frame.seq > lastSeq) lastSeq = frame.seq;
  if (frame.id && seen.has(frame.id)) return false;   // a redelivery
  if (frame.id) seen.add(frame.id);
  const li = document.createElement("li");
  li.className = "message " + kind;
  li.dataset.id = frame.id || "";
  const whoEl = document.createElement("span");
  whoEl.className = "who";
  whoEl.textContent = who(frame);
  const textEl = document.createElement("span");
  textEl.className = "text";
  const p = frame.payload;
  textEl.textContent = p && typeof p.text === "string" ? p.text : JSON.stringify(p);
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = frame.sentAt ? new Date(frame.sentAt).toLocaleTimeString() : "";
  li.append(whoEl, textEl, when);
  ui.messages.append(li);
  ui.messages.parentElement.scrollTop = ui.messages.parentElement.scrollHeight;
  return true;
}

function notify(text, kind) {
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
  const li = document.createElement("li");
  li.className = "notice " + kind;
  li.textContent = text;
  ui.messages.append(li);
}

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

function renderMembers() {
  ui.memberCount.textContent = String(members.size);
  ui.members.replaceChildren(...[...members].map(([id, m]) => {
    const li = document.createElement("li");
    li.dataset.connectionId = id;
    li.textContent = m.userId || id.slice(0, 6);
    return li;
  }));
}

function onResumed(frame) {
  for (const m of frame.messages) {
    if (show(m, "resumed")) recovery.count += 1;
  }
  if (!frame.complete) recovery.complete = false;
  // Cut to fit one WebSocket message: continue from the last seq received.
  if (frame.more) return send({ action: "resume", data: { since: lastSeq } });
  const n = recovery.count;
  notify(`reconnected — ${n} missed message${n === 1 ? "" : "s"} recovered`, "recovered");
  if (!recovery.complete) notify("some older messages are no longer available", "gap");
  recovery = null;
}

function onPresenceEvent(frame) {
  if (frame.type === "join") {
    members.set(frame.connectionId, { userId: frame.userId, connectedAt: frame.at });
  } else {
    members.delete(frame.connectionId);
  }
  renderMembers();
  const name = frame.userId || frame.connectionId.slice(0, 6);
  notify(`${name} ${frame.type === "join" ? "joined" : "left"}`, frame.type);
}

function showError(text) {
  const li = document.createElement("li");
  li.className = "error";
  li.textContent = text;
  ui.messages.append(li);
}

function onFrame(event) {
  let frame;
  try { frame = JSON.parse(event.data); } catch { return showError("unreadable frame: " + event.data); }
  switch (frame.type) {
    case "message": return show(frame, "live");
    case "history": return frame.messages.forEach((m) => show(m, "history"));
    case "resumed": return recovery ? onResumed(frame) : undefined;
    case "presence":
      members.clear();
      frame.members.forEach((m) => members.set(m.connectionId, m));
      return renderMembers();
    case "join": case "leave": return onPresenceEvent(frame);
    case "error":
      if (recovery && frame.code === "bad_request") {
        // The store no longer knows our seq (it was reset): start over.
        recovery = null;
        lastSeq = 0;
        return send({ action: "history", data: { limit: 50 } });
      }
      return showError(`${frame.code}: ${frame.message}`);
    default:
      if (frame.message) return showError(frame.message);   // API Gateway's own frames
  }
}

function connect() {
  clearTimeout(reconnectTimer);
  const session = ui.session.value.trim();
  const url = wsUrl(session);
  ui.wsUrl.textContent = url;
  setStatus(attempt ? "reconnecting" : "connecting", attempt ? `reconnecting (try ${attempt + 1})` : "connecting");
  const ws = new WebSocket(url);
  socket = ws;
  ws.onopen = () => {
    attempt = 0;
    setStatus("open", `connected to ${session}`);
    if (joined) {
      // A reconnect: exactly what was missed, then the live stream.
      recovery = { count: 0, complete: true };
      ws.send(JSON.stringify({ action: "resume", data: { since: lastSeq } }));
    } else {
      joined = true;
      ws.send(JSON.stringify({ action: "history", data: { limit: 50 } }));
    }
    ws.send(JSON.stringify({ action: "presence" }));
  };
  ws.onmessage = onFrame;
  ws.onclose = (e) => {
    if (socket !== ws) return;
    socket = null;
    if (!wanted) return setStatus("closed", "not connected");
    // Exponential backoff with jitter: 0.5 s, 1 s, 2 s, ... up to 30 s.
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    setStatus("reconnecting", `closed (${e.code}); reconnecting in ${(delay / 1000).toFixed(1)} s`);
    reconnectTimer = setTimeout(connect, delay);
  };
}

ui.join.addEventListener("submit", (e) => {
  e.preventDefault();
  if (!ui.join.reportValidity()) return;
  localStorage.setItem("switchboard.session", ui.session.value.trim());
  localStorage.setItem("switchboard.name", ui.name.value.trim());
  if (socket) { wanted = false; socket.close(1000); }
  ui.messages.replaceChildren();
  seen.clear();
  lastSeq = 0;
  joined = false;
  members.clear();
  renderMembers();
  wanted = true;
  attempt = 0;
  ui.leave.disabled = false;
  connect();
});

ui.leave.addEventListener("click", () => {
  wanted = false;
  clearTimeout(reconnectTimer);
  if (socket) socket.close(1000);
  ui.leave.disabled = true;
  setStatus("closed", "not connected");
});

ui.compose.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.text.value;
  if (!text.trim() || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ action: "sendMessage", data: { text, name: ui.name.value.trim() || undefined } }));
  ui.text.value = "";
});

if (params.get("autojoin") === "1") ui.join.requestSubmit();
