// views/import.js: start an import from a folder link, follow every running job live
// (SSE), show failed items with their reasons and retry them, list past jobs.

import { call, query, services } from "../api.js";
import { h, replace, toast } from "../dom.js";
import { checkFolderUrl } from "../folder-url.js";
import * as fmt from "../format.js";
import { follow } from "../sse.js";
import { errorNotice, fieldError, progressBar, showError } from "../ui.js";

const PAGE = 20;

export function mount(root) {
  const stop = new AbortController();
  const cards = new Map(); // job id → JobCard

  // ---------------------------------------------------------------- the form
  const input = h("input", {
    id: "folder-url", name: "folder_url", type: "url", required: true, autocomplete: "off",
    spellcheck: "false", placeholder: "https://drive.google.com/drive/folders/…",
    "aria-describedby": "folder-hint folder-error",
  });
  const error = h("p", { class: "field-error", id: "folder-error", hidden: true });
  const result = h("div");
  const button = h("button", { class: "button", type: "submit" }, "Import folder");
  const validate = () => {
    const check = checkFolderUrl(input.value);
    fieldError(input, error, check.error);
    return check;
  };
  input.addEventListener("blur", () => input.value && validate());
  input.addEventListener("input", () => input.getAttribute("aria-invalid") === "true" && validate());

  const form = h("form", { class: "card", novalidate: true, onsubmit: submit },
    h("div", { class: "row" },
      h("div", { class: "field grow" },
        h("label", { for: "folder-url" }, "Shared folder link"),
        input,
        h("p", { class: "hint", id: "folder-hint" },
          "A Google Drive folder shared as “Anyone with the link”, or a Dropbox shared folder link. Subfolders are included; files that are not images are skipped with a reason."),
        error),
      h("div", { class: "field" }, button)),
    result);

  async function submit(event) {
    event.preventDefault();
    showError(result, null);
    const check = validate();
    if (check.error) {
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const job = await call(services.import, `/import/${check.provider}`, {
        method: "POST", body: { folder_url: input.value.trim() },
      });
      input.value = "";
      addJob(job, { first: true });
      toast("Import started.");
    } catch (e) {
      showError(result, e);
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- the jobs
  const jobsList = h("div", { class: "jobs", "aria-live": "off" });
  const jobsStatus = h("div");
  const more = h("button", { class: "button subtle", type: "button", hidden: true, onclick: () => loadJobs() }, "Older imports");
  let cursor = null;

  function addJob(job, { first = false } = {}) {
    if (cards.has(job.id)) return cards.get(job.id).update(job);
    const card = new JobCard(job, stop.signal);
    cards.set(job.id, card);
    if (first) jobsList.prepend(card.el);
    else jobsList.append(card.el);
    jobsStatus.replaceChildren();
  }

  async function loadJobs() {
    more.disabled = true;
    try {
      const page = await call(services.import, `/imports${query({ limit: PAGE, cursor })}`, { signal: stop.signal });
      page.items.forEach((job) => addJob(job));
      cursor = page.next_cursor ?? null;
      more.hidden = !cursor;
      if (!cards.size) replace(jobsStatus, h("p", { class: "empty" }, "No imports yet. Paste a folder link above to start one."));
    } catch (e) {
      if (e.name !== "AbortError") replace(jobsStatus, errorNotice(e));
    } finally {
      more.disabled = false;
    }
  }

  root.append(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Import"), h("p", {}, "Copy every image of a Google Drive or Dropbox folder into your catalogue."))),
    form,
    h("h2", { class: "section-title" }, "Imports"),
    jobsStatus, jobsList, h("p", {}, more));
  loadJobs();
  input.focus();
  return () => stop.abort();
}

/** One job: title, state, live progress, counts, failed items and retry. */
class JobCard {
  constructor(job, signal) {
    this.signal = signal;
    this.following = null;
    this.bar = progressBar(`Progress of ${job.folder_name || "import"}`);
    this.title = h("span", { class: "job-title" });
    this.state = h("span", { class: "badge" });
    this.meta = h("div", { class: "job-meta" });
    this.counts = h("ul", { class: "counts" });
    this.message = h("div");
    this.actions = h("div", { class: "row actions" });
    this.failures = h("div", { class: "failures" });
    this.el = h("article", { class: "card job", dataset: { jobId: job.id } },
      h("div", { class: "job-head" }, h("div", {}, this.title, " ", this.state), this.meta),
      this.bar.el, this.counts, this.message, this.actions, this.failures);
    this.update(job);
  }

  update(job) {
    this.job = job;
    const c = job.counts;
    const settled = c.imported + c.skipped + c.failed;
    // States: listing (pages of the folder still being read), importing, completed, failed.
    const listing = job.state === "listing" || job.pages?.pending > 0;
    const running = job.state === "listing" || job.state === "importing";
    this.title.textContent = job.folder_name || job.folder_url;
    this.state.textContent = running ? (listing ? "listing folder" : "importing") : job.state;
    this.state.className = `badge ${running ? "running" : job.state}`;
    this.meta.textContent = `${fmt.source(job.provider)} · started ${fmt.dateTime(job.created_at)}`
      + (job.finished_at ? ` · finished ${fmt.dateTime(job.finished_at)}` : "");
    const fraction = running ? (c.discovered ? settled / c.discovered : 0) : 1;
    this.bar.set(running && listing ? Math.min(fraction, 0.99) : fraction,
      running ? "" : job.state === "failed" ? "failed" : "done");
    replace(this.counts,
      count("found", c.discovered), count("imported", c.imported), count("skipped", c.skipped),
      count("failed", c.failed), running ? count("in progress", c.in_progress) : null,
      h("li", {}, h("strong", {}, `${Math.round(fraction * 100)}%`)));
    replace(this.message, job.error ? errorNotice({ message: job.error.message, code: job.error.code, status: 0 }) : null);
    this.renderActions();
    if (running) this.follow();
    else if (c.failed > 0 && !this.failuresShown) this.showFailures();
  }

  renderActions() {
    const job = this.job;
    const finished = job.state === "completed" || job.state === "failed";
    const canRetry = finished && (job.counts.failed > 0 || job.pages?.failed > 0);
    replace(this.actions,
      canRetry ? h("button", { class: "button small", type: "button", onclick: () => this.retry() },
        `Retry ${fmt.count(job.counts.failed)} failed`) : null);
  }

  follow() {
    if (this.following) return;
    this.following = follow(services.import, `/imports/${this.job.id}/events`, {
      signal: this.signal,
      onEvent: (type, data) => {
        if (type === "progress" || type === "done") this.update(data);
        return type === "done";
      },
      onError: (error, { final }) => {
        if (final) replace(this.message, errorNotice(error));
      },
    }).finally(() => {
      this.following = null;
    });
  }

  async showFailures() {
    this.failuresShown = true;
    try {
      const page = await call(services.import,
        `/imports/${this.job.id}/items${query({ status: "failed", limit: 100 })}`, { signal: this.signal });
      if (!page.items.length) return this.failures.replaceChildren();
      replace(this.failures,
        h("h3", {}, "Failed items"),
        h("div", { class: "table-scroll" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "File"), h("th", { scope: "col" }, "Reason"), h("th", { scope: "col" }, "Details"))),
          h("tbody", {}, page.items.map((item) => h("tr", {},
            h("td", {}, item.path ? `${item.path}/${item.name}` : item.name),
            h("td", {}, h("code", {}, item.reason || "–")),
            h("td", {}, item.detail || "")))))),
        page.next_cursor ? h("p", { class: "hint" }, "Showing the first 100 failed items.") : null);
    } catch (e) {
      if (e.name !== "AbortError") replace(this.failures, errorNotice(e));
    }
  }

  async retry() {
    try {
      const result = await call(services.import, `/imports/${this.job.id}/retry`, { method: "POST", signal: this.signal });
      this.failuresShown = false;
      this.failures.replaceChildren();
      toast(`Retrying ${fmt.count(result.retried_items)} items.`);
      this.update(result.job);
    } catch (e) {
      if (e.name !== "AbortError") replace(this.message, errorNotice(e));
    }
  }
}

function count(label, n) {
  return h("li", {}, h("strong", {}, fmt.count(n)), ` ${label}`);
}
