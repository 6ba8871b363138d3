// One record per view, each at its own shareable URL: a block (authors by name, its
// transactions and receipts), a transaction, an order, an account (its trades and settlements).
"use strict";
import { chain, get, validatorName } from "/web/api.js";
import { cards, fmt, html, link, short, table, time } from "/web/ui.js";

function fields(obj, keys) {
  return table(["field", "value"], keys.map(([k, v]) => [k, v ?? obj[k] ?? "–"]));
}

export async function mountBlock(main, [height]) {
  const b = await get(`/v1/blocks/${height}?txs=full`);
  const receipts = new Map((b.receipts ?? []).map((r) => [r.index, r]));
  const txRows = b.txs.map((t, i) => [i, t.malformed ? "malformed" : t.tx.body.kind,
    t.malformed ? "–" : link.account(t.tx.sender), link.tx(t.hash), receipts.get(i)?.ok === false ? `failed: ${receipts.get(i).code}` : "ok"]);
  main.innerHTML = html`<h2>Block ${b.height}</h2>
    ${fields(b, [["author", validatorName(b.author)], ["round"], ["time", time(b.timestamp_ms)], ["block_id"],
      ["parent", b.height > 1 ? link.block(b.height - 1) : "genesis"], ["state_root"], ["receipts_root"], ["tx_root"],
      ["failed authors", b.failed_authors.map(([r, a]) => `round ${r}: ${validatorName(a)}`).join(", ") || "none"],
      ["next", b.height < chain.status.height ? link.block(b.height + 1) : "latest"]])}
    ${table(["#", "kind", "sender", "tx hash", "receipt"], txRows, { caption: "Transactions", empty: "no transactions" })}`.s;
}

export async function mountTx(main, [hash]) {
  const found = await get(`/v1/transactions/${hash}`).catch(() => null);
  if (!found) {
    const order = await get(`/v1/orders/${hash}`).catch(() => null);
    if (order) { location.replace(`#/order/${hash}`); return; }
    main.innerHTML = html`<h2>Transaction</h2><p class="msg err" role="alert">unknown transaction ${hash}</p>`.s;
    return;
  }
  const r = found.receipt ?? {};
  main.innerHTML = html`<h2>Transaction ${short(hash)}</h2>
    ${fields(found, [["tx_hash"], ["status"], ["block", found.height ? link.block(found.height) : "–"], ["index"],
      ["kind", r.kind], ["sender", link.account(r.sender)], ["code", r.code ?? "–"],
      ["order", r.kind === "place_order" ? link.order(hash) : "–"]])}`.s;
}

export async function mountOrder(main, [id]) {
  const o = await get(`/v1/orders/${id}`);
  const trades = (await get(`/v1/trades?slot=${o.slot}&limit=1000`)).trades.filter((t) => t.buy_order === id || t.sell_order === id);
  main.innerHTML = html`<h2>Order ${short(id)}</h2>
    ${fields(o, [["order_id"], ["owner", link.account(o.owner)], ["slot", link.slot(o.slot)], ["side"], ["price µ/Wh", fmt(o.price_u_per_wh)],
      ["quantity Wh", fmt(o.quantity_wh)], ["filled Wh", fmt(o.filled_wh)], ["energy_type"], ["status"],
      ["placed in block", link.block(o.location[0])], ["transaction", link.tx(id)]])}
    ${table(["trade", "Wh", "price µ/Wh"], trades.map((t) => [link.trade(t.trade_id), fmt(t.quantity_wh), fmt(t.price_u_per_wh)]), { caption: "Trades of this order" })}`.s;
}

export function tradeRows(trades, me) {
  return trades.slice().reverse().map((t) => [link.trade(t.trade_id), link.slot(t.slot),
    me ? (t.buyer === me ? "buy" : "sell") : link.account(t.buyer), me ? link.account(t.buyer === me ? t.seller : t.buyer) : link.account(t.seller),
    fmt(t.quantity_wh), fmt(t.price_u_per_wh)]);
}

export function settlementRows(lines) {
  return lines.map((l) => [link.slot(l.slot), fmt(l.contracted_wh), fmt(l.metered_wh), fmt(l.delta_wh), fmt(l.imbalance_u),
    fmt(l.proceeds_u), fmt(l.debt_added_u), l.reading_missing ? "missing" : "read"]);
}
export const SETTLEMENT_HEADERS = ["slot", "contracted Wh", "metered Wh", "delta Wh", "imbalance µ", "proceeds µ", "debt added µ", "reading"];

export async function mountAccount(main, [address]) {
  const a = await get(`/v1/accounts/${address}`);
  const trades = (await get(`/v1/trades?account=${address}&limit=50`)).trades;
  main.innerHTML = html`<h2>Account ${a.name}</h2>
    ${cards([["role", a.role], ["status", a.status], ["zone", a.zone], ["balance µ", fmt(a.balance_u)], ["locked µ", fmt(a.locked_u)],
      ["pending proceeds µ", fmt(a.pending_u)], ["debt µ", fmt(a.debt_u)], ["nonce", a.nonce]])}
    ${fields(a, [["address"], ["public_key"], ["meter_key", a.meter_key ?? "none (the account's own key signs readings)"]])}
    ${table(["trade", "slot", "buyer", "seller", "Wh", "price µ/Wh"], tradeRows(trades), { caption: "Trades" })}
    ${table(SETTLEMENT_HEADERS, settlementRows(a.settlements), { caption: "Settlement statements" })}`.s;
}
