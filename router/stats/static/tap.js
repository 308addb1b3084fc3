// The dashboard's live view: streams admin/tap (JSON lines) with the admin token and shows the
// newest events first. Event data came from beacons: it reaches the page only as textContent.
"use strict";

(() => {
  const TOKEN_KEY = "beacon-router.admin-token";
  const SHOWN = 50; // rows kept on the page; older ones are removed
  const $ = (id) => document.getElementById(id);
  let reading = null; // the AbortController of the open stream

  function say(text) { $("live-status").textContent = text; }

  async function stages() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const response = await fetch("admin/backends", {
      headers: { Authorization: "Bearer " + token }, cache: "no-store" }).catch(() => null);
    if (!response || !response.ok) return;
    const body = await response.json();
    for (const [name, backend] of Object.entries(body.backends || {})) {
      if (!backend.running) continue;
      const option = document.createElement("option");
      option.value = name;
      option.textContent = "handed to " + name;
      $("live-stage").append(option);
    }
  }

  function show(event) {
    const row = document.createElement("tr");
    const cells = [event.received_at, event.source, event.event,
                   JSON.stringify(event.data)];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = String(value ?? "");
      row.append(cell);
    }
    const body = $("live-table").tBodies[0];
    body.prepend(row);
    while (body.rows.length > SHOWN) body.deleteRow(-1);
  }

  async function start() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const params = new URLSearchParams();
    if ($("live-stage").value) params.set("backend", $("live-stage").value);
    reading = new AbortController();
    $("live-toggle").textContent = "Stop";
    say("watching…");
    let seen = 0, missed = 0;
    try {
      const response = await fetch("admin/tap?" + params, {
        headers: { Authorization: "Bearer " + token }, cache: "no-store",
        signal: reading.signal });
      if (!response.ok) throw new Error("error " + response.status);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        const lines = buffered.split("\n");
        buffered = lines.pop();
        for (const line of lines) {
          if (!line.trim()) continue;
          const item = JSON.parse(line);
          if (item.tap) { missed += item.tap.dropped || 0; continue; }
          show(item);
          seen += 1;
        }
        say(`${seen} events` + (missed ? `, ${missed} not shown (too fast)` : ""));
      }
      say(`stream ended after ${seen} events`);
    } catch (err) {
      if (err.name !== "AbortError") say("live view stopped: " + err.message);
    }
    reading = null;
    $("live-toggle").textContent = "Watch";
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!$("live-toggle")) return;
    $("live-toggle").addEventListener("click", () => {
      if (reading) { reading.abort(); return; }
      start();
    });
    // The backends are listed once the dashboard has loaded, i.e. once the token is known.
    let listed = false;
    const list = () => {
      if (listed || !document.body.hasAttribute("data-loaded")) return;
      listed = true;
      stages();
    };
    new MutationObserver(list).observe(document.body, { attributes: true });
    list();
  });
})();
