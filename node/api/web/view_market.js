// Market view: the current slot's supply and demand step curves with the clearing point,
// depth of the open slots, clearing price and volume over time, and recent trades across
// slots with paging (the page's cursor is in the URL, so a page can be shared). The slot
// view shows one slot's curves, record, trades and settlement lines.
"use strict";
import { chain, get } from "/web/api.js";
import { lines, pairedBars, supplyDemand } from "/web/charts.js";
import { $, cards, fmt, html, link, table, time } from "/web/ui.js";
import { SETTLEMENT_HEADERS, settlementRows, tradeRows } from "/web/view_records.js";

/** The slot named in the URL, else the latest that traded, else the latest with orders, else the current one. */
function focusSlot(history, query) {
  if (/^\d+$/.test(query.get("slot") ?? "")) return Number(query.get("slot"));
  const traded = history.filter((h) => h.volume_wh > 0);
  const ordered = history.filter((h) => h.order_count > 0);
  return (traded.at(-1) ?? ordered.at(-1))?.slot ?? chain.status.market.current_slot;
}

/** Links that show another slot's curves, keeping the rest of the URL. */
function slotPicker(history, shown, query) {
  const m = chain.status.market;
  const slots = [...new Set([...history.slice(-8).map((h) => h.slot), m.current_slot, m.current_slot + 1, m.current_slot + 2])];
  return slots.map((s) => {
    const q = new URLSearchParams(query);
    q.set("slot", s);
    return s === shown ? html`<b aria-current="true">${s}</b> ` : html`<a href="#/market?${q.toString()}">${s}</a> `;
  });
}

async function curves(slot) {
  const [book, record] = await Promise.all([get(`/v1/market/slots/${slot}/orders`), get(`/v1/market/slots/${slot}`)]);
  return { record, svg: supplyDemand(book.orders, { price: record.price_u_per_wh, volume: record.volume_wh }, slot) };
}

async function depth() {
  const m = chain.status.market;
  const slots = [];
  for (let s = m.current_slot + 1; s <= m.current_slot + 6; s++) slots.push(s);
  const books = await Promise.all(slots.map((s) => get(`/v1/market/slots/${s}/orders`)));
  const open = books.map((b) => {
    const live = b.orders.filter((o) => o.status === "open");
    const sum = (side) => live.filter((o) => o.side === side).reduce((n, o) => n + o.quantity_wh - o.filled_wh, 0);
    return { slot: b.slot, bid: sum("buy"), ask: sum("sell") };
  });
  const top = Math.max(1, ...open.map((o) => Math.max(o.bid, o.ask)));
  return {
    svg: pairedBars("Open quantity per slot: bids and asks", open.map((o) => ({ name: `slot ${o.slot}`, a: o.bid / top, b: o.ask / top })),
      { aName: "bids (Wh, scaled)", bName: "asks (Wh, scaled)" }),
    rows: open.map((o) => [link.slot(o.slot), fmt(o.bid), fmt(o.ask)]),
  };
}

export async function mount(main, _params, query) {
  main.innerHTML = html`<h2>Market</h2><div id="mk-cards"></div>
    <div class="grid2"><section aria-labelledby="h-curves"><h3 id="h-curves">Supply and demand, slot <span id="mk-slot"></span></h3>
      <p class="pager" id="mk-pick" aria-label="show another slot"></p><div id="mk-curves"></div></section>
    <section aria-labelledby="h-depth"><h3 id="h-depth">Depth of open slots</h3><div id="mk-depth"></div></section>
    <section aria-labelledby="h-price"><h3 id="h-price">Clearing price over time</h3><div id="mk-price"></div></section>
    <section aria-labelledby="h-volume"><h3 id="h-volume">Volume over time</h3><div id="mk-volume"></div></section></div>
    <h3>Recent trades</h3><div id="mk-trades"></div>
    <div class="pager"><a id="mk-newest" href="#/market">Newest</a><a id="mk-older" href="#/market">Older trades</a></div>`.s;
  const before = query.get("before");
  const refresh = async () => {
    const m = chain.status.market;
    const history = (await get("/v1/market/history?limit=48")).slots;
    const slot = focusSlot(history, query);
    const [c, d, trades] = await Promise.all([curves(slot), depth(),
      get(`/v1/market/trades?limit=20${before ? `&before=${before}` : ""}`)]);
    $("#mk-cards").innerHTML = cards([["current slot", link.slot(m.current_slot)], ["slot length", `${fmt(m.slot_ms)} ms`],
      ["gate closes", `${fmt(m.gate_lead_ms)} ms before delivery`], ["price range µ/Wh", `${m.p_min}–${m.p_max}`]]).s;
    $("#mk-slot").innerHTML = link.slot(slot).s;
    $("#mk-pick").innerHTML = html`Slots: ${slotPicker(history, slot, query)}`.s;
    $("#mk-curves").innerHTML = c.svg.s;
    $("#mk-depth").innerHTML = d.svg.s + table(["slot", "bids Wh", "asks Wh"], d.rows, { caption: "Open quantity" }).s;
    const priced = history.filter((h) => h.price_u_per_wh !== null);
    $("#mk-price").innerHTML = lines("Clearing price per slot", [{ name: "price µ/Wh", points: priced.map((h) => [h.slot, h.price_u_per_wh]) }],
      { xLabel: "slot", yLabel: "µ/Wh" }).s;
    $("#mk-volume").innerHTML = lines("Cleared volume per slot", [{ name: "volume Wh", points: history.map((h) => [h.slot, h.volume_wh]) }],
      { xLabel: "slot", yLabel: "Wh" }).s;
    $("#mk-trades").innerHTML = table(["trade (trace)", "slot", "buyer", "seller", "Wh", "price µ/Wh"], tradeRows(trades.trades.slice().reverse()),
      { caption: before ? `Trades before ${before}` : "Newest trades", id: "recent-trades" }).s;
    const older = $("#mk-older");
    older.hidden = !trades.next;
    if (trades.next) {
      const q = new URLSearchParams(query);
      q.set("before", trades.next);
      older.href = `#/market?${q.toString()}`;
    }
  };
  await refresh();
  return { refresh };
}

export async function mountSlot(main, [slotText]) {
  const slot = Number(slotText);
  main.innerHTML = html`<h2>Slot ${slot}</h2><div id="sl-cards"></div><div id="sl-curves"></div><div id="sl-trades"></div><div id="sl-settle"></div>
    <p class="pager">${slot > 0 ? link.slot(slot - 1) : ""} · ${link.slot(slot + 1)}</p>`.s;
  const refresh = async () => {
    const c = await curves(slot);
    const r = c.record;
    $("#sl-cards").innerHTML = cards([["status", r.status], ["gate closes", time(r.gate_close_ms)], ["delivery", `${time(r.start_ms)}`],
      ["settles", time(r.settle_time_ms)], ["orders", fmt(r.order_count)], ["open orders", fmt(r.open_orders)],
      ["price µ/Wh", fmt(r.price_u_per_wh)], ["volume Wh", fmt(r.volume_wh)]]).s;
    $("#sl-curves").innerHTML = c.svg.s;
    $("#sl-trades").innerHTML = table(["trade (trace)", "slot", "buyer", "seller", "Wh", "price µ/Wh"], tradeRows(r.trades), { caption: "Trades" }).s;
    $("#sl-settle").innerHTML = table(["account", ...SETTLEMENT_HEADERS.slice(1)],
      settlementRows(r.settlements).map((row, i) => [link.account(r.settlements[i].account), ...row.slice(1)]), { caption: "Settlement lines" }).s;
  };
  await refresh();
  return { refresh };
}
