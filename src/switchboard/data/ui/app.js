/* Switchboard dashboard: a hash-routed single page over the gateway's admin JSON endpoints.
 *
 * The admin key lives in sessionStorage (this tab only) and goes out as a Bearer token. All text from the
 * gateway is put in the page with textContent, never as HTML: model names and error messages come from clients.
 */
"use strict";

(function () {
  const KEY_STORE = "switchboard.adminKey";
  const RANGES = ["15m", "1h", "6h", "24h", "7d", "30d"];
  const state = { range: sessionStorage.getItem("switchboard.range") || "1h", timer: null, info: null };

  // ------------------------------------------------------------ DOM helpers

  /* h("div", {class: "x", onclick: fn}, child, "text", ...) */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);

  function table(columns, rows, opts = {}) {
    if (!rows.length) return h("div", { class: "empty" }, opts.empty || "Nothing yet.");
    const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)));
    const body = rows.map((r) => {
      const tr = h("tr", { class: opts.onclick ? "clickable" : null, dataset: opts.rowData ? opts.rowData(r) : null },
        columns.map((c) => h("td", { class: (c.num ? "num " : "") + (c.cls || "") }, c.cell(r))));
      if (opts.onclick) tr.addEventListener("click", () => opts.onclick(r));
      return tr;
    });
    return h("div", { class: "table-wrap" }, h("table", { id: opts.id || null }, h("thead", {}, head), h("tbody", {}, body)));
  }

  // ------------------------------------------------------------ formatting

  function money(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    if (a === 0) return "$0.00";
    if (a < 0.01) return "$" + v.toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
    // Up to four decimals, at least two: a balance of $4.9970 must not read as $5.00.
    if (a < 1000) return "$" + v.toFixed(4).replace(/(\.\d\d)(\d*?)0+$/, "$1$2");
    return "$" + Math.round(v).toLocaleString();
  }
  function count(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString(); }
  function ms(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    return (v >= 100 ? Math.round(v) : v.toFixed(1)) + " ms";
  }
  function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(v < 0.1 && v > 0 ? 1 : 0) + "%"; }
  function when(t) { return t ? new Date(t * 1000).toLocaleString() : "never"; }
  function ago(t) {
    if (!t) return "never";
    const s = Date.now() / 1000 - t;
    if (s < 60) return "just now";
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }
  function badge(text, cls) { return h("span", { class: "badge " + (cls || text) }, text.replace("_", "-")); }
  function statusBadge(code) { return badge(String(code), code < 400 ? "ok" : code === 429 || code === 499 ? "warn" : "bad"); }

  // ------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, opts = {}) {
    const key = sessionStorage.getItem(KEY_STORE);
    const headers = { authorization: `Bearer ${opts.key || key}` };
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    const resp = await fetch(path, { method: opts.method || "GET", headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined, cache: "no-store" });
    const text = await resp.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (!resp.ok) {
      if ((resp.status === 401 || resp.status === 403) && !opts.key) signOut("Your session is no longer valid: " +
        new ApiError(resp.status, body).message);
      throw new ApiError(resp.status, body);
    }
    return opts.raw ? text : body;
  }

  function showError(err) {
    const banner = $("banner");
    banner.textContent = err instanceof Error ? err.message : String(err);
    banner.hidden = false;
  }
  function clearError() { $("banner").hidden = true; }

  // ------------------------------------------------------------ sign-in and shell

  async function signIn(ev) {
    ev.preventDefault();
    const key = $("admin-key").value.trim();
    const error = $("signin-error");
    error.hidden = true;
    try {
      state.info = await api("/admin/dashboard/info", { key });
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    $("admin-key").value = "";
    if (!location.hash || location.hash === "#/signin") location.hash = "#/overview";
    showShell();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORE);
    stopTimer();
    $("shell").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.hidden = !message;
    error.textContent = message || "";
  }

  function showShell() {
    $("signin").hidden = true;
    $("shell").hidden = false;
    const info = state.info;
    if (info) $("gateway-info").textContent = `v${info.version} · ${info.storage} · ${info.models.length} models`;
    route();
  }

  function stopTimer() { if (state.timer) { clearInterval(state.timer); state.timer = null; } }
  function every(seconds, fn) {
    stopTimer();
    state.timer = setInterval(() => { if (!document.hidden) fn().catch(showError); }, seconds * 1000);
  }

  const PAGES = {};

  async function route() {
    if (!sessionStorage.getItem(KEY_STORE)) return signOut();
    stopTimer();
    clearError();
    const [, name, ...rest] = (location.hash || "#/overview").slice(1).split("?")[0].split("/");
    const page = PAGES[name] ? name : "overview";
    document.querySelectorAll(".sidebar a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
    const root = $("page");
    root.textContent = "";
    root.dataset.page = page;
    root.dataset.ready = "";
    try {
      await PAGES[page](root, rest.map(decodeURIComponent));
      root.dataset.ready = "1";
    } catch (err) {
      showError(err);
    }
  }

  function rangePicker(onchange) {
    const seg = h("div", { class: "seg", id: "range" });
    for (const r of RANGES) {
      seg.appendChild(h("button", { type: "button", class: r === state.range ? "on" : null, dataset: { range: r },
        onclick: () => {
          state.range = r;
          sessionStorage.setItem("switchboard.range", r);
          seg.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b.dataset.range === r));
          onchange().catch(showError);
        } }, r));
    }
    return seg;
  }

  function head(title, subtitle, ...tools) {
    return h("div", { class: "page-head" }, h("div", {}, h("h1", {}, title), subtitle ? h("div", { class: "muted" }, subtitle) : null),
      h("div", { class: "toolbar" }, tools));
  }

  // ------------------------------------------------------------ overview

  PAGES.overview = async function (root) {
    const body = h("div", { id: "overview" });
    root.append(head("Overview", "Traffic, spend, latency and routing across the gateway.", rangePicker(load)), body);
    async function load() {
      const d = await api(`/admin/dashboard/overview?range=${state.range}`);
      renderOverview(body, d);
    }
    await load();
    every(15, load);
  };

  function renderOverview(body, d) {
    const t = d.totals;
    body.textContent = "";
    const stat = (id, label, value, sub) => h("div", { class: "stat", id: "stat-" + id },
      h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "sub" }, sub || ""));
    body.appendChild(h("div", { class: "stats" },
      stat("requests", "Requests", count(t.requests), `${count(t.prompt_tokens + t.completion_tokens)} tokens`),
      stat("errors", "Errors", count(t.errors), `${pct(t.error_rate)} of requests`),
      stat("spend", "Spend", money(t.spend), `in the last ${state.range}`),
      stat("p50", "Latency p50", ms(t.p50_ms), "successful requests"),
      stat("p95", "Latency p95", ms(t.p95_ms), "successful requests"),
      stat("saving", "Routing saved", money(d.routers.reduce((a, r) => a + r.saving, 0)),
        d.routers.length ? "vs. all-strong" : "no routers configured")));

    const times = d.series.map((p) => p.t);
    const chartPanel = (title, id) => {
      const box = h("div", { class: "chart-box", id });
      return [h("div", { class: "panel" }, h("h2", {}, title), box), box];
    };
    const [reqPanel, reqBox] = chartPanel("Requests and errors", "chart-requests");
    const [spendPanel, spendBox] = chartPanel("Spend", "chart-spend");
    const [latPanel, latBox] = chartPanel("Latency (successful requests)", "chart-latency");
    body.appendChild(h("div", { class: "grid3 row-gap" }, reqPanel, spendPanel, latPanel));
    Charts.timeChart(reqBox, { times, kind: "bars", label: "requests", format: (v) => count(Math.round(v)), series: [
      { name: "ok", color: "#2454d6", values: d.series.map((p) => p.requests - p.errors) },
      { name: "errors", color: "#c8312b", values: d.series.map((p) => p.errors) }] });
    Charts.timeChart(spendBox, { times, kind: "bars", label: "spend", format: money, legend: false,
      series: [{ name: "spend", color: "#1a8f4c", values: d.series.map((p) => p.spend) }] });
    Charts.timeChart(latBox, { times, kind: "line", label: "latency", format: ms, series: [
      { name: "p50", color: "#2454d6", values: d.series.map((p) => p.p50_ms) },
      { name: "p95", color: "#c27c0e", values: d.series.map((p) => p.p95_ms) }] });

    body.appendChild(h("div", { class: "grid2 row-gap" },
      h("div", { class: "panel" }, h("h2", {}, "Top keys by spend"), table([
        { label: "Key", cell: (r) => h("a", { href: `#/requests?key=${encodeURIComponent(r.key_id || "")}` }, r.name) },
        { label: "Requests", num: true, cell: (r) => count(r.requests) },
        { label: "Errors", num: true, cell: (r) => count(r.errors) },
        { label: "Tokens", num: true, cell: (r) => count(r.tokens) },
        { label: "Spend", num: true, cell: (r) => money(r.spend) }], d.top_keys, { id: "top-keys", empty: "No traffic in this range." })),
      h("div", { class: "panel" }, h("h2", {}, "Top models by spend"), table([
        { label: "Model", cell: (r) => r.model || "(none)" },
        { label: "Requests", num: true, cell: (r) => count(r.requests) },
        { label: "Errors", num: true, cell: (r) => count(r.errors) },
        { label: "Avg latency", num: true, cell: (r) => ms(r.avg_latency_ms) },
        { label: "Spend", num: true, cell: (r) => money(r.spend) }], d.top_models, { id: "top-models", empty: "No traffic in this range." }))));

    const routers = h("div", { class: "panel", id: "routers" }, h("h2", {}, "Routing: strong / weak split and saving"));
    if (!d.routers.length) routers.appendChild(h("div", { class: "empty" }, "No router is configured (see docs/routing.md)."));
    else routers.appendChild(table([
      { label: "Router", cell: (r) => r.router },
      { label: "Split", cell: (r) => { const c = h("div", {}); Charts.splitBar(c, [
        { label: "strong", value: r.strong, color: "#7a3fd1" }, { label: "weak", value: r.weak, color: "#16a2b8" },
        { label: "other", value: r.other, color: "#98a2b3" }]); return c; } },
      { label: "Strong", num: true, cell: (r) => `${count(r.strong)} (${pct(r.strong_share)})` },
      { label: "Weak", num: true, cell: (r) => count(r.weak) },
      { label: "Models", cell: (r) => h("span", { class: "small muted" }, `${r.strong_model} / ${r.weak_model}`) },
      { label: "Cost", num: true, cell: (r) => money(r.cost) },
      { label: "If all strong", num: true, cell: (r) => money(r.cost_if_strong) },
      { label: "Saved", num: true, cell: (r) => `${money(r.saving)} (${pct(r.saving_pct)})` }], d.routers, { id: "router-table" }));
    body.appendChild(routers);
  }

  // ------------------------------------------------------------ models and deployments

  PAGES.models = async function (root) {
    const body = h("div", { id: "models" });
    root.append(head("Models and deployments", "Live breaker state and load; traffic from the request log.",
      h("span", { class: "muted small", id: "models-updated" }), rangePicker(load)), body);
    async function load() {
      const d = await api(`/admin/dashboard/deployments?range=${state.range}`);
      body.textContent = "";
      for (const m of d.models) {
        body.appendChild(h("div", { class: "panel model", dataset: { model: m.name } },
          h("h2", {}, m.name, " ", h("span", { class: "muted small" }, `strategy ${m.strategy}` +
            (m.fallbacks.length ? ` · falls back to ${m.fallbacks.join(", ")}` : ""))),
          table([
            { label: "Deployment", cell: (r) => h("div", {}, h("div", { class: "mono" }, r.id),
              h("div", { class: "muted small" }, `${r.provider} · ${r.upstream_model}`)) },
            { label: "Breaker", cell: (r) => r.breaker ? h("div", {}, badge(r.breaker.state),
              r.breaker.state === "open" ? h("div", { class: "small muted" }, `cooldown ${r.breaker.cooldown_remaining_s.toFixed(1)} s`) : null,
              r.breaker.consecutive_failures ? h("div", { class: "small muted" }, `${r.breaker.consecutive_failures} failures in a row`) : null)
              : "–" },
            { label: "In flight", num: true, cell: (r) => r.live ? count(r.live.in_flight) : "–" },
            // The balancer counts the last minute only where the deployment has an rpm/tpm limit to respect.
            { label: "Last min / limit", num: true, cell: (r) => r.live && (r.rpm_limit || r.tpm_limit) ? [
              r.rpm_limit ? `${count(Math.round(r.live.rpm))}/${count(r.rpm_limit)} req` : null,
              r.tpm_limit ? `${count(Math.round(r.live.tpm))}/${count(r.tpm_limit)} tok` : null].filter(Boolean).join(" · ") : "–" },
            { label: `Requests (${state.range})`, num: true, cell: (r) => count(r.traffic.requests) },
            { label: "Error rate", num: true, cell: (r) => h("span", { class: r.traffic.error_rate > 0.05 ? "error" : null },
              pct(r.traffic.error_rate)) },
            { label: "Failed attempts", num: true, cell: (r) => count(r.failed_attempts) },
            { label: "p50 / p95", num: true, cell: (r) => `${ms(r.traffic.p50_ms)} / ${ms(r.traffic.p95_ms)}` },
            { label: "Spend", num: true, cell: (r) => money(r.traffic.spend) },
            { label: "Last used", num: true, cell: (r) => ago(r.traffic.last_used) }], m.deployments,
          { rowData: (r) => ({ deployment: r.id }) })));
      }
      if (d.routers.length) body.appendChild(h("div", { class: "panel" }, h("h2", {}, "Routers"), table([
        { label: "Router", cell: (r) => r.name }, { label: "Strong", cell: (r) => r.strong }, { label: "Weak", cell: (r) => r.weak }],
        d.routers)));
      $("models-updated").textContent = "updated " + new Date().toLocaleTimeString();
    }
    await load();
    every(3, load);
  };

  // ------------------------------------------------------------ keys

  PAGES.keys = async function (root) {
    const body = h("div", { id: "keys" });
    const showRevoked = h("input", { type: "checkbox", id: "show-revoked" });
    showRevoked.addEventListener("change", () => load().catch(showError));
    root.append(head("Keys", "API keys with their spend, credit, limits and last use.",
      h("label", { class: "small muted" }, showRevoked, " show revoked"),
      h("button", { id: "create-key", onclick: () => createKeyDialog(load) }, "Create key")), body);
    async function load() {
      const [keys, usage] = await Promise.all([
        api(`/admin/keys${showRevoked.checked ? "?include_revoked=true" : ""}`),
        api("/admin/dashboard/keys-usage?range=24h")]);
      body.textContent = "";
      const rows = keys.data.map((k) => ({ ...k, usage: usage.data[k.id] || { spend: 0, spend_recent: 0, requests: 0, last_used: null } }));
      rows.sort((a, b) => (b.usage.spend - a.usage.spend) || (b.created_at - a.created_at));
      body.appendChild(h("div", { class: "panel" }, table([
        { label: "Name", cell: (k) => h("div", {}, h("div", {}, k.name), h("div", { class: "mono muted" }, k.prefix)) },
        { label: "Team", cell: (k) => k.team || "–" },
        { label: "Status", cell: (k) => badge(k.status) },
        { label: "Spend (all)", num: true, cell: (k) => money(k.usage.spend) },
        { label: "Spend (24h)", num: true, cell: (k) => money(k.usage.spend_recent) },
        { label: "Balance", num: true, cell: (k) => k.credit && k.credit.prepaid ? h("span", {
          class: k.credit.available_usd <= 0 ? "error" : null }, money(k.credit.available_usd)) : h("span", { class: "muted" }, "postpaid") },
        { label: "Limits", cell: (k) => limitsText(k) },
        { label: "Requests", num: true, cell: (k) => count(k.usage.requests) },
        { label: "Last used", num: true, cell: (k) => h("span", { title: when(k.usage.last_used) }, ago(k.usage.last_used)) },
        { label: "", cell: (k) => k.status === "revoked" ? "" : h("div", { class: "toolbar" },
          h("button", { class: "small secondary", dataset: { action: "topup" }, onclick: () => topUpDialog(k, load) }, "Top up"),
          h("button", { class: "small secondary", dataset: { action: "limits" }, onclick: () => limitsDialog(k, load) }, "Limits"),
          h("button", { class: "small danger", dataset: { action: "revoke" }, onclick: () => revokeDialog(k, load) }, "Revoke")) },
      ], rows, { id: "keys-table", empty: "No keys yet. Create one to give an application access.",
        rowData: (k) => ({ keyId: k.id }) })));
    }
    await load();
  };

  function limitsText(k) {
    const parts = [];
    if (k.rpm) parts.push(`${count(k.rpm)} rpm`);
    if (k.tpm) parts.push(`${count(k.tpm)} tpm`);
    if (k.max_parallel) parts.push(`${k.max_parallel} parallel`);
    for (const b of (k.credit && k.credit.budgets) || []) {
      const cap = b.limit_usd !== undefined ? b.limit_usd : b.cap_usd;
      if (cap !== undefined && cap !== null) parts.push(`${money(cap)}/${b.period}${b.soft ? " (soft)" : ""}`);
    }
    if (k.allowed_models) parts.push(`models: ${k.allowed_models.join(", ")}`);
    return parts.length ? h("span", { class: "small" }, parts.join(" · ")) : h("span", { class: "muted" }, "none");
  }

  /* A modal form; `fields` are [label, input] pairs; `submit` gets the form and returns true to close. */
  function dialog(title, fields, submitLabel, submit, extra) {
    const dlg = $("dialog"), form = $("dialog-form");
    form.textContent = "";
    const error = h("p", { class: "error", role: "alert", hidden: true });
    form.append(h("h2", {}, title), extra || "", h("div", { class: "form-grid" }, fields.flat()), error,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => dlg.close() }, "Cancel"),
        h("button", { type: "submit", id: "dialog-submit", value: "ok" }, submitLabel)));
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      try {
        if (await submit()) dlg.close();
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
      }
    };
    dlg.showModal();
  }

  const numOrNull = (input) => (input.value.trim() === "" ? null : Number(input.value));

  function createKeyDialog(reload) {
    const name = h("input", { id: "key-name", required: true, placeholder: "e.g. search-backend" });
    const team = h("input", { id: "key-team", placeholder: "optional" });
    const credit = h("input", { id: "key-credit", type: "number", min: "0", step: "0.01", placeholder: "empty: postpaid" });
    const rpm = h("input", { id: "key-rpm", type: "number", min: "1", placeholder: "no limit" });
    const tpm = h("input", { id: "key-tpm", type: "number", min: "1", placeholder: "no limit" });
    const models = h("input", { id: "key-models", placeholder: "all models (or: small, big)" });
    dialog("Create key", [[h("label", { for: "key-name" }, "Name"), name], [h("label", { for: "key-team" }, "Team"), team],
      [h("label", { for: "key-credit" }, "Prepaid credit (USD)"), credit], [h("label", { for: "key-rpm" }, "Requests / min"), rpm],
      [h("label", { for: "key-tpm" }, "Tokens / min"), tpm], [h("label", { for: "key-models" }, "Allowed models"), models]],
    "Create", async () => {
      const body = { name: name.value.trim() };
      if (team.value.trim()) body.team = team.value.trim();
      if (credit.value.trim() !== "") body.credits_usd = Number(credit.value);
      if (rpm.value.trim() !== "") body.rpm = Number(rpm.value);
      if (tpm.value.trim() !== "") body.tpm = Number(tpm.value);
      if (models.value.trim()) body.allowed_models = models.value.split(",").map((s) => s.trim()).filter(Boolean);
      const created = await api("/admin/keys", { method: "POST", body });
      showSecret(created);
      reload().catch(showError);
      return false; // the dialog now shows the secret
    });
  }

  function showSecret(created) {
    const form = $("dialog-form");
    form.textContent = "";
    const copied = h("span", { class: "muted small" });
    form.append(h("h2", {}, `Key “${created.name}” created`),
      h("p", {}, "Copy the secret now: it is shown only this once and cannot be recovered."),
      h("div", { class: "secret mono", id: "new-key-secret" }, created.key),
      h("div", { class: "actions" }, copied,
        h("button", { type: "button", class: "secondary", onclick: async () => {
          try { await navigator.clipboard.writeText(created.key); copied.textContent = "copied"; }
          catch (e) { copied.textContent = "select the text and copy it"; }
        } }, "Copy"),
        h("button", { type: "button", id: "secret-done", onclick: () => $("dialog").close() }, "Done")));
    form.onsubmit = (ev) => ev.preventDefault();
  }

  function topUpDialog(k, reload) {
    const amount = h("input", { id: "topup-amount", type: "number", step: "0.01", min: "0.01", required: true });
    const note = h("input", { id: "topup-note", placeholder: "optional" });
    const current = k.credit ? `Balance now ${money(k.credit.balance_usd)}${k.credit.prepaid ? "" : " (postpaid key: a top-up makes it prepaid only if you set it)"}` : "";
    dialog(`Top up “${k.name}”`, [[h("label", { for: "topup-amount" }, "Amount (USD)"), amount], [h("label", { for: "topup-note" }, "Note"), note]],
      "Add credit", async () => {
        const body = { amount_usd: Number(amount.value), kind: "topup" };
        if (note.value.trim()) body.note = note.value.trim();
        await api(`/admin/keys/${encodeURIComponent(k.id)}/credits`, { method: "POST", body });
        await reload();
        return true;
      }, h("p", { class: "muted" }, current));
  }

  function limitsDialog(k, reload) {
    const rpm = h("input", { id: "limit-rpm", type: "number", min: "1", value: k.rpm || "", placeholder: "no limit" });
    const tpm = h("input", { id: "limit-tpm", type: "number", min: "1", value: k.tpm || "", placeholder: "no limit" });
    const par = h("input", { id: "limit-parallel", type: "number", min: "1", value: k.max_parallel || "", placeholder: "no limit" });
    const budgets = (k.credit && k.credit.budgets) || [];
    const capOf = (period) => { const b = budgets.find((x) => x.period === period && !x.soft); if (!b) return "";
      const v = b.limit_usd !== undefined ? b.limit_usd : b.cap_usd; return v === null || v === undefined ? "" : v; };
    const day = h("input", { id: "limit-day", type: "number", min: "0", step: "0.01", value: capOf("day"), placeholder: "no budget" });
    const month = h("input", { id: "limit-month", type: "number", min: "0", step: "0.01", value: capOf("month"), placeholder: "no budget" });
    dialog(`Limits of “${k.name}”`, [[h("label", { for: "limit-rpm" }, "Requests / min"), rpm],
      [h("label", { for: "limit-tpm" }, "Tokens / min"), tpm], [h("label", { for: "limit-parallel" }, "Parallel requests"), par],
      [h("label", { for: "limit-day" }, "Daily budget (USD)"), day], [h("label", { for: "limit-month" }, "Monthly budget (USD)"), month]],
    "Save", async () => {
      const body = { rpm: numOrNull(rpm), tpm: numOrNull(tpm), max_parallel: numOrNull(par), budgets: [] };
      if (numOrNull(day) !== null) body.budgets.push({ period: "day", limit_usd: numOrNull(day) });
      if (numOrNull(month) !== null) body.budgets.push({ period: "month", limit_usd: numOrNull(month) });
      // keep soft budgets as they are
      for (const b of budgets.filter((x) => x.soft)) body.budgets.push({ period: b.period, soft: true,
        limit_usd: b.limit_usd !== undefined ? b.limit_usd : b.cap_usd });
      await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "PATCH", body });
      await reload();
      return true;
    });
  }

  function revokeDialog(k, reload) {
    dialog(`Revoke “${k.name}”?`, [], "Revoke", async () => {
      await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
      await reload();
      return true;
    }, h("p", {}, "Requests with this key are refused from now on (on every replica within a second). This cannot be undone."));
    $("dialog-submit").classList.add("danger");
  }

  // ------------------------------------------------------------ requests

  function hashQuery() {
    const i = location.hash.indexOf("?");
    return new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : "");
  }

  PAGES.requests = async function (root, rest) {
    const id = rest.length ? rest[0] : "";
    if (id) return requestDetail(root, id);
    const initial = hashQuery();
    const key = h("input", { id: "filter-key", placeholder: "key id", value: initial.get("key") || "", size: 14 });
    const model = h("input", { id: "filter-model", placeholder: "model", value: initial.get("model") || "", size: 12 });
    const status = h("select", { id: "filter-status" }, [["", "any status"], ["ok", "ok"], ["error", "errors"], ["429", "429"],
      ["402", "402"], ["502", "502"], ["503", "503"]].map(([v, t]) => h("option", { value: v }, t)));
    status.value = initial.get("status") || "";
    const range = h("select", { id: "filter-range" }, [["", "all time"], ...RANGES.map((r) => [r, "last " + r])]
      .map(([v, t]) => h("option", { value: v }, t)));
    range.value = initial.get("range") || "";
    const body = h("div", { id: "requests" });
    const more = h("button", { class: "secondary", id: "load-more", hidden: true }, "Load more");
    let before = null;
    const apply = () => { before = null; load(false).catch(showError); };
    for (const input of [status, range]) input.addEventListener("change", apply);
    const form = h("form", { class: "toolbar", onsubmit: (ev) => { ev.preventDefault(); apply(); } }, key, model, status, range,
      h("button", { type: "submit", id: "apply-filters" }, "Filter"));
    root.append(head("Requests", "Every request the gateway answered, newest first. Click one for its attempts and routing."), h("div", { class: "panel" }, form), body, more);
    let rows = [];
    async function load(append) {
      const p = new URLSearchParams({ limit: "50" });
      if (key.value.trim()) p.set("key", key.value.trim());
      if (model.value.trim()) p.set("model", model.value.trim());
      if (status.value) p.set("status", status.value);
      if (range.value) p.set("since", String(Date.now() / 1000 - { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 }[range.value]));
      if (append && before) p.set("before", String(before));
      const d = await api(`/admin/dashboard/requests?${p}`);
      rows = append ? rows.concat(d.data) : d.data;
      before = d.next_before;
      more.hidden = !d.has_more;
      body.textContent = "";
      body.appendChild(h("div", { class: "panel" }, table([
        { label: "Time", cell: (r) => h("span", { title: when(r.ts) }, new Date(r.ts * 1000).toLocaleTimeString()) },
        { label: "Request", cell: (r) => h("a", { class: "mono", href: `#/requests/${encodeURIComponent(r.request_id)}` }, r.request_id.slice(0, 18)) },
        { label: "Key", cell: (r) => h("span", { class: "mono" }, r.key_id || "–") },
        { label: "Model", cell: (r) => r.model_used && r.model_used !== r.model_requested ? `${r.model_requested} → ${r.model_used}` : (r.model_requested || "–") },
        { label: "Deployment", cell: (r) => h("span", { class: "mono small" }, r.deployment || "–") },
        { label: "Status", cell: (r) => h("span", {}, statusBadge(r.status), r.error_type ? h("div", { class: "small muted" }, r.error_type) : null) },
        { label: "Tokens", num: true, cell: (r) => `${count(r.prompt_tokens)} / ${count(r.completion_tokens)}` },
        { label: "Cost", num: true, cell: (r) => money(r.cost) },
        { label: "Latency", num: true, cell: (r) => ms(r.latency_ms) },
        { label: "Attempts", num: true, cell: (r) => count(r.attempts) }], rows,
      { id: "requests-table", empty: "No requests match.", rowData: (r) => ({ requestId: r.request_id }),
        onclick: (r) => { location.hash = `#/requests/${encodeURIComponent(r.request_id)}`; } })));
    }
    more.addEventListener("click", () => load(true).catch(showError));
    await load(false);
  };

  async function requestDetail(root, id) {
    const r = await api(`/admin/dashboard/request?id=${encodeURIComponent(id)}`);
    const x = r.extra || {};
    const kv = (pairs) => h("dl", { class: "kv" }, pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== "")
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]).flat());
    root.append(head(`Request ${id}`, when(r.ts), h("a", { href: "#/requests" }, "← all requests")));
    root.appendChild(h("div", { class: "grid2 row-gap", id: "request-detail" },
      h("div", { class: "panel" }, h("h2", {}, "Outcome"), kv([
        ["Status", h("span", {}, statusBadge(r.status), r.error_type ? " " + r.error_type : "")],
        ["Error", r.error_message], ["Key", h("span", { class: "mono" }, r.key_id || "–")],
        ["Endpoint", `${r.ingress} ${r.endpoint}${r.stream ? " (stream)" : ""}`],
        ["Model requested", r.model_requested], ["Model used", r.model_used],
        ["Deployment", r.deployment ? h("span", { class: "mono" }, r.deployment) : null], ["Provider", r.provider]])),
      h("div", { class: "panel" }, h("h2", {}, "Tokens, cost and timings"), kv([
        ["Prompt tokens", count(r.prompt_tokens)], ["Completion tokens", count(r.completion_tokens)],
        ["Cost", money(r.cost)], ["Cost if strong", x.cost_if_strong !== undefined ? money(x.cost_if_strong) : null],
        ["Latency", ms(r.latency_ms)], ["Time to first token", r.ttft_ms !== null ? ms(r.ttft_ms) : null],
        ["Attempts", count(r.attempts)]]))));
    const routing = [["Router", r.router], ["Score", r.router_score !== null && r.router_score !== undefined ? r.router_score.toFixed(4) : null],
      ["Reason", x.route], ["Went strong", x.strong === undefined ? null : (x.strong ? "yes" : "no")],
      ["Cascade", x.cascade ? JSON.stringify(x.cascade) : null],
      ["Fallbacks", x.fallbacks ? x.fallbacks.map((f) => `${f.from} → ${f.to} (${f.reason})`).join("; ") : null],
      ["Hedged", x.hedged ? `${x.hedged.winner} won over ${x.hedged.loser}` : null]];
    root.appendChild(h("div", { class: "panel", id: "routing-decision" }, h("h2", {}, "Routing decision"),
      routing.some((p) => p[1]) ? kv(routing) : h("div", { class: "empty" }, `Called the model “${r.model_requested}” directly; no router involved.`)));
    root.appendChild(h("div", { class: "panel", id: "attempts" }, h("h2", {}, "Attempts"), table([
      { label: "#", num: true, cell: (a) => String(r.attempt_list.indexOf(a) + 1) },
      { label: "Deployment", cell: (a) => h("span", { class: "mono" }, a.deployment || "–") },
      { label: "Model", cell: (a) => a.model || "–" },
      { label: "Result", cell: (a) => a.error ? badge(a.error, "bad") : badge("ok", "ok") },
      { label: "Time", num: true, cell: (a) => ms(a.ms) },
      { label: "Message", cell: (a) => h("span", { class: "small" }, a.message || "") }], r.attempt_list,
    { empty: "No upstream attempt was made (refused before routing)." })));
    const bodies = h("div", { class: "panel", id: "bodies" }, h("h2", {}, "Prompt and answer"));
    if (!r.bodies_stored) bodies.appendChild(h("div", { class: "empty" }, "Not stored: prompt bodies are kept only when storage.store_prompts is enabled."));
    else if (!r.bodies || !Object.keys(r.bodies).length) bodies.appendChild(h("div", { class: "empty" }, "Nothing stored for this request."));
    else for (const [k, v] of Object.entries(r.bodies)) bodies.append(h("div", { class: "small muted" }, k), h("pre", {}, typeof v === "string" ? v : JSON.stringify(v, null, 2)));
    root.appendChild(bodies);
    root.appendChild(h("details", { class: "panel" }, h("summary", {}, "Everything recorded (JSON)"), h("pre", {}, JSON.stringify(x, null, 2))));
  }

  // ------------------------------------------------------------ reports

  PAGES.reports = async function (root, rest) {
    const d = await api("/admin/dashboard/reports");
    root.append(head("Reports", h("span", {}, "Compare and shadow reports in ", h("span", { class: "mono" }, d.reports_dir))));
    if (!d.data.length) {
      root.appendChild(h("div", { class: "panel empty", id: "reports-empty" }, d.exists
        ? "No reports yet. Write one with: switchboard compare ... --out " + d.reports_dir + "/<name>"
        : `The reports folder ${d.reports_dir} does not exist. Set dashboard.reports_dir, and write reports there with switchboard compare --out.`));
      return;
    }
    const viewer = h("div", { id: "report-viewer" });
    root.append(h("div", { class: "panel" }, table([
      { label: "Report", cell: (e) => h("span", { class: "mono" }, e.name) },
      { label: "Kind", cell: (e) => badge(e.kind, "") },
      { label: "Summary", cell: (e) => summaryText(e) },
      { label: "Modified", num: true, cell: (e) => when(e.modified) },
      { label: "Files", cell: (e) => h("div", { class: "toolbar" }, e.files.filter((f) => ["html", "json", "md", "csv", "txt"].includes(f.type))
        .map((f) => h("button", { class: "small secondary", dataset: { path: f.path }, onclick: () => openReport(viewer, f) }, f.path.split("/").pop()))) }],
    d.data, { id: "reports-table" })), viewer);
    const first = d.data[0].files.find((f) => f.type === "html");
    if (rest.length === 0 && first) await openReport(viewer, first);
  };

  function summaryText(e) {
    const s = e.summary || {};
    if (e.kind === "compare") return h("span", { class: "small" }, `${s.dataset || "dataset"} · ${count(s.items)} items · ${(s.models || []).join(", ")}`);
    const parts = Object.entries(s).slice(0, 4).map(([k, v]) => `${k}: ${v}`);
    return h("span", { class: "small muted" }, parts.join(" · ") || "–");
  }

  async function openReport(viewer, file) {
    const text = await api(`/admin/dashboard/report?path=${encodeURIComponent(file.path)}`, { raw: true });
    viewer.textContent = "";
    const panel = h("div", { class: "panel" }, h("h2", {}, file.path));
    if (file.type === "html") {
      // A report is shown sandboxed: no scripts, no access to this page or its key.
      const frame = h("iframe", { class: "report", sandbox: "", title: file.path, id: "report-frame" });
      frame.srcdoc = text;
      panel.appendChild(frame);
    } else if (file.type === "json") {
      let pretty = text;
      try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* show as it is */ }
      panel.appendChild(h("pre", {}, pretty.length > 200000 ? pretty.slice(0, 200000) + "\n…" : pretty));
    } else {
      panel.appendChild(h("pre", {}, text));
    }
    viewer.appendChild(panel);
  }

  // ------------------------------------------------------------ start

  document.addEventListener("DOMContentLoaded", async () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => signOut());
    // A closed dialog keeps nothing: a new key's secret must not linger in the page.
    $("dialog").addEventListener("close", () => { $("dialog-form").textContent = ""; });
    window.addEventListener("hashchange", () => { if (!$("shell").hidden) route(); });
    if (!sessionStorage.getItem(KEY_STORE)) return signOut();
    try {
      state.info = await api("/admin/dashboard/info");
      showShell();
    } catch (err) {
      signOut(err.message);
    }
  });
})();
