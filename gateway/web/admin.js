// The operators' page, /admin: what the speech model cost per UTC day (an SVG chart drawn here), today's
// projection, the cost alerts, and the costliest users, jobs and models, from GET /v1/admin/costs.
// With accounts it needs an admin's API key, asked for and kept as the start page does (auth.js,
// account.js); without, the one user is the operator. `?days=N&until=YYYY-MM-DD` choose the window.

import { showAccount, wireAccount } from "./account.js";
import { account, apiFetch, check, keyRefused } from "./auth.js";

const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
const DAYS = [7, 30, 90, 366];
const ALERT_KINDS = {
  rise: "Rise over the day before",
  projected_rise: "Projected rise over the day before",
  daily: "Daily amount reached",
  projected_daily: "Daily amount projected",
};

const query = new URLSearchParams(location.search);
const view = {
  days: DAYS.includes(Number(query.get("days"))) ? Number(query.get("days")) : 30,
  until: /^\d{4}-\d{2}-\d{2}$/.test(query.get("until") || "") ? query.get("until") : null,
  costs: null, // the last answer, with isToday
  chartWidth: 0,
};

// Under a dollar (a minute of audio costs a fraction of a cent), to a hundredth of a cent.
function money(value, currency) {
  const digits = Math.abs(value) < 1 && value !== 0 ? 4 : 2;
  return new Intl.NumberFormat("en", {
    style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(value);
}

const plural = (count, word) => `${count.toLocaleString("en")} ${word}${count === 1 ? "" : "s"}`;

const both = (usd, gbp) => `${money(usd, "USD")} (${money(gbp, "GBP")})`;

// Spelled out: the browser's own short names differ between versions ("Sep" or "Sept").
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function shortDay(iso, withYear = false) {
  const [year, month, day] = iso.split("-").map(Number);
  return `${day} ${MONTHS[month - 1]}${withYear ? ` ${year}` : ""}`;
}

function svg(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text != null) element.textContent = text;
  return element;
}

/** A round top for the axis: 1, 2 or 5 times a power of ten, at least `value`. */
function niceMax(value) {
  if (!(value > 0)) return 0.01;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((top) => top >= value);
}

/**
 * Cost per day as bars, `width` pixels wide (drawn again when the page's width changes, so its text keeps its
 * size on a phone); the last day (today) also shows its projection to midnight as an outline.
 */
function chart(days, today, isToday, width) {
  const height = width < 500 ? 200 : 260;
  const left = 64;
  const right = 12;
  const top = 14;
  const bottom = 30;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const highest = Math.max(...days.map((d) => d.cost_usd), isToday ? today.projected_usd : 0);
  const axisTop = niceMax(highest);
  const y = (value) => top + plotHeight * (1 - value / axisTop);
  const slot = plotWidth / days.length;
  const barWidth = Math.max(1, slot * 0.72);
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-labelledby": "chart-title",
  });
  root.append(svg("title", { id: "chart-title" }, `Cost per day over ${days.length} days, the highest `
    + `${money(Math.max(...days.map((d) => d.cost_usd)), "USD")}`));
  for (const fraction of [0, 0.5, 1]) {
    const value = axisTop * fraction;
    root.append(svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid" }));
    root.append(svg("text", { x: left - 8, y: y(value) + 4, class: "axis", "text-anchor": "end" },
      money(value, "USD")));
  }
  const labelEvery = Math.ceil(days.length / Math.max(2, Math.floor(plotWidth / 64)));
  days.forEach((day, index) => {
    const x = left + index * slot + (slot - barWidth) / 2;
    const last = index === days.length - 1;
    if (last && isToday && today.projected_usd > day.cost_usd) {
      const projected = svg("rect", {
        x, width: barWidth, y: y(today.projected_usd), height: y(day.cost_usd) - y(today.projected_usd),
        class: "projected",
      });
      projected.append(svg("title", {}, `Projected by midnight UTC: ${both(today.projected_usd, today.projected_gbp)}`));
      root.append(projected);
    }
    const bar = svg("rect", {
      x, width: barWidth, y: y(day.cost_usd), height: Math.max(0, y(0) - y(day.cost_usd)),
      class: last && isToday ? "bar today" : "bar", "data-day": day.day,
    });
    const saved = day.saved_usd ? ` (saving ${both(day.saved_usd, day.saved_gbp)})` : "";
    const hits = day.cache_hits ? `, ${day.cache_hits} from the cache${saved}` : "";
    const calls = plural(day.calls, "call");
    bar.append(svg("title", {}, `${shortDay(day.day, true)}: ${both(day.cost_usd, day.cost_gbp)}, ${calls}${hits}`));
    root.append(bar);
    if ((days.length - 1 - index) % labelEvery === 0) {
      const middle = x + barWidth / 2;
      const clipped = middle + 28 > width; // the last label kept whole at the right edge
      root.append(svg("text", {
        x: clipped ? width - 2 : middle, y: height - 10, class: "axis", "text-anchor": clipped ? "end" : "middle",
      }, shortDay(day.day)));
    }
  });
  root.append(svg("line", { x1: left, x2: width - right, y1: y(0), y2: y(0), class: "baseline" }));
  return root;
}

function cell(text, numeric = false) {
  const element = document.createElement("td");
  element.textContent = text;
  if (numeric) element.className = "number";
  return element;
}

function fillTable(selector, rows, empty) {
  const body = $(`${selector} tbody`);
  if (!rows.length) {
    const row = document.createElement("tr");
    const only = cell(empty);
    only.colSpan = $(`${selector} thead tr`).children.length;
    only.className = "empty";
    row.append(only);
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(...rows.map((cells) => {
    const row = document.createElement("tr");
    row.append(...cells);
    return row;
  }));
}

function jobCell(job) {
  const element = document.createElement("td");
  const name = job.title || `Job ${job.job_id.slice(0, 8)}`;
  // An admin's key opens any job's page; without accounts a job's page needs its token, which this list lacks.
  if (account.key) {
    element.append(Object.assign(document.createElement("a"), { href: `/jobs/${job.job_id}`, textContent: name }));
  } else {
    element.textContent = name;
  }
  if (!job.title) element.title = job.job_id;
  return element;
}

function show(costs) {
  const isToday = costs.today.day === new Date().toISOString().slice(0, 10);
  const total = costs.total.cost_usd;
  $("#window-days").textContent = String(costs.days.length);
  $("#costs-title").title = `${costs.first_day} to ${costs.last_day} (UTC)`;
  $("#today-label").textContent = isToday ? "Today so far" : `On ${shortDay(costs.today.day, true)}`;
  $("#today-cost").textContent = both(costs.today.cost_usd, costs.today.cost_gbp);
  $("#today-projected").textContent = isToday ? both(costs.today.projected_usd, costs.today.projected_gbp) : "–";
  $("#total-label").textContent = `${shortDay(costs.first_day, true)} – ${shortDay(costs.last_day, true)}`;
  const saved = costs.total.saved_usd ? `, saving ${both(costs.total.saved_usd, costs.total.saved_gbp)}` : "";
  const hits = costs.total.cache_hits ? `, ${costs.total.cache_hits} from the cache (free${saved})` : "";
  $("#total-cost").textContent = both(total, costs.total.cost_gbp);
  $("#total-cost").append(Object.assign(document.createElement("small"), {
    textContent: `${plural(costs.total.calls, "call")}${hits}`,
  }));
  const perJob = costs.per_job;
  $("#per-job").textContent = perJob.jobs
    ? `${money(perJob.mean_usd, "USD")} mean`
    : "no jobs";
  if (perJob.jobs) {
    $("#per-job").append(Object.assign(document.createElement("small"), {
      textContent: `p90 ${money(perJob.p90_usd, "USD")}, max ${money(perJob.max_usd, "USD")} over `
        + plural(perJob.jobs, "job"),
    }));
  }
  $("#chart-note").textContent = isToday && costs.today.projected_usd > costs.today.cost_usd
    ? "; the outline is today's projection to midnight" : "";
  view.costs = { ...costs, isToday };
  drawChart();

  $("#alerts").hidden = !costs.alerts.length;
  $("#alerts-list").replaceChildren(...costs.alerts.map((alert) => {
    const item = document.createElement("li");
    const head = document.createElement("strong");
    head.textContent = `${shortDay(alert.day, true)} · ${ALERT_KINDS[alert.kind] || alert.kind}`;
    item.append(head, ` ${alert.message}`);
    return item;
  }));

  const share = (usd) => (total > 0 ? `${Math.round((usd / total) * 100)} %` : "–");
  fillTable("#top-users", costs.top_users.map((user) => [
    cell(user.user ?? "(no account)"), cell(money(user.cost_usd, "USD"), true), cell(money(user.cost_gbp, "GBP"), true),
    cell(user.calls.toLocaleString("en"), true), cell(share(user.cost_usd), true),
  ]), "No calls in these days.");
  fillTable("#top-jobs", costs.top_jobs.map((job) => [
    jobCell(job), cell(job.user ?? "–"), cell(money(job.cost_usd, "USD"), true), cell(money(job.cost_gbp, "GBP"), true),
    cell((job.billed_seconds / 60).toFixed(1), true),
  ]), "No jobs in these days.");
  fillTable("#models", costs.models.map((model) => [
    cell(model.model), cell(money(model.cost_usd, "USD"), true), cell(model.calls.toLocaleString("en"), true),
    cell(model.cache_hits.toLocaleString("en"), true), cell((model.billed_seconds / 60).toFixed(1), true),
  ]), "No calls in these days.");
  $("#costs").hidden = false;
}

function drawChart() {
  if (!view.costs) return;
  const { days, today, isToday } = view.costs;
  const width = Math.max(280, Math.round($("#chart").clientWidth));
  if (width === view.chartWidth && $("#chart svg")) return;
  view.chartWidth = width;
  $("#chart").replaceChildren(chart(days, today, isToday, width));
}

async function load() {
  const params = new URLSearchParams({ days: String(view.days) });
  if (view.until) params.set("until", view.until);
  $("#costs-error").textContent = "";
  let answer;
  try {
    answer = await apiFetch(`/v1/admin/costs?${params}`);
  } catch {
    $("#costs-error").textContent = "The server could not be reached. Check that it is running, then reload.";
    return;
  }
  const body = await answer.json().catch(() => null);
  if (answer.status === 401) {
    keyRefused();
    showAccount(body?.error?.message);
    $("#costs").hidden = true;
    return;
  }
  if (!answer.ok) {
    $("#costs").hidden = true;
    $("#costs-error").textContent = body?.error?.message || `The server answered ${answer.status}.`;
    return;
  }
  show(body);
  document.body.dataset.state = "shown";
}

/** After the account changed (or on load): the costs for an admin (or without accounts), else why not. */
async function refresh(message = "") {
  showAccount(message);
  $("#costs").hidden = true;
  if (account.mode === "keys" && !account.key) {
    document.body.dataset.state = "sign-in";
    return;
  }
  // A key not checked yet (the server was busy) is tried: the server's answer says the rest.
  if (account.mode === "keys" && account.me && !account.me.admin) {
    document.body.dataset.state = "not-admin";
    $("#costs-error").textContent = `${account.me.user} is not an admin: the service's costs need an `
      + "admin API key. Sign out and sign in with one.";
    return;
  }
  await load();
}

async function start() {
  $("#days").value = String(view.days);
  $("#days").addEventListener("change", () => {
    view.days = Number($("#days").value);
    const params = new URLSearchParams({ days: String(view.days), ...(view.until ? { until: view.until } : {}) });
    history.replaceState(null, "", `/admin?${params}`);
    load();
  });
  new ResizeObserver(drawChart).observe($("#chart"));
  wireAccount((message) => {
    $("#costs-error").textContent = "";
    refresh(message);
  });
  const checked = await check();
  if (account.mode === null) {
    document.body.dataset.state = "unreachable";
    $("#costs-error").textContent = checked.message || "The server could not be reached.";
    return;
  }
  await refresh(checked.ok ? "" : checked.message);
}

start();
