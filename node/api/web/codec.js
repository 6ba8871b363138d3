// Canonical MessagePack bytes of a GridChain transaction (docs/TRANSACTIONS.md §2-§3), from its
// JSON form: maps in schema order with every field present, shortest unsigned integers,
// str for strings and addresses, bin for bytes. One value has exactly one encoding.
"use strict";

// kind -> [field, type, default]; types: str uint bool bin bin? [str] [bin] [uint] Body ChannelState
export const TX_FIELDS = [["chain_id", "str"], ["sender", "str"], ["public_key", "bin"], ["nonce", "uint"],
  ["expires_at_ms", "uint"], ["body", "Body"]];
export const BODY_FIELDS = {
  register_request: [["role", "str"], ["zone", "str"], ["name", "str"], ["meter_key", "bin?", null]],
  approve_registration: [["account", "str"]],
  reject_registration: [["account", "str"]],
  suspend_account: [["account", "str"], ["suspended", "bool", true]],
  set_meter_key: [["account", "str"], ["meter_key", "bin?"]],
  transfer: [["to", "str"], ["amount_u", "uint"]],
  mint: [["to", "str"], ["amount_u", "uint"]],
  burn: [["amount_u", "uint"]],
  place_order: [["slot", "uint"], ["side", "str"], ["price_u_per_wh", "uint"], ["quantity_wh", "uint"],
    ["energy_type", "str", "any"]],
  cancel_order: [["order_id", "str"]],
  submit_reading: [["slot", "uint"], ["import_wh", "uint"], ["export_wh", "uint"]],
  issue_dispatch: [["account", "str"], ["direction", "str"], ["amount_wh", "uint"], ["deadline_ms", "uint"],
    ["penalty_u", "uint"]],
  ack_dispatch: [["dispatch_id", "uint"]],
  notarize: [["doc_hash", "bin"], ["parties", "[str]"], ["signatures", "[bin]"], ["title", "str", ""]],
  set_node_key: [["node_key", "bin?"]],
  open_channel: [["counterparty", "str"], ["deposit_u", "uint"], ["challenge_slots", "uint"]],
  fund_channel: [["channel_id", "str"], ["deposit_u", "uint"]],
  close_channel: [["state", "ChannelState"], ["signature_a", "bin"], ["signature_b", "bin"]],
  force_close_channel: [["state", "ChannelState"], ["signature", "bin?"]],
  challenge_channel: [["state", "ChannelState"], ["signature_a", "bin"], ["signature_b", "bin"]],
  settle_channel: [["channel_id", "str"]],
};
export const CHANNEL_STATE_FIELDS = [["channel_id", "str"], ["seq", "uint"], ["balance_a_u", "uint"],
  ["balance_b_u", "uint"], ["energy_wh", "uint"], ["reading_slots", "[uint]", []], ["final", "bool", false]];
export const NOTARY_FIELDS = [["chain_id", "str"], ["doc_hash", "bin"], ["parties", "[str]"]];

const MAX_U64 = (1n << 63n) - 1n;

export function hexToBytes(hex) {
  if (typeof hex !== "string" || !/^(?:[0-9a-f]{2})*$/.test(hex)) throw new Error("expected lowercase hex");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

class Writer {
  constructor() { this.bytes = []; }
  byte(b) { this.bytes.push(b); }
  be(value, size) {  // big-endian unsigned, value a BigInt
    for (let i = size - 1; i >= 0; i--) this.bytes.push(Number((value >> BigInt(8 * i)) & 0xffn));
  }
  raw(arr) { for (const b of arr) this.bytes.push(b); }
  uint(v) {
    const n = BigInt(v);
    if (typeof v === "number" && !Number.isSafeInteger(v)) throw new Error(`integer ${v} is not exact`);
    if (n < 0n || n > MAX_U64) throw new Error(`integer ${v} out of range`);
    if (n <= 0x7fn) this.byte(Number(n));
    else if (n <= 0xffn) { this.byte(0xcc); this.be(n, 1); }
    else if (n <= 0xffffn) { this.byte(0xcd); this.be(n, 2); }
    else if (n <= 0xffffffffn) { this.byte(0xce); this.be(n, 4); }
    else { this.byte(0xcf); this.be(n, 8); }
  }
  str(s) {
    if (typeof s !== "string") throw new Error(`expected a string, got ${typeof s}`);
    const b = new TextEncoder().encode(s);
    if (b.length <= 31) this.byte(0xa0 | b.length);
    else if (b.length <= 0xff) { this.byte(0xd9); this.be(BigInt(b.length), 1); }
    else if (b.length <= 0xffff) { this.byte(0xda); this.be(BigInt(b.length), 2); }
    else { this.byte(0xdb); this.be(BigInt(b.length), 4); }
    this.raw(b);
  }
  bin(b) {
    const bytes = typeof b === "string" ? hexToBytes(b) : b;
    if (bytes.length <= 0xff) { this.byte(0xc4); this.be(BigInt(bytes.length), 1); }
    else if (bytes.length <= 0xffff) { this.byte(0xc5); this.be(BigInt(bytes.length), 2); }
    else { this.byte(0xc6); this.be(BigInt(bytes.length), 4); }
    this.raw(bytes);
  }
  arrayHeader(n) {
    if (n <= 15) this.byte(0x90 | n);
    else { this.byte(0xdc); this.be(BigInt(n), 2); }
  }
  mapHeader(n) {
    if (n > 15) throw new Error("maps here have at most 15 entries");
    this.byte(0x80 | n);
  }
  value(type, v) {
    if (type === "str") this.str(v);
    else if (type === "uint") this.uint(v);
    else if (type === "bool") {
      if (typeof v !== "boolean") throw new Error("expected a bool");
      this.byte(v ? 0xc3 : 0xc2);
    } else if (type === "bin") this.bin(v);
    else if (type === "bin?") { if (v === null) this.byte(0xc0); else this.bin(v); }
    else if (type === "[str]" || type === "[bin]" || type === "[uint]") {
      if (!Array.isArray(v)) throw new Error("expected an array");
      this.arrayHeader(v.length);
      for (const item of v) this.value(type.slice(1, -1), item);
    } else if (type === "Body") this.body(v);
    else if (type === "ChannelState") {
      if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("expected a channel state object");
      this.map(CHANNEL_STATE_FIELDS, v, []);
    }
    else throw new Error(`unknown type ${type}`);
  }
  map(fields, obj, prefix) {
    const extra = Object.keys(obj).filter((k) => !fields.some(([f]) => f === k) && !prefix.includes(k));
    if (extra.length) throw new Error(`unknown fields: ${extra.join(", ")}`);
    this.mapHeader(fields.length + prefix.length);
    for (const k of prefix) { this.str(k); this.str(obj[k]); }
    for (const [name, type, dflt] of fields) {
      let v = obj[name];
      if (v === undefined) {
        if (dflt === undefined) throw new Error(`missing field ${name}`);
        v = dflt;
      }
      this.str(name);
      this.value(type, v);
    }
  }
  body(b) {
    const fields = BODY_FIELDS[b && b.kind];
    if (!fields) throw new Error(`unknown body kind ${b && b.kind}`);
    this.map(fields, b, ["kind"]);
  }
}

/** tx_bytes: the canonical MessagePack of a Tx given in its JSON form (bytes as hex). */
export function encodeTx(tx) {
  const w = new Writer();
  w.map(TX_FIELDS, tx, []);
  return new Uint8Array(w.bytes);
}

/** MessagePack(NotaryStatement) (TRANSACTIONS.md §5). */
export function encodeNotaryStatement(statement) {
  const w = new Writer();
  w.map(NOTARY_FIELDS, statement, []);
  return new Uint8Array(w.bytes);
}

/** raw = MessagePack([tx_bytes, signature]): an array of two bin values (§6). */
export function encodeRaw(txBytes, signature) {
  const w = new Writer();
  w.arrayHeader(2);
  w.bin(txBytes);
  w.bin(signature);
  return new Uint8Array(w.bytes);
}

/** Decode MessagePack (the subset GridChain writes: maps, arrays, str, bin, ints, nil, bools)
 * into JSON-like values, bin as lowercase hex — the JSON form the API shows for a record. */
export function decode(bytes) {
  let at = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const take = (n) => { if (at + n > bytes.length) throw new Error("truncated"); const s = bytes.subarray(at, at + n); at += n; return s; };
  const uint = (n) => { let v = 0n; for (const b of take(n)) v = (v << 8n) | BigInt(b); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; };
  const int = (n) => { const v = n === 1 ? view.getInt8(at) : n === 2 ? view.getInt16(at) : n === 4 ? view.getInt32(at) : Number(view.getBigInt64(at)); at += n; return v; };
  const str = (n) => new TextDecoder("utf-8", { fatal: true }).decode(take(n));
  const arr = (n) => Array.from({ length: n }, () => value());
  const map = (n) => { const o = {}; for (let i = 0; i < n; i++) { const k = value(); o[k] = value(); } return o; };
  function value() {
    const t = take(1)[0];
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return map(t & 0x0f);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bytesToHex(take(uint(1)));
      case 0xc5: return bytesToHex(take(uint(2)));
      case 0xc6: return bytesToHex(take(uint(4)));
      case 0xcc: return uint(1); case 0xcd: return uint(2); case 0xce: return uint(4); case 0xcf: return uint(8);
      case 0xd0: return int(1); case 0xd1: return int(2); case 0xd2: return int(4); case 0xd3: return int(8);
      case 0xd9: return str(uint(1)); case 0xda: return str(uint(2)); case 0xdb: return str(uint(4));
      case 0xdc: return arr(uint(2)); case 0xdd: return arr(uint(4));
      case 0xde: return map(uint(2)); case 0xdf: return map(uint(4));
      default: throw new Error(`unsupported MessagePack type 0x${t.toString(16)}`);
    }
  }
  const out = value();
  if (at !== bytes.length) throw new Error("trailing bytes");
  return out;
}

/** Deep equality of JSON-like values (key order of objects ignored). */
export function sameJson(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && sameJson(a[k], b[k]));
}
