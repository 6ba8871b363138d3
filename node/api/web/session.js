// The loaded key: read from a local file into this page's memory, never sent, never stored.
// One key for the whole page, so moving between views keeps it; reloading the page forgets it.
"use strict";
import { findAccount } from "/web/api.js";
import { loadKeyFile } from "/web/signing.js";
import { html, say } from "/web/ui.js";

export const session = { key: null, onChange: null };

/** The key loader: a labelled file input; calls ``then`` with the key once loaded. */
export function keyLoader(id, then) {
  return {
    html: html`<form class="inline" id="${id}" aria-label="load a key file">
      <label>Key file (stays in this browser)<input type="file" name="keyfile" accept=".json,application/json"></label>
      <span class="msg" role="status" id="${id}-msg"></span></form>`,
    bind(root) {
      const form = root.querySelector(`#${id}`);
      form.keyfile.addEventListener("change", async () => {
        const file = form.keyfile.files[0];
        if (!file) return;
        try {
          session.key = await loadKeyFile(await file.text());
          say(root.querySelector(`#${id}-msg`), `loaded ${session.key.address}`, "ok");
          session.onChange?.();
          await then(session.key);
        } catch (e) {
          say(root.querySelector(`#${id}-msg`), e.message, "err");
        }
      });
    },
  };
}

export async function myAccount() {
  return session.key ? findAccount(session.key.address) : null;
}
