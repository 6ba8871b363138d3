// Trade trace: the trade's lineage as a timeline (orders → clearing → trade → readings →
// settlement). Each record's Merkle inclusion proof is checked here, in the browser, against
// the receipts root of the block header this page fetches itself (GET /v1/blocks/{h}), not
// the root the trace answer carries; and the record shown must be exactly the decoded leaf, so
// the readable part cannot differ from what was proven. Each record gets a mark: verified or not.
"use strict";
import { get, validatorName } from "/web/api.js";
import { decode, hexToBytes, sameJson } from "/web/codec.js";
import { verifyProof } from "/web/merkle.js";
import { $, esc, fmt, html, link, raw, time } from "/web/ui.js";

const ORDER = ["buy_order", "sell_order", "clearing", "trade", "buyer_reading", "seller_reading", "buyer_settlement", "seller_settlement"];
const TITLE = { buy_order: "Buy order placed", sell_order: "Sell order placed", clearing: "Slot cleared", trade: "Trade",
  buyer_reading: "Buyer's meter reading", seller_reading: "Seller's meter reading",
  buyer_settlement: "Buyer settled", seller_settlement: "Seller settled" };

function summary(role, r) {
  if (!r) return "record not stored on this node";
  const parts = [];
  for (const [k, label] of [["side", "side"], ["price_u_per_wh", "µ/Wh"], ["quantity_wh", "Wh"], ["volume_wh", "volume Wh"],
    ["import_wh", "import Wh"], ["export_wh", "export Wh"], ["contracted_wh", "contracted Wh"], ["metered_wh", "metered Wh"],
    ["imbalance_u", "imbalance µ"], ["proceeds_u", "proceeds µ"]]) {
    if (r[k] !== undefined && r[k] !== null) parts.push(`${label} ${typeof r[k] === "number" ? fmt(r[k]) : r[k]}`);
  }
  return `${r.record ?? role}: ${parts.join(", ")}`;
}

/** The displayed record is the proven leaf, decoded here. */
function shownIsProven(entry) {
  try { return sameJson(decode(hexToBytes(entry.leaf)), entry.record); } catch (e) { return false; }
}

export async function mount(main, [tradeId]) {
  main.innerHTML = html`<h2>Trace of trade ${tradeId}</h2><p id="tr-summary" class="muted"></p><ol class="timeline" id="trace"></ol>`.s;
  const t = await get(`/v1/trace/trades/${tradeId}`);
  const entries = t.lineage.slice().sort((a, b) => ORDER.indexOf(a.role) - ORDER.indexOf(b.role));
  const headers = new Map();
  const header = (h) => { if (!headers.has(h)) headers.set(h, get(`/v1/blocks/${h}`)); return headers.get(h); };
  const items = [];
  let verified = 0;
  for (const e of entries) {
    const h = e.location.height;
    const block = await header(h);
    const ok = e.leaf !== null && e.proof !== null && await verifyProof(e.leaf, e.proof, block.receipts_root)
      && shownIsProven(e);
    if (ok) verified++;
    items.push(html`<li data-role="${e.role}" data-verified="${ok ? "yes" : "no"}">
      <b>${TITLE[e.role] ?? e.role}</b> · block ${link.block(h)} (leaf ${e.location.index}) · ${time(block.timestamp_ms)} · by ${validatorName(block.author)}
      <span class="mark ${raw(ok ? "ok" : "bad")}">${ok ? "✓ verified" : "✗ not verified"}</span>
      <div class="muted">${summary(e.role, e.record)}</div>
      ${e.record?.order_id ? html`<div>order ${link.order(e.record.order_id)}</div>` : ""}
      ${e.record?.owner ? html`<div>owner ${link.account(e.record.owner)}</div>` : ""}
      ${e.record?.account ? html`<div>account ${link.account(e.record.account)}</div>` : ""}</li>`);
  }
  $("#trace").innerHTML = items.map((i) => i.s).join("");
  $("#tr-summary").innerHTML = esc(`${verified} of ${entries.length} records verified against block headers fetched by this page`);
  main.dataset.traceDone = String(entries.length);
}
