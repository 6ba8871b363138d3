// Small DOM helpers shared by the views: escaping, formatting, links to shareable routes,
// tables, cards and a status line for signed submissions.
"use strict";

export const $ = (s, root = document) => root.querySelector(s);
export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
export const short = (h) => (h ? String(h).slice(0, 10) + "…" : "");
export const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
export const time = (ms) => (ms ? new Date(ms).toLocaleTimeString("en-GB") : "–");

/** Raw HTML that ``html`` must not escape. */
export class Raw { constructor(s) { this.s = s; } toString() { return this.s; } }
export const raw = (s) => new Raw(s);
/** Template tag: interpolated values are escaped unless they are Raw (or arrays of them). */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => {
    const part = Array.isArray(v) ? v.map((x) => (x instanceof Raw ? x.s : esc(x))).join("") : v instanceof Raw ? v.s : esc(v);
    out += part + strings[i + 1];
  });
  return raw(out);
}

// Links to the shareable routes (app.js): every record the page shows links to its own view.
export const link = {
  account: (a, label) => (a ? html`<a class="h" href="#/account/${a}" title="${a}">${label ?? short(a)}</a>` : raw("–")),
  order: (id) => html`<a class="h" href="#/order/${id}" title="${id}">${short(id)}</a>`,
  trade: (id) => html`<a href="#/trade/${id}">${id}</a>`,
  block: (h) => html`<a href="#/block/${h}">${h}</a>`,
  slot: (s) => html`<a href="#/slot/${s}">${s}</a>`,
  tx: (h) => html`<a class="h" href="#/tx/${h}" title="${h}">${short(h)}</a>`,
};

/** A table: headers and rows of cells (each a string/number or Raw). */
export function table(headers, rows, { caption, empty = "none yet", id } = {}) {
  const head = headers.map((h) => html`<th scope="col">${h}</th>`);
  const body = rows.length ? rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)
    : [html`<tr><td colspan="${headers.length}" class="muted">${empty}</td></tr>`];
  return html`<table${raw(id ? ` id="${esc(id)}"` : "")}>${caption ? html`<caption>${caption}</caption>` : ""}<thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

export function cards(pairs, { id } = {}) {
  return html`<div class="cards"${raw(id ? ` id="${esc(id)}"` : "")}>${pairs.map(([k, v, tid]) =>
    html`<div class="card"${raw(tid ? ` data-testid="${esc(tid)}"` : "")}><span>${k}</span><b>${v}</b></div>`)}</div>`;
}

/** The values of a form's named fields. */
export function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** Show a message in an element with role=status (screen readers hear it). */
export function say(el, text, kind = "") {
  if (!el) return;
  el.textContent = text;
  el.className = "msg " + kind;
}
