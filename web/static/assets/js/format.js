// format.js: how numbers, sizes, dates, money and sources read on screen.

const sizeUnits = ["B", "KiB", "MiB", "GiB"];

export function bytes(n) {
  if (!Number.isFinite(n)) return "–";
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < sizeUnits.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 10 ? 0 : 1)} ${sizeUnits[unit]}`;
}

export function count(n) {
  return new Intl.NumberFormat().format(n ?? 0);
}

export function dateTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime())
    ? iso
    : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export const sourceNames = { google_drive: "Google Drive", dropbox: "Dropbox", upload: "Upload" };

export function source(s) {
  return sourceNames[s] ?? s;
}

/** "image/jpeg" → "JPEG". */
export function imageType(mime) {
  return (mime || "").replace(/^image\//, "").toUpperCase() || "–";
}

/** Digits after the decimal point for an ISO 4217 currency (JPY 0, BHD 3, EUR 2). */
export function currencyDigits(currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency })
      .resolvedOptions().maximumFractionDigits;
  } catch {
    return null;
  }
}

/** Minor units → "€12.50". */
export function money(minor, currency) {
  const digits = currencyDigits(currency);
  if (digits === null) return `${minor} ${currency}`;
  return new Intl.NumberFormat(undefined, { style: "currency", currency })
    .format(minor / 10 ** digits);
}

/**
 * "12.5" in EUR → 1250 (integer minor units), exactly: the text is split at the decimal
 * point instead of multiplying a float. Returns null with a reason when it cannot.
 */
export function toMinorUnits(text, currency) {
  const digits = currencyDigits(currency);
  if (digits === null) return { error: `${currency} is not a currency code this browser knows.` };
  const match = /^\s*(\d+)(?:[.,](\d*))?\s*$/.exec(text);
  if (!match) return { error: "Enter a price such as 19.99 (digits, one decimal point)." };
  const [, whole, fraction = ""] = match;
  if (fraction.length > digits) {
    return {
      error: digits === 0
        ? `${currency} has no minor unit: enter a whole number.`
        : `${currency} has ${digits} decimal places at most.`,
    };
  }
  const minor = BigInt(whole) * 10n ** BigInt(digits) + BigInt(fraction.padEnd(digits, "0") || "0");
  if (minor > BigInt(Number.MAX_SAFE_INTEGER)) return { error: "That price is too large." };
  return { minor: Number(minor) };
}
