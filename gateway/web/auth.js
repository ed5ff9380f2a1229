// Accounts (SCRIBE_AUTH=keys): the API key this browser signed in with, kept in localStorage, and
// what the server says of it (GET /v1/me). A server without accounts answers /v1/me with 404
// no_accounts: then nothing here is sent, and the page works with jobs' tokens alone, as before.

const KEY = "scribe.key";
const MODE = "scribe.auth"; // "keys" once a server has asked for a key: the start page waits for /v1/me then

export const account = {
  mode: null, // "keys", "none", or null while not known (not asked yet, or the server could not be reached)
  key: null, // the API key, once the server has taken it
  me: null, // GET /v1/me: {user, plan, admin, key_prefix, quotas}
};

/** A key kept from an earlier visit (not yet checked). */
export function storedKey() {
  return localStorage.getItem(KEY);
}

/** Whether this browser has seen this server ask for keys (a hint, until /v1/me answers). */
export function expectsKeys() {
  return Boolean(storedKey()) || localStorage.getItem(MODE) === "keys";
}

function forgetKey() {
  account.key = null;
  account.me = null;
  localStorage.removeItem(KEY);
}

/** GET /v1/me with `key` (or none): what the server says, as {status, body}, or null if it could not be reached. */
async function me(key) {
  try {
    const response = await fetch("/v1/me", key ? { headers: { Authorization: `Bearer ${key}` } } : {});
    return { status: response.status, body: await response.json().catch(() => null) };
  } catch {
    return null;
  }
}

// What an answer of /v1/me means; the server's sentence when it refused the key.
function learn(answer, key) {
  const code = answer.body?.error?.code;
  if (answer.status === 200 && answer.body?.user) {
    Object.assign(account, { mode: "keys", key, me: answer.body });
    localStorage.setItem(KEY, key);
    localStorage.setItem(MODE, "keys");
    return { ok: true };
  }
  if (answer.status === 404 && code === "no_accounts") {
    account.mode = "none";
    forgetKey();
    localStorage.removeItem(MODE);
    return { ok: true };
  }
  if (answer.status === 401) {
    account.mode = "keys";
    localStorage.setItem(MODE, "keys");
    forgetKey();
    // Without a key the sentence is for programs ("send it as Authorization: …"): the form says it better.
    return { ok: false, message: key ? answer.body?.error?.message : undefined };
  }
  const message = answer.body?.error?.message || `The server answered ${answer.status}. Try again in a moment.`;
  return { ok: false, message };
}

const UNREACHABLE = "The server could not be reached. Check that it is running, then try again.";

/** On load: whether the server has accounts, and whether the stored key (if any) is still good. */
export async function check() {
  const key = storedKey();
  const answer = await me(key);
  if (answer && answer.status !== 429 && answer.status < 500) return learn(answer, key);
  // Busy or unreachable: the stored key is not known to be wrong, so it is used; the next answer says more.
  if (key) Object.assign(account, { mode: "keys", key });
  return { ok: false, message: answer ? answer.body?.error?.message : UNREACHABLE };
}

/** Sign in with `key`: kept if the server takes it; else the server's sentence. */
export async function signIn(key) {
  const answer = await me(key);
  return answer ? learn(answer, key) : { ok: false, message: UNREACHABLE };
}

/** GET /v1/me again (after a submit): the use of the plan's quotas. */
export async function refresh() {
  if (!account.key) return { ok: false };
  const answer = await me(account.key);
  if (!answer) return { ok: false };
  if (answer.status === 429 || answer.status >= 500) return { ok: false };
  return learn(answer, account.key);
}

export function signOut() {
  forgetKey();
}

/** The server refused the key (revoked meanwhile), or asked for one: the page signs in again. */
export function keyRefused() {
  account.mode = "keys";
  localStorage.setItem(MODE, "keys");
  forgetKey();
}

/** Whether this page may only read (a share link under keys, with no key): corrections need the owner's key. */
export function readOnly() {
  return account.mode === "keys" && !account.key;
}

/**
 * fetch() with the page's credentials: the API key when signed in, and a job's token when the page has
 * one (then as ?token=, since the key takes the Authorization header).
 */
export function apiFetch(path, { token = null, ...options } = {}) {
  const headers = { ...options.headers };
  let url = path;
  if (account.key) {
    headers.Authorization = `Bearer ${account.key}`;
    if (token) url += `${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
  } else if (token) {
    headers.Authorization = `Bearer ${token}`;
  }
  return fetch(url, { ...options, headers });
}

/** A websocket's subprotocols: the token's and, when signed in, the key's (a browser cannot set headers). */
export function subprotocols(token) {
  return [token ? `token.${token}` : null, account.key ? `key.${account.key}` : null].filter(Boolean);
}
