// Grid operator view (with the grid operator's key): pending registrations to approve or
// reject, the issue-dispatch form, accounts in debt, and meter keys (with the form to set one).
"use strict";
import { chain, findAccount, get, nextNonce } from "/web/api.js";
import { keyLoader, session } from "/web/session.js";
import { $, fmt, formValues, html, link, say, table, time } from "/web/ui.js";
import { act } from "/web/view_me.js";

const FORMS = html`<span class="msg" role="status" id="grid-msg"></span>
  <div id="grid-pending"></div>
  <section aria-labelledby="h-dispatch"><h3 id="h-dispatch">Issue a dispatch instruction</h3>
  <form class="inline" id="dispatch-form">
    <label>Account<input name="account" size="42" pattern="[0-9a-f]{40}" required></label>
    <label>Direction<select name="direction"><option>curtail</option><option>increase</option></select></label>
    <label>Amount Wh<input name="amount_wh" type="number" min="1" value="500" required></label>
    <label>Deadline (seconds from now)<input name="deadline_s" type="number" min="1" value="600" required></label>
    <label>Penalty µ<input name="penalty_u" type="number" min="0" value="1000" required></label>
    <button>Sign and issue</button><span class="msg" role="status" id="dispatch-msg"></span></form></section>
  <div id="grid-debt"></div>
  <section aria-labelledby="h-meter-keys"><h3 id="h-meter-keys">Meter keys</h3>
  <form class="inline" id="meter-key-form">
    <label>Account<input name="account" size="42" pattern="[0-9a-f]{40}" required></label>
    <label>Meter public key (hex; empty: the account's own key)<input name="meter_key" size="66" pattern="[0-9a-f]{64}"></label>
    <button>Sign and set</button><span class="msg" role="status" id="meter-key-msg"></span></form>
  <div id="grid-meters"></div></section>`;

export async function mount(main) {
  const loader = keyLoader("grid-key", () => show());
  main.innerHTML = html`<h2>Grid operator</h2>${loader.html}<div id="grid-body"></div>`.s;
  loader.bind(main);
  const operator = () => chain.status.market.grid_operator;
  const nonce = async () => nextNonce((await findAccount(session.key.address))?.nonce);

  async function show() {
    const body = $("#grid-body");
    if (!session.key || session.key.address !== operator()) {
      body.innerHTML = html`<p>Load the grid operator's key file (account ${link.account(operator())}) to manage the grid.</p>`.s;
      return;
    }
    if (!$("#dispatch-form")) { body.innerHTML = FORMS.s; bind(); }
    await refresh();
  }

  function bind() {
    $("#grid-body").addEventListener("click", async (e) => {
      const b = e.target.closest("button[data-approve], button[data-reject]");
      if (!b) return;
      b.disabled = true;
      const approve = Boolean(b.dataset.approve);
      const account = b.dataset.approve ?? b.dataset.reject;
      await act($("#grid-msg"), `${approve ? "approve" : "reject"} ${account.slice(0, 8)}…`,
        { kind: approve ? "approve_registration" : "reject_registration", account }, { nonce: await nonce() });
      await refresh();
    });
    $("#dispatch-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const v = formValues(e.target);
      await act($("#dispatch-msg"), "dispatch", { kind: "issue_dispatch", account: v.account, direction: v.direction,
        amount_wh: Number(v.amount_wh), deadline_ms: Date.now() + 1000 * Number(v.deadline_s), penalty_u: Number(v.penalty_u) },
      { nonce: await nonce() });
    });
    $("#meter-key-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const v = formValues(e.target);
      await act($("#meter-key-msg"), "meter key", { kind: "set_meter_key", account: v.account, meter_key: v.meter_key || null },
        { nonce: await nonce() });
      await refresh();
    });
  }

  async function refresh() {
    if (!$("#grid-pending")) return;
    const [pending, debt, all] = await Promise.all([get("/v1/accounts?status=pending&limit=100"),
      get("/v1/accounts?in_debt=true&limit=100"), get("/v1/accounts?limit=200")]);
    $("#grid-pending").innerHTML = table(["account", "name", "role", "zone", "expires", ""], pending.accounts.map((a) => [
      link.account(a.address), a.name, a.role, a.zone, time(a.pending_until_ms),
      html`<button data-approve="${a.address}" aria-label="approve ${a.name}">Approve</button> <button class="secondary" data-reject="${a.address}" aria-label="reject ${a.name}">Reject</button>`]),
    { caption: "Pending registrations", id: "pending-registrations", empty: "no pending registrations" }).s;
    $("#grid-debt").innerHTML = table(["account", "name", "role", "debt µ", "balance µ"], debt.accounts.map((a) => [
      link.account(a.address), a.name, a.role, fmt(a.debt_u), fmt(a.balance_u)]), { caption: "Accounts in debt", empty: "no account is in debt" }).s;
    $("#grid-meters").innerHTML = table(["account", "name", "role", "status", "meter key"], all.accounts.map((a) => [
      link.account(a.address), a.name, a.role, a.status, a.meter_key ? html`<span class="h">${a.meter_key}</span>` : "own key"]),
    { caption: "Accounts and their meter keys" }).s;
  }

  await show();
  say($("#grid-msg"), "");
  return { refresh };
}
