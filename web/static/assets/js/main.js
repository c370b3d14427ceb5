// main.js: the page's entry point. Loads /config.json, restores the session, and shows
// one view per URL hash: #/import, #/images, #/upload (sign-in when signed out).
//
// Modules: api.js (calls and error envelopes), session.js (the token), sse.js (live
// progress over fetch), folder-url.js (link checks), format.js (numbers, money, dates),
// dom.js (building elements safely), ui.js (shared pieces), views/*.js (one per screen).

import { describe, loadConfig } from "./api.js";
import { h, replace } from "./dom.js";
import { session } from "./session.js";
import * as importView from "./views/import.js";
import * as imagesView from "./views/images.js";
import * as signinView from "./views/signin.js";
import * as uploadView from "./views/upload.js";

const routes = {
  import: { view: importView, title: "Import" },
  images: { view: imagesView, title: "Images" },
  upload: { view: uploadView, title: "Upload & products" },
};
const DEFAULT_ROUTE = "import";

const main = document.getElementById("main");
const nav = document.querySelector(".nav");
const account = document.querySelector(".account");
let dispose = () => {};

function currentRoute() {
  const name = location.hash.replace(/^#\/?/, "").split(/[/?]/)[0];
  return routes[name] ? name : DEFAULT_ROUTE;
}

function render({ focus = true } = {}) {
  dispose();
  main.replaceChildren();
  const signedIn = Boolean(session.token);
  nav.hidden = !signedIn;
  account.hidden = !signedIn;
  if (!signedIn) {
    document.title = "Sign in · Vitrine";
    dispose = signinView.mount(main);
    return;
  }
  account.querySelector("[data-seller-id]").textContent = session.sellerId;
  const name = currentRoute();
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.route === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${routes[name].title} · Vitrine`;
  dispose = routes[name].view.mount(main) || (() => {});
  if (focus) main.focus({ preventScroll: true });
}

async function boot() {
  try {
    await loadConfig();
  } catch (e) {
    replace(main, h("div", { class: "notice error", role: "alert" },
      `The web UI could not load its configuration: ${describe(e).text}`));
    return;
  }
  session.restore();
  session.onChange(() => render());
  document.querySelector("[data-sign-out]").addEventListener("click", () => session.clear());
  window.addEventListener("hashchange", () => render());
  // Sign the seller out when the token expires while the page is open.
  setInterval(() => {
    if (session.expiresAt && session.expiresAt <= new Date()) session.expire("Your session expired. Sign in again.");
  }, 30_000);
  render({ focus: false });
}

boot();
