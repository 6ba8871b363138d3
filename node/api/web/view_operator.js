// Operator view: the consortium at a glance — validators by name and role, credit over time
// (sampled by this page on every block it hears of), leader share against credit share, the
// node's peers, mempool, timeouts (rounds that ended without a block, by leader) and health,
// and the live /v1/events stream.
"use strict";
import { chain, get, validatorName } from "/web/api.js";
import { lines, pairedBars } from "/web/charts.js";
import { $, cards, esc, fmt, html, table, time } from "/web/ui.js";

const MAX_SAMPLES = 300, MAX_EVENTS = 30, TIMEOUT_BLOCKS = 20;
const samples = [];   // [{height, credits: [..]}], bounded by MAX_SAMPLES
const events = [];    // latest events first, bounded by MAX_EVENTS
const failedByHeight = new Map();  // height -> failed_authors, the last TIMEOUT_BLOCKS heights

async function health() {
  const probe = async (path) => { const r = await fetch(path); return r.ok ? "ok" : `${r.status}`; };
  return { healthz: await probe("/healthz"), readyz: await probe("/readyz") };
}

async function recentTimeouts(height) {
  for (let h = height; h > 0 && h > height - TIMEOUT_BLOCKS; h--) {
    if (!failedByHeight.has(h)) failedByHeight.set(h, (await get(`/v1/blocks/${h}`)).failed_authors);
  }
  for (const h of failedByHeight.keys()) if (h <= height - TIMEOUT_BLOCKS) failedByHeight.delete(h);
  return [...failedByHeight.entries()].flatMap(([h, fa]) => fa.map(([round, author]) => ({ h, round, author })))
    .sort((a, b) => b.round - a.round);
}

export async function mount(main) {
  main.innerHTML = html`<h2>Operator</h2><div id="op-cards"></div>
    <p id="op-valset" class="muted"></p>
    <div id="op-vals"></div>
    <div class="grid2"><section aria-labelledby="h-credit"><h3 id="h-credit">Credit over time</h3><div id="op-credit"></div></section>
    <section aria-labelledby="h-share"><h3 id="h-share">Leader share against credit share</h3><div id="op-share"></div></section></div>
    <div class="grid2"><div id="op-timeouts"></div><section aria-labelledby="h-events"><h3 id="h-events">Live events</h3><ol id="op-events" class="muted"></ol></section></div>`.s;
  const refresh = async () => {
    const s = chain.status;
    const vals = (await get("/v1/validators")).validators;
    if (!samples.length || samples.at(-1).height !== s.height) {
      samples.push({ height: s.height, credits: vals.map((v) => v.credit) });
      if (samples.length > MAX_SAMPLES) samples.shift();
    }
    const h = await health();
    $("#op-valset").textContent = `Validator set of epoch ${s.epoch ?? 0}, which this ${s.node_role || "validator"} verifies every block against: ` +
      (s.validators || []).map((v) => `${v.index} ${v.name} ${v.public_key.slice(0, 12)}…`).join(" · ");
    $("#op-cards").innerHTML = cards([["node", `${s.node_name} (${s.role})`], ["node role", s.node_role || "validator"],
      ["epoch", s.epoch ?? 0], ["height", fmt(s.height)], ["round", fmt(s.round)],
      ["leader", validatorName(s.leader)],
      ["peers", (s.peer_validators || []).length ? (s.peer_validators || []).map(validatorName).join(", ") : String(s.peers)], ["mempool", fmt(s.mempool_size)], ["syncing", String(s.syncing)],
      ["execution lag", fmt(s.execution_lag_blocks)], ["health", h.healthz], ["ready", h.readyz],
      ["execution", s.execution_halted ? `halted at ${s.execution_halted.height}` : "running"]]).s;
    $("#op-vals").innerHTML = table(["#", "name", "role", "credit", "excluded until round", "leader share", "blocks proposed",
      "QCs signed", "timeouts (failed rounds)", "window led / failed", "rewards µ"], vals.map((v) => [v.index, v.name, v.role, fmt(v.credit),
      fmt(v.excluded_until_round), `${(v.leader_share_ppm / 10_000).toFixed(1)} %`, fmt(v.blocks_proposed), fmt(v.qcs_signed),
      fmt(v.failed_rounds), `${v.window_led} / ${v.window_failed}`, fmt(v.rewards_u)]), { caption: "Validators", id: "validators" }).s;
    $("#op-credit").innerHTML = lines("Credit per validator by height", vals.map((v, i) => ({
      name: v.name, points: samples.map((p) => [p.height, p.credits[i] ?? 0]) })),
    { xLabel: "height (sampled by this page)", yLabel: "credit" }).s;
    const creditSum = vals.reduce((n, v) => n + v.credit, 0) || 1;
    $("#op-share").innerHTML = pairedBars("Leader share and credit share per validator", vals.map((v) => ({
      name: v.name, a: v.leader_share_ppm / 1e6, b: v.credit / creditSum })), { aName: "leader share", bName: "credit share" }).s;
    const timeouts = await recentTimeouts(s.height);
    $("#op-timeouts").innerHTML = table(["round", "leader that timed out", "noted in block"], timeouts.map((t) => [t.round, validatorName(t.author), t.h]),
      { caption: `Timeouts in the last ${TIMEOUT_BLOCKS} blocks`, empty: "no round timed out" }).s;
    showEvents();
  };
  const showEvents = () => {
    $("#op-events").innerHTML = events.map((e) => `<li>${esc(e)}</li>`).join("");
  };
  const onEvent = (ev) => {
    const what = ev.type === "block" ? `block ${ev.height}: ${ev.tx_count} txs` : ev.type === "tx" ? `tx ${ev.kind} ${ev.status} (block ${ev.height})`
      : ev.type === "trade" ? `trade ${ev.trade_id}: ${ev.quantity_wh} Wh at ${ev.price_u_per_wh}` : `${ev.type} ${ev.dispatch_id ?? ""}`;
    events.unshift(`${time(Date.now())} ${what}`);
    if (events.length > MAX_EVENTS) events.pop();
    if ($("#op-events")) showEvents();
  };
  await refresh();
  return { refresh, onEvent };
}
