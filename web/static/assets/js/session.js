// session.js: the signed-in seller. The token lives in sessionStorage (this tab only,
// gone when it closes); its payload is read for the seller id and expiry, never trusted
// for anything else: the services verify it.

const KEY = "vitrine.token";
const listeners = new Set();

function decode(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

export const session = {
  token: null,
  sellerId: null,
  expiresAt: null,
  /** Why the last session ended on its own (expired token), shown on the sign-in page. */
  endedBecause: null,

  restore() {
    const token = sessionStorage.getItem(KEY);
    if (token) this.set(token, { quiet: true });
  },

  set(token, { quiet = false } = {}) {
    const claims = decode(token);
    if (!claims?.sub || (claims.exp && claims.exp * 1000 <= Date.now())) {
      this.clear();
      return false;
    }
    this.token = token;
    this.sellerId = claims.sub;
    this.expiresAt = claims.exp ? new Date(claims.exp * 1000) : null;
    this.endedBecause = null;
    sessionStorage.setItem(KEY, token);
    if (!quiet) notify();
    return true;
  },

  clear() {
    this.token = null;
    this.sellerId = null;
    this.expiresAt = null;
    sessionStorage.removeItem(KEY);
    notify();
  },

  /** The services refused the token: back to sign in, saying why. */
  expire(reason) {
    if (!this.token) return;
    this.endedBecause = reason || "Your session ended. Sign in again.";
    this.clear();
  },

  onChange(fn) {
    listeners.add(fn);
  },
};

function notify() {
  for (const fn of listeners) fn(session);
}
