// views/images.js: the seller's imported images as a gallery: thumbnails from short-lived
// signed URLs, name, size, type and source on each card, a source filter, and keyset
// pages loaded as the end of the grid scrolls into view (or with the button).

import { call, query, services } from "../api.js";
import { h, replace } from "../dom.js";
import * as fmt from "../format.js";
import { errorNotice } from "../ui.js";

const PAGE = 60;

export function mount(root) {
  const stop = new AbortController();
  let generation = 0; // bumps when the filter changes: late pages of the old filter are dropped
  let cursor = null;
  let loading = false;
  let shown = 0;

  const filter = h("select", { id: "source-filter", name: "source", onchange: reset },
    h("option", { value: "" }, "All sources"),
    h("option", { value: "google_drive" }, "Google Drive"),
    h("option", { value: "dropbox" }, "Dropbox"));
  const grid = h("ul", { class: "gallery", "aria-label": "Images" });
  const status = h("p", { class: "gallery-status", role: "status" });
  const more = h("button", { class: "button subtle", type: "button", hidden: true, onclick: () => loadPage() }, "Load more");
  const sentinel = h("div", { "aria-hidden": "true" });
  // Whether the end of the grid is near the screen; a page that lands while it still is
  // (a fast scroller, a tall screen) loads the next one, as the observer will not fire again.
  let nearEnd = false;
  const observer = new IntersectionObserver((entries) => {
    nearEnd = entries[entries.length - 1].isIntersecting;
    if (nearEnd && cursor && !loading) loadPage();
  }, { rootMargin: "800px 0px" });
  observer.observe(sentinel);

  function reset() {
    generation += 1;
    cursor = null;
    shown = 0;
    grid.replaceChildren();
    loadPage({ first: true });
  }

  async function loadPage({ first = false } = {}) {
    if (loading && !first) return;
    const mine = generation;
    loading = true;
    more.disabled = true;
    status.textContent = "Loading images…";
    try {
      const page = await call(services.import,
        `/images${query({ source: filter.value, limit: PAGE, cursor: first ? null : cursor })}`,
        { signal: stop.signal });
      if (mine !== generation) return;
      grid.append(...page.items.map(tile));
      shown += page.items.length;
      cursor = page.next_cursor ?? null;
      more.hidden = !cursor;
      status.textContent = shown
        ? `${fmt.count(shown)} image${shown === 1 ? "" : "s"} shown${cursor ? "; more below" : ""}.`
        : "";
      if (!shown) {
        replace(status, h("span", { class: "empty" }, filter.value
          ? `No images from ${fmt.source(filter.value)} yet.`
          : "No images yet. Import a folder to fill your gallery."));
      }
    } catch (e) {
      if (e.name !== "AbortError" && mine === generation) replace(status, errorNotice(e));
    } finally {
      if (mine === generation) {
        loading = false;
        more.disabled = false;
        if (nearEnd && cursor && !stop.signal.aborted) requestAnimationFrame(() => nearEnd && cursor && !loading && loadPage());
      }
    }
  }

  root.append(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Images"), h("p", {}, "Everything imported into your catalogue, newest first.")),
      h("div", { class: "toolbar" },
        h("div", { class: "field" }, h("label", { for: "source-filter" }, "Source"), filter))),
    grid, sentinel, status, h("p", { class: "center" }, more));
  loadPage({ first: true });
  return () => {
    stop.abort();
    observer.disconnect();
  };
}

function tile(image) {
  const alt = image.name;
  return h("li", { class: "tile", dataset: { imageId: image.image_id, source: image.source } },
    h("div", { class: "thumb" },
      image.url ? h("img", { src: image.url, alt, loading: "lazy", decoding: "async", width: image.width || null, height: image.height || null }) : null),
    h("div", { class: "body" },
      h("span", { class: "name", title: image.name }, image.name),
      h("span", { class: "facts" },
        h("span", {}, fmt.bytes(image.size)),
        h("span", {}, fmt.imageType(image.mime_type)),
        image.width && image.height ? h("span", {}, `${image.width}×${image.height}`) : null),
      h("span", {}, h("span", { class: `badge ${image.source}` }, fmt.source(image.source)))));
}
