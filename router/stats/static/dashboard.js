// The installed-base dashboard: fetches api/stats with the admin token and draws it with
// Chart.js. No build step. Every value from the store (versions, platforms...) came from a
// beacon, so it reaches the page only through textContent and canvas text, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "beacon-router.admin-token";
  const TOP_VERSIONS = 8; // the rest of the versions are stacked as "other"
  const COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777",
                  "#65a30d", "#94a3b8"];
  const $ = (id) => document.getElementById(id);
  const charts = {};

  const today = () => new Date().toISOString().slice(0, 10);
  const daysBefore = (iso, n) => {
    const d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() - n);
    return d.toISOString().slice(0, 10);
  };

  function status(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  function showLogin(message) {
    $("dashboard").hidden = true;
    $("login").hidden = false;
    status(message || "", Boolean(message));
    $("token").focus();
  }

  function applyPreset() {
    const preset = $("preset").value;
    if (preset === "custom") return;
    $("to").value = today();
    $("from").value = daysBefore(today(), Number(preset) - 1);
    $("granularity").value = Number(preset) > 120 ? "week" : "day";
  }

  async function load() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return showLogin();
    const params = new URLSearchParams({
      from: $("from").value, to: $("to").value, granularity: $("granularity").value });
    status("loading…");
    let response;
    try {
      response = await fetch("api/stats?" + params, {
        headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    } catch (err) {
      return status("the router cannot be reached", true);
    }
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin("that token was refused");
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) return status(body.detail || "error " + response.status, true);
    $("login").hidden = true;
    $("dashboard").hidden = false;
    render(body);
    status(`${body.from} to ${body.to}, UTC`);
  }

  function render(report) {
    document.body.dataset.loaded = report.from + "/" + report.to + "/" + report.granularity;
    for (const el of document.querySelectorAll("[data-total]")) {
      el.textContent = report.totals[el.dataset.total].toLocaleString("en");
    }
    const labels = report.series.map((p) => p.period);
    const line = (label, key, i, dash) => ({
      label, data: report.series.map((p) => p[key]), borderColor: COLORS[i],
      backgroundColor: COLORS[i], borderDash: dash, pointRadius: labels.length > 60 ? 0 : 2,
      tension: 0.2 });
    const per = { day: "per day", week: "per week", month: "per month" }[report.granularity];
    draw("active-chart", "line", labels, [
      line(`active ${per}`, "active", 0, []),
      line("active in 7 days", "active_7d", 1, [6, 3]),
      line("active in 30 days", "active_30d", 2, [2, 3]),
    ], {});
    drawVersions(report, labels);
    drawBars(report);
    fillTable(report);
  }

  function drawVersions(report, labels) {
    $("versions-panel").hidden = !report.versions;
    if (!report.versions) return;
    const latest = (report.breakdowns.version || []).map((b) => b.value);
    const totals = new Map();
    for (const p of report.versions) {
      for (const [v, n] of Object.entries(p.counts)) totals.set(v, (totals.get(v) || 0) + n);
    }
    // The versions most installations run now first, then the largest over the range.
    const order = [...new Set([...latest, ...[...totals.keys()].sort(
      (a, b) => totals.get(b) - totals.get(a))])];
    // Stacked oldest at the bottom, newest on top, whatever their sizes.
    const top = order.slice(0, TOP_VERSIONS).sort(
      (a, b) => a.localeCompare(b, "en", { numeric: true }));
    const series = top.map((v) => report.versions.map((p) => p.counts[v] || 0));
    if (order.length > TOP_VERSIONS) {
      series.push(report.versions.map((p) => Object.entries(p.counts)
        .filter(([v]) => !top.includes(v)).reduce((sum, [, n]) => sum + n, 0)));
      top.push("other");
    }
    draw("versions-chart", "line", labels, top.map((v, i) => ({
      label: v, data: series[i], fill: true, borderColor: COLORS[i % COLORS.length],
      backgroundColor: COLORS[i % COLORS.length] + "99", pointRadius: 0, borderWidth: 1,
    })), { scales: { y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } });
  }

  function drawBars(report) {
    const host = $("bars");
    for (const [name, buckets] of Object.entries(report.breakdowns)) {
      if (name === "version" && report.versions) continue; // the stacked area shows it
      const id = "bars-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
      let canvas = document.getElementById(id);
      if (!canvas) {
        const panel = document.createElement("section");
        panel.className = "panel";
        const title = document.createElement("h2");
        title.textContent = name;
        const box = document.createElement("div");
        box.className = "chart";
        canvas = document.createElement("canvas");
        canvas.id = id;
        canvas.setAttribute("aria-label", name);
        box.append(canvas);
        panel.append(title, box);
        host.append(panel);
      }
      draw(id, "bar", buckets.map((b) => b.value), [{
        label: "installations", data: buckets.map((b) => b.installations),
        backgroundColor: COLORS[0] }], { plugins: { legend: { display: false } } });
    }
  }

  function fillTable(report) {
    const body = document.querySelector("#series-table tbody");
    body.replaceChildren(...report.series.map((p) => {
      const tr = document.createElement("tr");
      tr.dataset.period = p.period;
      for (const value of [p.period, p.active, p.active_7d, p.active_30d, p.new, p.churned]) {
        const td = document.createElement("td");
        td.textContent = value;
        tr.append(td);
      }
      return tr;
    }));
  }

  function draw(id, type, labels, datasets, options) {
    if (charts[id]) charts[id].destroy();
    charts[id] = new Chart($(id), {
      type, data: { labels, datasets },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index",
                                                                      intersect: false },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { labels: { boxWidth: 12 } } },
        ...options,
      },
    });
  }

  function fromAddress() {
    // ?from=YYYY-MM-DD&to=YYYY-MM-DD&granularity=week: a view that can be bookmarked.
    const query = new URLSearchParams(location.search);
    if (!query.get("from") && !query.get("to")) return applyPreset();
    $("preset").value = "custom";
    $("to").value = query.get("to") || today();
    $("from").value = query.get("from") || daysBefore($("to").value, 29);
    $("granularity").value = query.get("granularity") || "day";
  }

  document.addEventListener("DOMContentLoaded", () => {
    fromAddress();
    $("preset").addEventListener("change", () => { applyPreset(); load(); });
    for (const id of ["from", "to"]) {
      $(id).addEventListener("change", () => { $("preset").value = "custom"; });
    }
    $("range").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      load();
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin();
    });
    load();
  });
})();
