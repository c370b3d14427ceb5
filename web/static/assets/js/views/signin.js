// views/signin.js: sign in with the App Service's development issuer (POST /auth/token).

import { call, services } from "../api.js";
import { h } from "../dom.js";
import { session } from "../session.js";
import { fieldError, showError } from "../ui.js";

const SELLER_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

export function mount(root) {
  const input = h("input", {
    id: "seller-id", name: "seller_id", type: "text", autocomplete: "username",
    required: true, maxlength: 128, placeholder: "seller-42", "aria-describedby": "seller-hint seller-error",
  });
  const hint = h("p", { class: "hint", id: "seller-hint" },
    "Any id made of letters, digits and . _ : @ - (up to 128). Each seller sees only their own imports, images and products.");
  const error = h("p", { class: "field-error", id: "seller-error", hidden: true });
  const result = h("div");
  const button = h("button", { class: "button", type: "submit" }, "Sign in");

  const form = h("form", { class: "card", novalidate: true, onsubmit: submit },
    h("div", { class: "field" }, h("label", { for: "seller-id" }, "Seller id"), input, hint, error),
    button, result);

  async function submit(event) {
    event.preventDefault();
    const sellerId = input.value.trim();
    if (!SELLER_ID.test(sellerId)) {
      fieldError(input, error, "Use 1–128 letters, digits or . _ : @ - (no spaces).");
      input.focus();
      return;
    }
    fieldError(input, error, null);
    showError(result, null);
    button.disabled = true;
    try {
      const token = await call(services.app, "/auth/token", { method: "POST", body: { seller_id: sellerId }, auth: false });
      session.set(token.access_token);
    } catch (e) {
      showError(result, e);
    } finally {
      button.disabled = false;
    }
  }

  root.append(h("section", { class: "signin" },
    h("h1", {}, "Sign in to Vitrine"),
    h("p", { class: "lead" }, "Import product images from Google Drive or Dropbox, or upload them one by one."),
    session.endedBecause ? h("div", { class: "notice info", role: "status" }, session.endedBecause) : null,
    form,
    h("p", { class: "hint" }, "This stack signs you in with its development issuer (AUTH_DEV_LOGIN). A production deployment uses your identity provider's tokens instead.")));
  input.focus();
  return () => {};
}
