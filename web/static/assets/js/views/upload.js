// views/upload.js: the pre-signed upload flow in the browser, then a product.
//
// 1. The seller picks or drops an image; the browser hashes it (Web Crypto SHA-256).
// 2. App Service `POST /uploads` with name, type, size and hash → a signed upload URL.
// 3. `PUT` of the bytes straight to the Storage Service (XMLHttpRequest, for upload
//    progress); storage checks size, hash and the real image type, and answers the image.
// 4. App Service `POST /product` with that image id (an Idempotency-Key per form, so a
//    double submit makes one product). Products are listed with their images.

import { call, errorFrom, query, services } from "../api.js";
import { h, replace, toast } from "../dom.js";
import * as fmt from "../format.js";
import { errorNotice, fieldError, progressBar, showError } from "../ui.js";

const ACCEPT = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/avif"];
const CURRENCIES = ["EUR", "USD", "GBP", "CHF", "SEK", "PLN", "JPY", "CAD", "AUD"];
const PRODUCTS_PAGE = 24;

export function mount(root) {
  const stop = new AbortController();
  let uploaded = null; // the stored image, once the PUT succeeded
  let previewUrl = null;

  // ---------------------------------------------------------------- step 1–3: upload
  const fileInput = h("input", {
    id: "image-file", type: "file", accept: ACCEPT.join(","), class: "visually-hidden",
    onchange: () => fileInput.files[0] && start(fileInput.files[0]),
  });
  const dropzone = h("label", { class: "dropzone", for: "image-file" },
    fileInput,
    h("strong", {}, "Choose an image"), " or drop it here",
    h("span", { class: "hint" }, "JPEG, PNG, WebP, GIF or AVIF."));
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (e) => {
      e.preventDefault();
      dropzone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) dropzone.addEventListener(type, () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (file) start(file);
  });

  const facts = h("div");
  const steps = h("ol", { class: "steps", "aria-label": "Upload steps" });
  const bar = progressBar("Upload progress");
  bar.el.hidden = true;
  const uploadResult = h("div", { "aria-live": "polite" });

  const stepNames = ["Compute the SHA-256 of the file", "Ask for an upload URL", "Send the bytes to storage", "Stored and verified"];
  function setStep(active, failed = false) {
    replace(steps, stepNames.map((name, i) => h("li", {
      class: i < active ? "done" : i === active ? (failed ? "failed" : "active") : "",
    }, name)));
  }

  async function start(file) {
    uploaded = null;
    productForm.reset();
    renderProductForm();
    showError(uploadResult, null);
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    replace(facts, h("div", { class: "file-facts" },
      // A file the browser cannot draw (not really an image) shows no broken preview.
      h("img", { src: previewUrl, alt: `Preview of ${file.name}`, onerror: (e) => { e.target.hidden = true; } }),
      h("dl", {},
        h("dt", {}, "Name"), h("dd", {}, file.name),
        h("dt", {}, "Type"), h("dd", {}, file.type || "unknown"),
        h("dt", {}, "Size"), h("dd", {}, fmt.bytes(file.size)),
        h("dt", {}, "SHA-256"), h("dd", { class: "mono", "data-sha256": "" }, "…"))));
    bar.el.hidden = true;
    fileInput.disabled = true;
    let step = 0;
    try {
      setStep(step);
      const sha256 = await digest(file);
      facts.querySelector("[data-sha256]").textContent = sha256;
      setStep(++step);
      const ticket = await call(services.app, "/uploads", {
        method: "POST",
        body: { filename: file.name, content_type: file.type || "application/octet-stream", size: file.size, sha256 },
        signal: stop.signal,
      });
      setStep(++step);
      bar.el.hidden = false;
      bar.set(0);
      const image = await put(ticket, file, (fraction) => bar.set(fraction));
      bar.set(1, "done");
      setStep(++step + 1);
      uploaded = image;
      replace(uploadResult, h("div", { class: "notice ok" },
        "Stored as image ", h("code", {}, image.image_id), ` (${fmt.imageType(image.content_type)}, ${image.width}×${image.height}). Now describe the product.`));
      renderProductForm();
      productForm.querySelector("input[name=name]").focus();
    } catch (e) {
      if (e.name === "AbortError") return;
      setStep(step, true);
      if (!bar.el.hidden) bar.set(1, "failed");
      replace(uploadResult, h("div", {}, errorNotice(e),
        h("p", { class: "hint" }, "Nothing was stored. Pick another file to try again.")));
    } finally {
      fileInput.disabled = false;
      fileInput.value = "";
    }
  }

  // ---------------------------------------------------------------- step 4: product
  const productResult = h("div");
  const nameError = h("p", { class: "field-error", id: "name-error", hidden: true });
  const priceError = h("p", { class: "field-error", id: "price-error", hidden: true });
  const productButton = h("button", { class: "button", type: "submit" }, "Create product");
  const imageNote = h("p", { class: "hint" });
  let idempotencyKey = crypto.randomUUID();
  const productForm = h("form", { class: "card", novalidate: true, onsubmit: createProduct, "aria-labelledby": "product-title" },
    h("h2", { id: "product-title" }, "2. Create a product"),
    imageNote,
    h("div", { class: "field" },
      h("label", { for: "product-name" }, "Name"),
      h("input", { id: "product-name", name: "name", type: "text", required: true, maxlength: 200, "aria-describedby": "name-error" }),
      nameError),
    h("div", { class: "field" },
      h("label", { for: "product-description" }, "Description ", h("span", { class: "hint" }, "(optional)")),
      h("textarea", { id: "product-description", name: "description", maxlength: 5000 })),
    h("div", { class: "row" },
      h("div", { class: "field grow" },
        h("label", { for: "product-price" }, "Price"),
        h("input", { id: "product-price", name: "price", type: "text", inputmode: "decimal", required: true, placeholder: "19.99", "aria-describedby": "price-error" })),
      h("div", { class: "field" },
        h("label", { for: "product-currency" }, "Currency"),
        h("select", { id: "product-currency", name: "currency" }, CURRENCIES.map((c) => h("option", { value: c }, c))))),
    priceError,
    productButton,
    productResult);

  function renderProductForm() {
    const ready = Boolean(uploaded);
    for (const el of productForm.elements) el.disabled = !ready;
    imageNote.textContent = ready
      ? `Image: ${uploaded.filename} (${uploaded.image_id})`
      : "Upload an image first; the product will show it.";
  }

  async function createProduct(event) {
    event.preventDefault();
    const data = new FormData(productForm);
    const name = String(data.get("name") || "").trim();
    const currency = String(data.get("currency"));
    const price = fmt.toMinorUnits(String(data.get("price") || ""), currency);
    const nameInput = productForm.elements.name;
    const priceInput = productForm.elements.price;
    fieldError(nameInput, nameError, name ? (name.length > 200 ? "200 characters at most." : null) : "Give the product a name.");
    fieldError(priceInput, priceError, price.error || null);
    if (!name || name.length > 200) return nameInput.focus();
    if (price.error) return priceInput.focus();
    productButton.disabled = true;
    showError(productResult, null);
    try {
      const product = await call(services.app, "/product", {
        method: "POST",
        headers: { "Idempotency-Key": idempotencyKey },
        body: {
          name,
          description: String(data.get("description") || ""),
          price_minor: price.minor,
          currency,
          image_id: uploaded.image_id,
        },
        signal: stop.signal,
      });
      toast(`Product “${product.name}” created.`);
      idempotencyKey = crypto.randomUUID();
      uploaded = null;
      productForm.reset();
      replace(uploadResult, h("div", { class: "notice ok" }, `Product “${product.name}” created. Upload another image for the next one.`));
      steps.replaceChildren();
      bar.el.hidden = true;
      facts.replaceChildren();
      renderProductForm();
      products.prepend(productCard(product));
      productsEmpty.hidden = true;
    } catch (e) {
      if (e.name !== "AbortError") showError(productResult, e);
    } finally {
      productButton.disabled = !uploaded;
    }
  }

  // ---------------------------------------------------------------- products list
  const products = h("ul", { class: "products", "aria-label": "Products" });
  const productsEmpty = h("p", { class: "empty", hidden: true }, "No products yet.");
  const productsStatus = h("div");
  const moreProducts = h("button", { class: "button subtle", type: "button", hidden: true, onclick: () => loadProducts() }, "More products");
  let productsCursor = null;

  async function loadProducts() {
    moreProducts.disabled = true;
    try {
      const page = await call(services.app, `/products${query({ limit: PRODUCTS_PAGE, cursor: productsCursor })}`, { signal: stop.signal });
      products.append(...page.items.map(productCard));
      productsCursor = page.next_cursor ?? null;
      moreProducts.hidden = !productsCursor;
      productsEmpty.hidden = products.children.length > 0;
    } catch (e) {
      if (e.name !== "AbortError") replace(productsStatus, errorNotice(e));
    } finally {
      moreProducts.disabled = false;
    }
  }

  root.append(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Upload & products"),
        h("p", {}, "Upload an image straight to storage with a signed URL, then create a product with it."))),
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "upload-title" },
        h("h2", { id: "upload-title" }, "1. Upload an image"),
        dropzone, facts, steps, bar.el, uploadResult),
      productForm),
    h("h2", { class: "section-title" }, "Your products"),
    productsStatus, products, productsEmpty, h("p", { class: "center" }, moreProducts));
  renderProductForm();
  loadProducts();
  return () => {
    stop.abort();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
  };
}

function productCard(product) {
  return h("li", { class: "product", dataset: { productId: product.id } },
    product.image_url ? h("img", { src: product.image_url, alt: product.name, loading: "lazy" }) : h("img", { alt: "" }),
    h("div", { class: "body" },
      h("h3", {}, product.name),
      h("div", { class: "price" }, fmt.money(product.price_minor, product.currency)),
      product.description ? h("p", { class: "desc" }, product.description) : null));
}

/** Hex SHA-256 of the whole file (Web Crypto; the file is read once into memory). */
async function digest(file) {
  const hash = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** PUTs `file` as the ticket says, reporting progress; resolves to storage's answer. */
function put(ticket, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(ticket.method || "PUT", ticket.upload_url);
    for (const [name, value] of Object.entries(ticket.headers || {})) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = async () => {
      const response = new Response(xhr.responseText, {
        status: xhr.status,
        headers: { "content-type": xhr.getResponseHeader("content-type") || "", "x-request-id": xhr.getResponseHeader("x-request-id") || "" },
      });
      if (xhr.status >= 200 && xhr.status < 300) resolve(await response.json());
      else reject(await errorFrom(response, services.storage));
    };
    xhr.onerror = () => reject(new Error(`The upload to ${services.storage.base} did not complete (network error). Nothing was stored.`));
    xhr.send(file);
  });
}
