// Hand-drawn SVG charts: a slot's supply and demand step curves with the clearing point,
// a line chart over time, and paired bars. Each chart has a title and a text description
// for screen readers (role=img, aria-label).
"use strict";
import { esc, raw } from "/web/ui.js";

const W = 560, H = 240, PAD = { l: 56, r: 16, t: 14, b: 34 };
export const SERIES = 6;  // style.css colours .s0 … .s5

/** The smallest of 1, 2, 5 × 10^k at or above ``v``: an axis maximum with round ticks. */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function frame(label, body, { xLabel, yLabel, xMax, yMax, xMin = 0 }) {
  const ticks = [0, 0.5, 1].map((f) => {
    const y = PAD.t + (1 - f) * (H - PAD.t - PAD.b);
    const x = PAD.l + f * (W - PAD.l - PAD.r);
    return `<text x="${PAD.l - 6}" y="${y + 4}" text-anchor="end">${Math.round(f * yMax).toLocaleString("en-US")}</text>` +
      `<text x="${x}" y="${H - PAD.b + 16}" text-anchor="middle">${(xMin + f * (xMax - xMin)).toLocaleString("en-US", { maximumFractionDigits: 1 })}</text>` +
      `<line class="grid" x1="${PAD.l}" x2="${W - PAD.r}" y1="${y}" y2="${y}"/>`;
  }).join("");
  return raw(`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(label)}">` +
    `<title>${esc(label)}</title>${ticks}` +
    `<text x="${(W + PAD.l) / 2}" y="${H - 4}" text-anchor="middle">${esc(xLabel)}</text>` +
    `<text x="12" y="${PAD.t + (H - PAD.t - PAD.b) / 2}" transform="rotate(-90 12 ${PAD.t + (H - PAD.t - PAD.b) / 2})" text-anchor="middle">${esc(yLabel)}</text>` +
    `${body}</svg>`);
}

const sx = (x, xMax, xMin = 0) => PAD.l + ((x - xMin) / Math.max(1e-9, xMax - xMin)) * (W - PAD.l - PAD.r);
const sy = (y, yMax) => PAD.t + (1 - y / Math.max(1e-9, yMax)) * (H - PAD.t - PAD.b);

/** Steps of cumulative quantity: demand from the highest bid down, supply from the lowest ask up. */
export function steps(orders, side) {
  const sorted = orders.filter((o) => o.side === side)
    .sort((a, b) => (side === "buy" ? b.price_u_per_wh - a.price_u_per_wh : a.price_u_per_wh - b.price_u_per_wh));
  let q = 0;
  return sorted.map((o) => { const from = q; q += o.quantity_wh; return { from, to: q, price: o.price_u_per_wh }; });
}

function stepPath(st, xMax, yMax) {
  if (!st.length) return "";
  let d = `M${sx(st[0].from, xMax)},${sy(st[0].price, yMax)}`;
  for (const s of st) d += ` L${sx(s.from, xMax)},${sy(s.price, yMax)} L${sx(s.to, xMax)},${sy(s.price, yMax)}`;
  return d;
}

/** Supply and demand of one slot's book, with the clearing point (price, volume) when cleared. */
export function supplyDemand(orders, clearing, slot) {
  const demand = steps(orders, "buy"), supply = steps(orders, "sell");
  const xMax = niceMax(Math.max(1, demand.at(-1)?.to ?? 0, supply.at(-1)?.to ?? 0));
  const yMax = niceMax(Math.max(1, ...orders.map((o) => o.price_u_per_wh), clearing?.price ?? 0) * 1.1);
  let body = `<path class="demand" d="${stepPath(demand, xMax, yMax)}"/><path class="supply" d="${stepPath(supply, xMax, yMax)}"/>`;
  let label = `Slot ${slot}: demand ${demand.at(-1)?.to ?? 0} Wh in ${demand.length} bids, supply ${supply.at(-1)?.to ?? 0} Wh in ${supply.length} asks`;
  if (clearing && clearing.price !== null && clearing.price !== undefined) {
    const cx = sx(clearing.volume, xMax), cy = sy(clearing.price, yMax);
    body += `<circle class="clear" cx="${cx}" cy="${cy}" r="5"/><text x="${cx + 8}" y="${cy - 8}">${esc(`${clearing.price} µ/Wh · ${clearing.volume} Wh`)}</text>`;
    label += `; cleared at ${clearing.price} µ/Wh for ${clearing.volume} Wh`;
  }
  body += `<g class="legend"><rect class="demand" x="${W - 150}" y="18" width="10" height="10"/><text x="${W - 135}" y="27">demand (bids)</text>` +
    `<rect class="supply" x="${W - 150}" y="34" width="10" height="10"/><text x="${W - 135}" y="43">supply (asks)</text></g>`;
  return frame(label, body, { xLabel: "cumulative quantity (Wh)", yLabel: "price (µ/Wh)", xMax, yMax });
}

/** Lines over x: ``series`` is [{name, cls, points: [[x, y], ...]}]. */
export function lines(label, series, { xLabel, yLabel }) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) return raw(`<p class="muted">${esc(label)}: no data yet</p>`);
  const xMin = Math.min(...all.map((p) => p[0])), xMax = Math.max(xMin + 1, ...all.map((p) => p[0]));
  const yMax = niceMax(Math.max(1, ...all.map((p) => p[1])) * 1.1);
  const body = series.map((s, i) => {
    const cls = `s${i % SERIES}`;
    const d = s.points.map((p, k) => `${k ? "L" : "M"}${sx(p[0], xMax, xMin)},${sy(p[1], yMax) + i}`).join(" ");
    const dots = s.points.map((p) => `<circle class="${cls}" cx="${sx(p[0], xMax, xMin)}" cy="${sy(p[1], yMax) + i}" r="2.5"/>`).join("");
    return `<path class="${cls}" d="${d}"/>${dots}<rect class="${cls}" x="${W - 150}" y="${14 + 14 * i}" width="10" height="10"/>` +
      `<text x="${W - 136}" y="${23 + 14 * i}">${esc(s.name)}</text>`;
  }).join("");
  return frame(label, body, { xLabel, yLabel, xMax, yMax, xMin });
}

/** Paired horizontal bars per item: [{name, a, b}] with a and b in [0, 1]. */
export function pairedBars(label, items, { aName, bName }) {
  const rowH = 34, h = 30 + rowH * items.length, w = W;
  const bar = (v) => Math.max(0, Math.min(1, v)) * (w - 200);
  const body = items.map((it, i) => {
    const y = 26 + i * rowH;
    return `<text x="4" y="${y + 12}">${esc(it.name)}</text>` +
      `<rect class="a" x="150" y="${y}" width="${bar(it.a)}" height="12"/><text x="${154 + bar(it.a)}" y="${y + 10}">${(it.a * 100).toFixed(1)} %</text>` +
      `<rect class="b" x="150" y="${y + 14}" width="${bar(it.b)}" height="12"/><text x="${154 + bar(it.b)}" y="${y + 24}">${(it.b * 100).toFixed(1)} %</text>`;
  }).join("");
  const legend = `<rect class="a" x="150" y="4" width="10" height="10"/><text x="164" y="13">${esc(aName)}</text>` +
    `<rect class="b" x="320" y="4" width="10" height="10"/><text x="334" y="13">${esc(bName)}</text>`;
  return raw(`<svg class="chart" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(label)}"><title>${esc(label)}</title>${legend}${body}</svg>`);
}
