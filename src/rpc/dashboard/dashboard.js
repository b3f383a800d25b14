// The noded dashboard: signs in once for a session cookie (POST /session with the
// credentials in the Authorization header), then talks JSON-RPC over one WebSocket: calls
// for snapshots, subscriptions for live changes. Nothing secret is kept in the page.
"use strict";

const RECENT_BLOCKS = 10;
const POLL_MS = 2000;
const BANDWIDTH_POINTS = 150; // 5 minutes at POLL_MS
const RECONNECT_MS = 2000;

const $ = (id) => document.getElementById(id);
let socket = null;
let nextId = 1;
const pending = new Map();
const subscriptions = new Map(); // subscription id -> handler
let pollTimer = null;
let lastTotals = null;
const bandwidth = [];
let recentBlocks = [];
// Events can come by the thousand (a sync, a flood): each kind refreshes at most once per
// DEBOUNCE_MS, never once per event.
const DEBOUNCE_MS = POLL_MS / 4;
const debounced = new Map();
function debounce(key, action) {
  if (!debounced.has(key)) {
    debounced.set(key, setTimeout(() => {
      debounced.delete(key);
      action().catch(() => {});
    }, DEBOUNCE_MS));
  }
}

function setStatus(text, on) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (on ? "on" : "off");
}

function showLogin(message) {
  $("login").hidden = false;
  $("dashboard").hidden = true;
  $("login-error").textContent = message || "";
  setStatus("signed out", false);
}

async function signIn(event) {
  event.preventDefault();
  const input = $("credentials");
  const credentials = input.value.trim();
  input.value = "";
  let response;
  try {
    // btoa takes Latin-1 only: encode as UTF-8 bytes first.
    const bytes = new TextEncoder().encode(credentials);
    const basic = btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
    response = await fetch("/session", {
      method: "POST",
      headers: { Authorization: "Basic " + basic },
      credentials: "same-origin",
    });
  } catch (e) {
    showLogin("cannot reach the node: " + e);
    return;
  }
  if (!response.ok) {
    showLogin(response.status === 429
      ? "too many failed sign-ins from this address; wait a minute"
      : "wrong credentials (HTTP " + response.status + ")");
    return;
  }
  connect();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  let opened = false;
  socket = new WebSocket(scheme + location.host + "/");
  setStatus("connecting", false);
  socket.onopen = async () => {
    opened = true;
    $("login").hidden = true;
    $("dashboard").hidden = false;
    setStatus("live", true);
    pollTimer = setInterval(poll, POLL_MS);
    try {
      await subscribe("subscribe_blocks", onBlock);
      await subscribe("subscribe_peers", onPeer);
      await subscribe("subscribe_transactions", onTransaction);
      await refreshAll();
      await loadRecentBlocks();
    } catch (e) {
      // The connection went (onclose reconnects) or the node refused: the poll carries on.
      setStatus("degraded: " + e.message, false);
    }
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id !== undefined && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(message.error.message)); else resolve(message.result);
    } else if (message.params && subscriptions.has(message.params.subscription)) {
      if (message.params.error) {
        // Dropped (fell behind): start again with fresh snapshots.
        socket.close();
        return;
      }
      subscriptions.get(message.params.subscription)(message.params.result);
    }
  };
  socket.onclose = () => {
    clearInterval(pollTimer);
    for (const { reject } of pending.values()) reject(new Error("connection closed"));
    pending.clear();
    subscriptions.clear();
    if (!opened) {
      showLogin("the node refused the session (expired, or the node restarted): sign in again");
      return;
    }
    setStatus("reconnecting", false);
    setTimeout(connect, RECONNECT_MS);
  };
}

function call(method, params) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params: params || [] }));
  });
}

async function subscribe(method, handler) {
  const id = await call(method);
  subscriptions.set(id, handler);
}

function text(id, value) { $(id).textContent = value; }

function formatBytes(n) {
  if (n < 1024) return n + " B";
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return n.toFixed(1) + " " + units[i];
}

function formatDuration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

function cell(row, value, mono) {
  const td = row.insertCell();
  td.textContent = value;
  if (mono) td.className = "mono";
}

async function refreshInfo() {
  const info = await call("getinfo");
  text("nodeid", info.nodeid);
  text("network", info.network);
  text("version", info.version + " (protocol " + info.protocolversion + ")");
  text("uptime", formatDuration(info.uptime));
  text("p2p", info.p2p_addr || "not listening");
  text("blocks", info.blocks);
  text("headers", info.headers);
  const progress = info.headers > 0 ? Math.min(1, info.blocks / info.headers) : 1;
  $("sync").value = progress;
  text("sync-text", (100 * progress).toFixed(1) + " %");
  text("bestblock", info.bestblockhash);
  text("connections", info.connections_in + " / " + info.connections_out);
}

async function refreshMempool() {
  const pool = await call("getmempoolinfo");
  text("mempool-size", pool.size);
  text("mempool-bytes", formatBytes(pool.bytes));
  text("mempool-future", pool.future);
}

async function refreshPeers() {
  const peers = await call("getpeerinfo");
  const body = $("peers").tBodies[0];
  body.replaceChildren();
  for (const p of peers) {
    const row = body.insertRow();
    row.dataset.nodeid = p.nodeid;
    cell(row, p.id);
    cell(row, p.nodeid, true);
    cell(row, p.addr, true);
    cell(row, p.inbound ? "inbound" : p.connection_type);
    cell(row, p.pingtime == null ? "" : (p.pingtime * 1000).toFixed(1));
    cell(row, formatBytes(p.bytesrecv));
    cell(row, formatBytes(p.bytessent));
    cell(row, p.synced_headers < 0 ? "–" : p.synced_headers);
    cell(row, p.synced_blocks < 0 ? "–" : p.synced_blocks);
    cell(row, p.tls_version);
    row.cells[row.cells.length - 1].title = p.tls_cipher;
  }
  text("peer-count", "(" + peers.length + ")");
}

async function refreshBans() {
  const bans = await call("listbanned");
  const body = $("bans").tBodies[0];
  body.replaceChildren();
  if (bans.length === 0) {
    cell(body.insertRow(), "none");
  }
  for (const b of bans) {
    const row = body.insertRow();
    cell(row, b.address, true);
    cell(row, new Date(b.banned_until * 1000).toLocaleString());
    cell(row, b.reason);
  }
}

async function refreshTotals() {
  const totals = await call("getnettotals");
  text("bytes-recv", formatBytes(totals.totalbytesrecv));
  text("bytes-sent", formatBytes(totals.totalbytessent));
  if (lastTotals) {
    const seconds = Math.max(0.001, (totals.timemillis - lastTotals.timemillis) / 1000);
    bandwidth.push({
      recv: (totals.totalbytesrecv - lastTotals.totalbytesrecv) / seconds,
      sent: (totals.totalbytessent - lastTotals.totalbytessent) / seconds,
    });
    while (bandwidth.length > BANDWIDTH_POINTS) bandwidth.shift();
    drawBandwidth();
  }
  lastTotals = totals;
}

function drawBandwidth() {
  const canvas = $("bandwidth");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const peak = Math.max(1, ...bandwidth.map((b) => Math.max(b.recv, b.sent)));
  g.fillStyle = "#5b6573";
  g.font = "11px sans-serif";
  g.fillText(formatBytes(Math.round(peak)) + "/s", 4, 12);
  const step = canvas.width / (BANDWIDTH_POINTS - 1);
  for (const [key, colour] of [["recv", "#1f77b4"], ["sent", "#d62728"]]) {
    g.strokeStyle = colour;
    g.beginPath();
    bandwidth.forEach((b, i) => {
      const x = (BANDWIDTH_POINTS - bandwidth.length + i) * step;
      const y = canvas.height - 4 - (canvas.height - 20) * b[key] / peak;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

function renderBlocks() {
  const body = $("recent-blocks").tBodies[0];
  body.replaceChildren();
  for (const b of recentBlocks) {
    const row = body.insertRow();
    cell(row, b.height);
    cell(row, b.hash, true);
    cell(row, new Date(b.time * 1000).toLocaleString());
    cell(row, b.txs);
  }
}

async function loadRecentBlocks() {
  const tip = await call("getblockcount");
  const blocks = [];
  for (let h = tip; h >= 0 && h > tip - RECENT_BLOCKS; h--) {
    const hash = await call("getblockhash", [h]);
    const header = await call("getblockheader", [hash]);
    blocks.push({ height: h, hash, time: header.time, txs: header.nTx });
  }
  recentBlocks = blocks;
  renderBlocks();
}

function onBlock(notice) {
  if (notice.event === "connected") {
    recentBlocks = [notice, ...recentBlocks.filter((b) => b.height < notice.height)];
  } else {
    recentBlocks = recentBlocks.filter((b) => b.hash !== notice.hash);
  }
  recentBlocks = recentBlocks.slice(0, RECENT_BLOCKS);
  renderBlocks();
  debounce("info", refreshInfo);
}

function onPeer() {
  debounce("peers", refreshPeers);
  debounce("bans", refreshBans);
}

function onTransaction() {
  debounce("mempool", refreshMempool);
}

async function refreshAll() {
  await Promise.all([refreshInfo(), refreshMempool(), refreshPeers(), refreshBans(), refreshTotals()]);
}

function poll() {
  refreshAll().catch(() => {});
}

$("login-form").addEventListener("submit", signIn);
// A session cookie from earlier (same browser, same node run) signs in without asking.
fetch("/session", { credentials: "same-origin" })
  .then((r) => (r.ok ? connect() : showLogin("")))
  .catch(() => showLogin("cannot reach the node"));
