// Keys and signatures in the browser: a GridChain key file (node/ops/keys.py) read locally,
// Ed25519 through WebCrypto over domain || tx_bytes (docs/TRANSACTIONS.md §4), the raw form
// and the tx hash. The seed never leaves this page: it is imported as a non-extractable key.
"use strict";
import { bytesToHex, concat, encodeRaw, encodeTx, hexToBytes } from "/web/codec.js";

const PKCS8_ED25519_PREFIX = hexToBytes("302e020100300506032b657004220420");

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** Lowercase hex of the first 20 bytes of SHA-256(public key). */
export async function address(publicKey) {
  return bytesToHex((await sha256(publicKey)).slice(0, 20));
}

export function txDomain(chainId) {
  return concat(new TextEncoder().encode(`${chainId}/TX/v1`), new Uint8Array([0]));
}

export function notaryDomain(chainId) {
  return concat(new TextEncoder().encode(`${chainId}/NOTARY/v1`), new Uint8Array([0]));
}

/** A signing key from a 32-byte seed and its 32-byte public key; checks that they belong together. */
export async function keyFromSeed(seed, publicKey) {
  if (!crypto.subtle) throw new Error("this page needs a secure context (https or localhost) to sign");
  if (seed.length !== 32 || publicKey.length !== 32) throw new Error("seed and public key are 32 bytes each");
  const privateKey = await crypto.subtle.importKey("pkcs8", concat(PKCS8_ED25519_PREFIX, seed),
    { name: "Ed25519" }, false, ["sign"]);
  const verifyKey = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  const probe = new TextEncoder().encode("gridchain key check");
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, privateKey, probe);
  if (!(await crypto.subtle.verify({ name: "Ed25519" }, verifyKey, sig, probe))) {
    throw new Error("the public key does not belong to the seed");
  }
  return { privateKey, publicKey, publicKeyHex: bytesToHex(publicKey), address: await address(publicKey) };
}

/** Parse and check a key file's text: {"type": "ed25519", "address", "public_key", "seed"}. */
export async function loadKeyFile(text) {
  let doc;
  try { doc = JSON.parse(text); } catch (e) { throw new Error("the key file is not JSON"); }
  if (!doc || doc.type !== "ed25519" || typeof doc.seed !== "string" || typeof doc.public_key !== "string") {
    throw new Error("not a GridChain key file (type ed25519 with seed and public_key)");
  }
  const key = await keyFromSeed(hexToBytes(doc.seed), hexToBytes(doc.public_key));
  if (doc.address !== undefined && doc.address !== key.address) throw new Error("the key file's address does not match its key");
  return key;
}

export async function sign(key, message) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, message));
}

/** Sign a Tx in JSON form: {txBytes, signature, raw, txHash (hex)}. */
export async function signTx(key, tx) {
  const txBytes = encodeTx(tx);
  const signature = await sign(key, concat(txDomain(tx.chain_id), txBytes));
  const raw = encodeRaw(txBytes, signature);
  return { txBytes, signature, raw, txHash: bytesToHex(await sha256(raw)) };
}
