// Merkle inclusion proofs of block records, as contracts/traceability.py: leaf =
// sha256(0x00 || bytes), node = sha256(0x01 || left || right), a level with an odd count
// promotes its last node unchanged.
"use strict";
import { bytesToHex, concat, hexToBytes } from "/web/codec.js";
import { sha256 } from "/web/signing.js";

export const leafHash = (leaf) => sha256(concat(new Uint8Array([0]), leaf));
const node = (left, right) => sha256(concat(new Uint8Array([1]), left, right));

/** True iff leaf (hex) is leaf proof.index of a tree of proof.leaf_count leaves with root (hex). */
export async function verifyProof(leafHex, proof, rootHex) {
  if (!proof || !Number.isInteger(proof.index) || !Number.isInteger(proof.leaf_count)) return false;
  if (!(proof.index >= 0 && proof.index < proof.leaf_count)) return false;
  const siblings = proof.siblings.map(hexToBytes);
  if (siblings.some((s) => s.length !== 32)) return false;
  let h = await leafHash(hexToBytes(leafHex));
  let i = proof.index, n = proof.leaf_count, used = 0;
  while (n > 1) {
    if (i % 2 === 1) {
      if (used >= siblings.length) return false;
      h = await node(siblings[used++], h);
    } else if (i + 1 < n) {
      if (used >= siblings.length) return false;
      h = await node(h, siblings[used++]);
    }
    i = Math.floor(i / 2);
    n = Math.floor((n + 1) / 2);
  }
  return used === siblings.length && bytesToHex(h) === rootHex;
}
