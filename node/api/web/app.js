// GridChain node page: hash routes for every view (shareable, back/forward work), the key
// held in this page's memory only, and live refresh from /v1/events. Plain ES modules over the
// node's own REST API; no build step, nothing fetched from elsewhere.
"use strict";
import { chain, connectEvents, refreshChain } from "/web/api.js";
import { $, esc } from "/web/ui.js";
import * as explorer from "/web/view_explorer.js";
import * as records from "/web/view_records.js";
import * as me from "/web/view_me.js";
import * as market from "/web/view_market.js";
import * as trace from "/web/view_trace.js";
import * as grid from "/web/view_grid.js";
import * as operator from "/web/view_operator.js";
import { session } from "/web/session.js";

// route pattern -> [nav item, title, mount(main, params, query)]
const ROUTES = [
  [/^$/, "explorer", "Explorer", explorer.mount],
  [/^me$/, "me", "My account", me.mount],
  [/^market$/, "market", "Market", market.mount],
  [/^slot\/(\d+)$/, "market", "Slot", market.mountSlot],
  [/^trade\/(\d+-\d+)$/, "market", "Trade trace", trace.mount],
  [/^grid$/, "grid", "Grid operator", grid.mount],
  [/^operator$/, "operator", "Operator", operator.mount],
  [/^block\/(\d+)$/, "explorer", "Block", records.mountBlock],
  [/^tx\/([0-9a-f]{64})$/, "explorer", "Transaction", records.mountTx],
  [/^order\/([0-9a-f]{64})$/, "explorer", "Order", records.mountOrder],
  [/^account\/([0-9a-f]{40})$/, "explorer", "Account", records.mountAccount],
];

let current = null;

function parseHash() {
  const h = location.hash.replace(/^#\/?/, "");
  const [path, q] = h.split("?");
  return { path, query: new URLSearchParams(q ?? "") };
}

async function route() {
  if (current?.dispose) current.dispose();
  current = null;
  const { path, query } = parseHash();
  const main = $("#main");
  const found = ROUTES.find(([re]) => re.test(path));
  if (!found) {
    main.innerHTML = `<h2>Not found</h2><p>No view at <code>${esc(location.hash)}</code>. <a href="#/">Explorer</a></p>`;
    return;
  }
  const [re, nav, title, mount] = found;
  document.querySelectorAll("nav a").forEach((a) => (a.dataset.nav === nav ? a.setAttribute("aria-current", "page") : a.removeAttribute("aria-current")));
  document.title = `${title} · GridChain`;
  try {
    if (!chain.status) await refreshChain();
    main.dataset.view = nav;
    main.dataset.ready = "";
    const view = await mount(main, path.match(re).slice(1), query);
    current = view ?? null;
    main.dataset.view = nav;
    main.dataset.hash = location.hash;
    main.dataset.ready = "1";
  } catch (e) {
    main.innerHTML = `<h2>${esc(title)}</h2><p class="msg err" role="alert">${esc(e.message)}</p>`;
  }
}

function showHeader() {
  const s = chain.status;
  if (s) $("#node-name").textContent =
    `${s.node_name} (${s.role}) · ${s.node_role || "validator"} · epoch ${s.epoch ?? 0} · ${s.chain_id} · height ${s.height}`;
  $("#key-name").textContent = session.key ? `key ${session.key.address.slice(0, 8)}…` : "";
}

let pending = null;
function onEvent(ev) {
  if (current?.onEvent) current.onEvent(ev);
  if (ev.type !== "block" || pending) return;
  pending = setTimeout(async () => {
    pending = null;
    try { await refreshChain(); showHeader(); if (current?.refresh) await current.refresh(); } catch (e) { console.warn(e); }
  }, 800);
}

session.onChange = showHeader;
window.addEventListener("hashchange", route);
connectEvents(onEvent, (on) => { const l = $("#live"); l.classList.toggle("on", on); l.textContent = on ? "live" : "offline"; });
refreshChain().then(showHeader).catch((e) => console.warn(e)).finally(route);
