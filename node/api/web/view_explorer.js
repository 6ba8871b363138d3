// Explorer: the node's status, the latest blocks with their authors by name, and a lookup
// that goes to the shareable view of a block, transaction, order, account or trade.
"use strict";
import { chain, get, validatorName } from "/web/api.js";
import { $, cards, fmt, html, link, short, table, time } from "/web/ui.js";

export async function mount(main) {
  main.innerHTML = html`<h2>Explorer</h2><div id="ex-status"></div>
    <form class="inline" id="lookup" role="search">
      <label>Block height, tx hash, order id, account address or trade id
        <input name="q" size="70" autocomplete="off"></label>
      <button>Look up</button><span class="msg" role="status" id="lookup-msg"></span></form>
    <h3>Latest blocks</h3><div id="ex-blocks"></div>`.s;
  $("#lookup").addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = e.target.q.value.trim();
    location.hash = await lookupRoute(q);
  });
  const refresh = async () => {
    const s = chain.status;
    $("#ex-status").innerHTML = cards([["height", fmt(s.height)], ["round", fmt(s.round)],
      ["leader", validatorName(s.leader)], ["peers", s.peers], ["syncing", String(s.syncing)],
      ["mempool", fmt(s.mempool_size)], ["current slot", s.market.current_slot], ["state root", short(s.state_root)]]).s;
    const rows = [];
    for (let h = s.height; h > 0 && h > s.height - 10; h--) {
      const b = await get(`/v1/blocks/${h}`);
      rows.push([link.block(b.height), b.round, validatorName(b.author), b.tx_count, time(b.timestamp_ms),
        html`<span class="h" title="${b.block_id}">${short(b.block_id)}</span>`]);
    }
    $("#ex-blocks").innerHTML = table(["height", "round", "author", "txs", "time", "block id"], rows, { caption: "Latest blocks" }).s;
  };
  await refresh();
  return { refresh };
}

/** The route a lookup string names: digits a block, 40 hex an account, 64 hex a tx or order, a-b a trade. */
export async function lookupRoute(q) {
  if (/^\d+$/.test(q)) return `#/block/${q}`;
  if (/^[0-9a-f]{40}$/.test(q)) return `#/account/${q}`;
  if (/^\d+-\d+$/.test(q)) return `#/trade/${q}`;
  if (/^[0-9a-f]{64}$/.test(q)) return `#/tx/${q}`;
  $("#lookup-msg").textContent = "not a height, hash, address or trade id";
  return location.hash;
}
