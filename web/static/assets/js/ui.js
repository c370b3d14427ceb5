// ui.js: pieces several views share: the error notice, field errors, a progress bar.

import { describe } from "./api.js";
import { h, replace } from "./dom.js";

/** A red notice for a failure, with the stable code in small print. */
export function errorNotice(error) {
  const { text, code } = describe(error);
  return h("div", { class: "notice error", role: "alert" }, text, code ? h("span", { class: "code" }, `(${code})`) : null);
}

/** Shows `error` (or nothing, when null) in `slot`. */
export function showError(slot, error) {
  if (error) replace(slot, errorNotice(error));
  else slot.replaceChildren();
}

/** Marks `input` invalid with `message` in `slot` (or clears both). */
export function fieldError(input, slot, message) {
  input.setAttribute("aria-invalid", message ? "true" : "false");
  slot.textContent = message || "";
  slot.hidden = !message;
}

/** A progress bar: returns {el, set(fraction, state)} where state is "", "done" or "failed". */
export function progressBar(label) {
  const fill = h("span");
  const el = h("div", {
    class: "progress",
    role: "progressbar",
    "aria-label": label,
    "aria-valuemin": 0,
    "aria-valuemax": 100,
    "aria-valuenow": 0,
  }, fill);
  return {
    el,
    set(fraction, state = "") {
      const percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
      fill.style.width = `${percent}%`;
      el.setAttribute("aria-valuenow", percent);
      el.className = `progress ${state}`.trim();
    },
  };
}
