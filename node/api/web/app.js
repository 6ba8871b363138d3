// GridChain node page: plain JS over the node's own REST API (no build step).
"use strict";
const $ = (s) => document.querySelector(s);
const short = (h) => (h ? String(h).slice(0, 12) + "…" : "");
const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

async function api(path) {
  const r = await fetch(path);
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${r.status}`);
  return body;
}

let market = null;

function row(cells) {
  return "<tr>" + cells.map(([v, cls]) => `<td${cls ? ` class="${cls}"` : ""}>${esc(v)}</td>`).join("") + "</tr>";
}

async function refreshStatus() {
  const s = await api("/v1/status");
  market = s.market;
  const nodeRole = s.node_role || "validator";
  $("#node-name").textContent = `${s.node_name} (${s.role}) · ${nodeRole} · epoch ${s.epoch ?? 0} · ${s.chain_id}`;
  $("#val-set").textContent = `Validator set of epoch ${s.epoch ?? 0}, which this ${nodeRole} verifies every block against: ` +
    (s.validators || []).map((v) => `${v.index} ${v.name} ${short(v.public_key)}`).join(" · ");
  const cards = [["node role", nodeRole], ["epoch", s.epoch ?? 0], ["height", s.height], ["round", s.round],
    ["leader", s.leader], ["peers", s.peers],
    ["syncing", s.syncing], ["mempool", s.mempool_size], ["state root", short(s.state_root)]];
  $("#status-cards").innerHTML = cards.map(([k, v]) => `<div class="card"><span>${esc(k)}</span><b>${esc(v ?? "–")}</b></div>`).join("");
  return s;
}

async function refreshBlocks(height) {
  const rows = [];
  for (let h = height; h > 0 && h > height - 10; h--) {
    try {
      const b = await api(`/v1/blocks/${h}`);
      rows.push(row([[b.height], [b.round], [b.author], [b.tx_count],
        [new Date(b.timestamp_ms).toLocaleTimeString()], [short(b.block_id), "h"], [short(b.state_root), "h"]]));
    } catch (e) { break; }
  }
  $("#blocks tbody").innerHTML = rows.join("");
}

async function refreshMarket() {
  if (!market) return;
  $("#slot-ms").textContent = fmt(market.slot_ms);
  $("#gate-ms").textContent = fmt(market.gate_lead_ms);
  $("#cur-slot").textContent = market.current_slot;
  const rows = [];
  let trades = [];
  for (let s = Math.max(0, market.current_slot - 4); s <= market.current_slot + 3; s++) {
    const r = await api(`/v1/market/slots/${s}`);
    rows.push(row([[s], [r.status], [new Date(r.gate_close_ms).toLocaleTimeString()], [r.open_orders],
      [fmt(r.price_u_per_wh)], [fmt(r.volume_wh)], [r.trades.length]]));
    trades = trades.concat(r.trades);
  }
  $("#slots tbody").innerHTML = rows.reverse().join("");
  $("#trades tbody").innerHTML = trades.slice(-20).reverse().map((t) => row([[t.slot], [short(t.buyer), "h"],
    [short(t.seller), "h"], [fmt(t.quantity_wh)], [fmt(t.price_u_per_wh)], [short(t.trade_id), "h"]])).join("");
}

async function refreshValidators() {
  const v = (await api("/v1/validators")).validators;
  $("#vals tbody").innerHTML = v.map((x) => row([[x.index], [x.name], [x.role], [fmt(x.credit)],
    [(x.leader_share_ppm / 10000).toFixed(1) + " %"], [fmt(x.blocks_proposed)], [fmt(x.qcs_signed)],
    [fmt(x.failed_rounds)], [fmt(x.rewards_u)]])).join("");
}

async function refresh() {
  try {
    const s = await refreshStatus();
    const tab = document.querySelector(".tab.active").id;
    if (tab === "explorer") await refreshBlocks(s.height);
    if (tab === "market") await refreshMarket();
    if (tab === "validators") await refreshValidators();
  } catch (e) { console.warn(e); }
}

async function lookup(q) {
  q = q.trim();
  let path;
  if (/^\d+$/.test(q)) path = `/v1/blocks/${q}?txs=full`;
  else if (/^[0-9a-f]{40}$/.test(q)) path = `/v1/accounts/${q}`;
  else if (/^[0-9a-f]{64}$/.test(q)) path = `/v1/transactions/${q}`;
  else path = `/v1/trace/trades/${encodeURIComponent(q)}`;
  let out;
  try { out = await api(path); } catch (e) {
    if (/^[0-9a-f]{64}$/.test(q)) {
      try { out = await api(`/v1/trace/trades/${q}`); } catch (e2) { out = {error: String(e)}; }
    } else out = {error: String(e)};
  }
  const pre = $("#lookup-out");
  pre.textContent = JSON.stringify(out, null, 2);
  pre.classList.remove("hidden");
}

function connectEvents() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/events?topics=blocks`);
  let pending = false;
  ws.onopen = () => $("#live").classList.add("on");
  ws.onmessage = () => {
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; refresh(); }, 500);
  };
  ws.onclose = () => { $("#live").classList.remove("on"); setTimeout(connectEvents, 3000); };
}

document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll("nav button, .tab").forEach((x) => x.classList.remove("active"));
  b.classList.add("active");
  $("#" + b.dataset.tab).classList.add("active");
  refresh();
}));
$("#lookup").addEventListener("submit", (e) => { e.preventDefault(); lookup($("#lookup-q").value); });
refresh();
connectEvents();
setInterval(refresh, 10000);
