// Participant view: with a key file loaded locally, the account's money (balance, locked,
// pending proceeds, debt), orders placed and cancelled with signatures made in this browser,
// open orders, trades, per-slot settlement statements, meter readings (submitted when the key
// is the meter key) and dispatch instructions with an acknowledge button. An unregistered key
// gets the registration form.
"use strict";
import { chain, get, nextNonce, outcome, submit } from "/web/api.js";
import { keyLoader, myAccount, session } from "/web/session.js";
import { $, cards, fmt, formValues, html, link, raw, say, table, time } from "/web/ui.js";
import { SETTLEMENT_HEADERS, settlementRows, tradeRows } from "/web/view_records.js";

/** Sign, submit and wait; the outcome goes to the status element ``msgEl``. */
export async function act(msgEl, what, body, opts) {
  say(msgEl, `${what}: signing…`);
  try {
    const hash = await submit(session.key, body, opts);
    say(msgEl, `${what}: submitted ${hash.slice(0, 12)}…, waiting for a block`);
    const out = await outcome(hash);
    say(msgEl, out.ok ? `${what}: committed (tx ${hash.slice(0, 12)}…)` : `${what}: ${out.code}`, out.ok ? "ok" : "err");
    return out.ok ? hash : null;
  } catch (e) {
    say(msgEl, `${what}: ${e.message}`, "err");
    return null;
  }
}

/** The next slots still open for orders: [{slot, gate_close_ms}]. */
export function openSlots(count = 6, leadMs = 3_000) {
  const m = chain.status.market;
  const now = Date.now();
  const out = [];
  for (let s = Math.max(0, Math.floor((now - m.genesis_time_ms) / m.slot_ms)); out.length < count; s++) {
    const gate = m.genesis_time_ms + s * m.slot_ms - m.gate_lead_ms;
    if (gate > now + leadMs) out.push({ slot: s, gate_close_ms: gate });
  }
  return out;
}

const REGISTER = html`<h3>Register this key</h3><p>This key has no account yet. Ask to join; the grid operator approves.</p>
  <form class="inline" id="register-form">
    <label>Role<select name="role"><option>consumer</option><option>prosumer</option><option>generator</option><option>retailer</option></select></label>
    <label>Zone<input name="zone" value="zone-a" required pattern="[A-Za-z0-9_.\\-]{1,32}"></label>
    <label>Name<input name="name" required maxlength="64"></label>
    <button>Request registration</button><span class="msg" role="status" id="register-msg"></span></form>`;

function layout() {
  return html`<div id="me-cards"></div>
    <div class="grid2"><section aria-labelledby="h-order"><h3 id="h-order">Place an order</h3>
      <form class="inline" id="order-form">
        <label>Slot<select name="slot" id="order-slot"></select></label>
        <label>Side<select name="side"><option value="buy">buy</option><option value="sell">sell</option></select></label>
        <label>Price µ/Wh<input name="price" type="number" min="0" required value="50"></label>
        <label>Quantity Wh<input name="quantity" type="number" min="1" required value="1000"></label>
        <label>Energy type<input name="energy_type" value="any" pattern="[a-z_]{1,16}" size="8"></label>
        <button>Sign and place</button><span class="msg" role="status" id="order-msg"></span></form></section>
    <section aria-labelledby="h-meter"><h3 id="h-meter">Submit a meter reading</h3>
      <form class="inline" id="reading-form">
        <label>Metered account<input name="account" size="42" pattern="[0-9a-f]{40}" required></label>
        <label>Slot<input name="slot" type="number" min="0" required></label>
        <label>Import Wh<input name="import_wh" type="number" min="0" value="0" required></label>
        <label>Export Wh<input name="export_wh" type="number" min="0" value="0" required></label>
        <button>Sign and submit</button><span class="msg" role="status" id="reading-msg"></span></form></section></div>
    <span class="msg" role="status" id="me-msg"></span>
    <div id="me-orders"></div><div id="me-trades"></div><div id="me-settlements"></div>
    <div id="me-readings"></div><div id="me-dispatch"></div><div id="me-channels"></div>`;
}

export async function mount(main) {
  const loader = keyLoader("me-key", () => show());
  main.innerHTML = html`<h2>My account</h2>${loader.html}<div id="me-body"></div>`.s;
  loader.bind(main);
  let account = null;

  async function show() {
    const body = $("#me-body");
    if (!session.key) { body.innerHTML = html`<p>Load your key file to see your account and trade.</p>`.s; return; }
    account = await myAccount();
    if (!account) { body.innerHTML = REGISTER.s; bindRegister(); return; }
    if (!$("#order-form")) { body.innerHTML = layout().s; bindForms(); }
    await refresh();
  }

  function bindRegister() {
    $("#register-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const v = formValues(e.target);
      const ok = await act($("#register-msg"), "registration", { kind: "register_request", role: v.role, zone: v.zone, name: v.name, meter_key: null },
        { nonce: Date.now() });
      if (ok) await show();
    });
  }

  function fillSlots() {
    const select = $("#order-slot");
    const keep = select.value;
    const slots = openSlots();
    select.innerHTML = slots.map((s) => html`<option value="${s.slot}">${s.slot} (gate ${time(s.gate_close_ms)})</option>`.s).join("");
    if (slots.some((s) => String(s.slot) === keep)) select.value = keep;
  }

  function bindForms() {
    fillSlots();
    const reading = $("#reading-form");
    reading.account.value = session.key.address;
    reading.slot.value = Math.max(0, chain.status.market.current_slot - 1);
    $("#order-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const v = formValues(e.target);
      await act($("#order-msg"), `${v.side} order`, { kind: "place_order", slot: Number(v.slot), side: v.side,
        price_u_per_wh: Number(v.price), quantity_wh: Number(v.quantity), energy_type: v.energy_type || "any" },
      { nonce: nextNonce(account.nonce) });
      await refresh();
    });
    reading.addEventListener("submit", async (e) => {
      e.preventDefault();
      const v = formValues(e.target);
      const metered = v.account === session.key.address ? account : (await get(`/v1/accounts?address=${v.account}`)).accounts[0];
      if (!metered) { say($("#reading-msg"), "unknown metered account", "err"); return; }
      const signer = metered.meter_key ?? metered.public_key;
      if (signer !== session.key.publicKeyHex) { say($("#reading-msg"), "this key is not the account's meter key", "err"); return; }
      await act($("#reading-msg"), `reading for slot ${v.slot}`, { kind: "submit_reading", slot: Number(v.slot),
        import_wh: Number(v.import_wh), export_wh: Number(v.export_wh) },
      { sender: metered.address, nonce: nextNonce(metered.meter_nonce) });
      await refresh();
    });
    $("#me-body").addEventListener("click", async (e) => {
      const b = e.target.closest("button[data-cancel], button[data-ack]");
      if (!b) return;
      b.disabled = true;
      if (b.dataset.cancel) {
        await act($("#me-msg"), "cancel", { kind: "cancel_order", order_id: b.dataset.cancel }, { nonce: nextNonce(account.nonce) });
      } else {
        await act($("#me-msg"), `acknowledge dispatch ${b.dataset.ack}`, { kind: "ack_dispatch", dispatch_id: Number(b.dataset.ack) },
          { nonce: nextNonce(account.nonce) });
      }
      await refresh();
    });
  }

  async function refresh() {
    if (!session.key || !$("#me-cards")) return;
    const me = session.key.address;
    fillSlots();
    account = await get(`/v1/accounts/${me}`);
    const [orders, trades, readings, dispatch, channels] = await Promise.all([
      get(`/v1/accounts/${me}/orders`), get(`/v1/trades?account=${me}&limit=50`),
      get(`/v1/accounts/${me}/readings?limit=20`), get(`/v1/dispatch?account=${me}`),
      get(`/v1/accounts/${me}/channels?limit=20`)]);
    $("#me-cards").innerHTML = cards([["account", account.name], ["role", account.role], ["status", account.status],
      ["balance µ", fmt(account.balance_u), "balance"], ["locked µ", fmt(account.locked_u), "locked"],
      ["pending proceeds µ", fmt(account.pending_u), "pending"], ["debt µ", fmt(account.debt_u), "debt"],
      ["meter", account.meter_key ? "own meter key" : "this key"]]).s;
    $("#me-orders").innerHTML = table(["order", "slot", "side", "price µ/Wh", "Wh", "filled Wh", ""], orders.orders.map((o) => [
      link.order(o.order_id), link.slot(o.slot), o.side, fmt(o.price_u_per_wh), fmt(o.quantity_wh), fmt(o.filled_wh),
      html`<button class="secondary" data-cancel="${o.order_id}" aria-label="cancel order ${o.order_id.slice(0, 10)}">Cancel</button>`]),
    { caption: "My open orders", id: "my-orders", empty: "no open orders" }).s;
    $("#me-trades").innerHTML = table(["trade (trace)", "slot", "side", "counterparty", "Wh", "price µ/Wh"], tradeRows(trades.trades, me),
      { caption: "My trades", id: "my-trades" }).s;
    $("#me-settlements").innerHTML = table(SETTLEMENT_HEADERS, settlementRows(account.settlements),
      { caption: "My settlement statements", id: "my-settlements" }).s;
    $("#me-readings").innerHTML = table(["slot", "import Wh", "export Wh", "block"], readings.readings.map((r) => [
      link.slot(r.slot), fmt(r.import_wh), fmt(r.export_wh), link.block(r.location[0])]), { caption: "My meter readings", id: "my-readings" }).s;
    $("#me-dispatch").innerHTML = table(["id", "direction", "Wh", "deadline", "penalty µ", "status", ""], dispatch.dispatch.map((d) => [
      d.dispatch_id, d.direction, fmt(d.amount_wh), time(d.deadline_ms), fmt(d.penalty_u), d.status,
      d.status === "issued" ? html`<button data-ack="${d.dispatch_id}">Acknowledge</button>` : raw("")]),
    { caption: "Dispatch instructions for me", id: "my-dispatch" }).s;
    // Payment channels (docs/CHANNELS.md): updates go through `gridchain channel`; the chain holds the deposits.
    $("#me-channels").innerHTML = table(["channel", "counterparty", "status", "my deposit µ", "their deposit µ", "seq", "my balance µ"],
      channels.channels.map((c) => {
        const a = c.party_a === me;
        return [c.channel_id.slice(0, 12) + "…", link.account(a ? c.party_b : c.party_a), c.status,
          fmt(a ? c.deposit_a_u : c.deposit_b_u), fmt(a ? c.deposit_b_u : c.deposit_a_u), fmt(c.seq),
          c.status === "open" ? "off chain" : fmt(a ? c.balance_a_u : c.balance_b_u)];
      }), { caption: "My payment channels", id: "my-channels", empty: "no payment channels" }).s;
  }

  await show();
  return { refresh };
}
