// The start page's account panel under SCRIBE_AUTH=keys: "Sign in with your API key", then who is
// signed in, on which plan, and how much of it is used this month and today (GET /v1/me).

import { account, signIn, signOut } from "./auth.js";

const $ = (selector) => document.querySelector(selector);

// What each counted quota is called on the page; the others (per recording, at a time) are rules, not counts.
const COUNTED = {
  jobs_per_month: (limit) => `job${limit === 1 ? "" : "s"} this month`,
  audio_minutes_per_day: () => "audio minutes today",
  audio_minutes_per_month: () => "audio minutes this month",
};

function amount(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function day(iso) {
  const date = new Date(iso);
  // Days and months are UTC (the server counts so): midnight UTC is still the day before west of Greenwich.
  return Number.isNaN(date.getTime())
    ? null : date.toLocaleDateString(undefined, { day: "numeric", month: "long", timeZone: "UTC" });
}

/** The plan's use: [{used, limit, label}] ("2 of 3 jobs this month"); its rules; when the month's counts reset. */
function usage(quotas) {
  const limited = (quotas || []).filter((quota) => quota.limit != null);
  const byName = Object.fromEntries(limited.map((quota) => [quota.name, quota]));
  const counts = Object.entries(COUNTED)
    .filter(([name]) => byName[name])
    .map(([name, label]) => {
      const { used, limit } = byName[name];
      return { used: used ?? 0, limit, label: label(limit) };
    });
  const { max_job_minutes: longest, concurrent_jobs: atOnce } = byName;
  const rules = [
    longest && `up to ${amount(longest.limit)} minutes per recording`,
    atOnce && `${atOnce.limit} job${atOnce.limit === 1 ? "" : "s"} at a time`,
  ].filter(Boolean);
  const month = byName.jobs_per_month || byName.audio_minutes_per_month;
  const reset = month?.resets_at && day(month.resets_at);
  return { counts, rules, reset: reset ? `Monthly counts start again on ${reset}.` : "" };
}

function showUsage() {
  const { user, plan, quotas } = account.me || {};
  $("#account-user").textContent = user || "";
  $("#account-plan").textContent = plan ? `${plan} plan` : "";
  const { counts, rules, reset } = usage(quotas);
  const list = $("#usage");
  if (!counts.length && !rules.length) {
    const unlimited = Object.assign(document.createElement("li"), { textContent: "Unlimited: nothing is counted." });
    list.replaceChildren(unlimited);
    $("#usage-note").textContent = "";
    return;
  }
  list.replaceChildren(...counts.map(({ used, limit, label }) => {
    const item = document.createElement("li");
    const count = document.createElement("strong");
    count.textContent = `${amount(used)} of ${amount(limit)}`;
    const bar = Object.assign(document.createElement("progress"), { max: limit, value: Math.min(used, limit) });
    bar.setAttribute("aria-hidden", "true"); // the words say it
    item.classList.toggle("used-up", used >= limit);
    const words = document.createElement("span");
    words.append(count, ` ${label}`);
    item.append(words, bar);
    return item;
  }));
  $("#usage-note").textContent = [rules.length ? `Your plan allows ${rules.join(", ")}.` : "", reset]
    .filter(Boolean).join(" ");
}

/**
 * The panel as the account stands: the sign-in form (with `message`, the server's sentence, if any),
 * who is signed in and their use, or nothing on a server without accounts.
 */
export function showAccount(message = "") {
  const keys = account.mode === "keys";
  $("#account").hidden = !keys;
  $("#sign-in").hidden = !keys || Boolean(account.key);
  $("#signed-in").hidden = !keys || !account.key;
  $("#sign-in-error").textContent = message || "";
  if (keys && account.key) showUsage();
}

/** The form's and the button's handlers; `changed(message)` after signing in or out (the server's sentence). */
export function wireAccount(changed) {
  $("#sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const field = $("#api-key");
    const key = field.value.trim();
    if (!key) {
      showAccount("Paste your API key first.");
      return;
    }
    if (!key.startsWith("sk_")) {
      showAccount("An API key starts with “sk_”: check that you pasted all of it.");
      return;
    }
    const button = $("#sign-in-button");
    button.disabled = true;
    button.textContent = "Signing in…";
    const result = await signIn(key);
    button.disabled = false;
    button.textContent = "Sign in";
    if (result.ok) field.value = "";
    changed(result.ok ? "" : result.message || "This API key was not accepted.");
    if (!result.ok) field.select();
  });
  $("#sign-out").addEventListener("click", () => {
    signOut();
    changed("");
    $("#api-key").focus();
  });
}
