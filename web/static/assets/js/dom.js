// dom.js: building elements without innerHTML (no markup from data ever reaches the
// parser), and small focus/announce helpers.

/**
 * h("a", {href: "#", class: "x", onclick: fn}, "text", child, [more children])
 * Attributes starting with "on" become listeners; `null`/`false` attributes and
 * children are skipped; strings become text nodes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let toastHost;

/** A short message in the corner, also read out by screen readers. */
export function toast(message, kind = "info", ms = 5000) {
  toastHost ??= document.querySelector("[data-toasts]");
  const el = h("div", { class: `toast ${kind}` }, message);
  toastHost.append(el);
  setTimeout(() => el.remove(), ms);
}
