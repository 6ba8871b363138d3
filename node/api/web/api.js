// The node's REST API from the page: JSON reads, signed submissions with their outcome,
// chain facts cached for the views (status, validator names), and the /v1/events stream.
"use strict";
import { bytesToHex } from "/web/codec.js";
import { signTx } from "/web/signing.js";

export class ApiError extends Error {
  constructor(status, code, message) { super(`${code}: ${message}`); this.status = status; this.code = code; }
}

export async function get(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body?.error?.code ?? "http", body?.error?.message ?? `HTTP ${r.status}`);
  return body;
}

const VALIDATORS_EVERY = 10;
/** Chain facts every view uses: the node's status, and the validators (re-read every VALIDATORS_EVERY refreshes). */
export const chain = { status: null, validators: [], names: new Map(), refreshes: 0 };

export async function refreshChain() {
  chain.status = await get("/v1/status");
  if (!chain.validators.length || chain.refreshes++ % VALIDATORS_EVERY === 0) {
    chain.validators = (await get("/v1/validators")).validators;
    chain.names = new Map(chain.validators.map((v) => [v.index, v.name]));
  }
  return chain.status;
}

export const validatorName = (index) => chain.names.get(index) ?? `#${index}`;

/** The account of ``address`` or null when it is not on chain (no 404 asked). */
export async function findAccount(address) {
  const page = await get(`/v1/accounts?address=${address}`);
  return page.accounts[0] ?? null;
}

/** Next nonce as the CLI picks it: above the last used one, and at least the time in ms. */
export function nextNonce(last) {
  return Math.max(Number(last ?? 0) + 1, Date.now());
}

/** Sign ``body`` as ``sender`` with ``key`` and submit it; resolves to the tx hash (202). */
export async function submit(key, body, { sender, nonce }) {
  const tx = {
    chain_id: chain.status.chain_id, sender: sender ?? key.address, public_key: key.publicKeyHex,
    nonce, expires_at_ms: Date.now() + 5 * 60_000, body,
  };
  const signed = await signTx(key, tx);
  const r = await fetch("/v1/transactions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ raw: bytesToHex(signed.raw) }),
  });
  const out = await r.json().catch(() => null);
  if (r.status !== 202) throw new ApiError(r.status, out?.error?.code ?? "http", out?.error?.message ?? `HTTP ${r.status}`);
  return out.tx_hash;
}

/** Wait until a submitted transaction is committed or failed (or ``timeoutMs`` passes). */
export async function outcome(txHash, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const found = await get(`/v1/transactions/${txHash}`);
    if (found.status === "committed") return { ok: true, found };
    if (found.status === "failed") return { ok: false, found, code: found.receipt?.code ?? "failed" };
    await new Promise((r) => setTimeout(r, 400));
  }
  return { ok: false, code: "timeout" };
}

/** Subscribe to /v1/events; ``onEvent`` gets each parsed event; reconnects after a close. */
export function connectEvents(onEvent, onState, topics = "blocks,txs,trades,dispatch") {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/events?topics=${topics}`);
  ws.onopen = () => onState(true);
  ws.onmessage = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { /* not JSON: ignore */ } };
  ws.onclose = () => { onState(false); setTimeout(() => connectEvents(onEvent, onState, topics), 3000); };
  return ws;
}
