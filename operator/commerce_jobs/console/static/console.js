// The jobs console's only script: live rows (server-sent events, a 10 s refresh while they are down), expanded
// jobs that follow their output, and actions posted without a reload. All HTML comes rendered (and escaped) by the
// server; the script only inserts it, and puts output in as text.
"use strict";
(function () {
  const rows = document.getElementById("rows");
  const flash = document.getElementById("flash");
  const live = document.getElementById("live");
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const expanded = new Map(); // key -> {row: <tr>, follower: EventSource|null}

  function say(text, isError) {
    if (!flash) return;
    flash.textContent = text;
    flash.className = isError ? "error" : "ok";
  }

  function jobUrl(key) {
    const [namespace, name] = key.split("/");
    return "/jobs/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(name);
  }

  let rowsAsked = 0; // answers can overtake each other: only the newest question's answer is shown
  async function refreshRows() {
    const asked = ++rowsAsked;
    const response = await fetch("/rows?" + rows.dataset.query, { headers: { Accept: "application/json" } });
    if (response.status === 401) { window.location = "/login"; return; }
    if (!response.ok) return;
    const data = await response.json();
    if (asked !== rowsAsked) return;
    rows.innerHTML = data.rows;
    document.getElementById("pager").innerHTML = data.pager;
    for (const [key, entry] of expanded) {
      const jobRow = rows.querySelector('tr.job[data-key="' + CSS.escape(key) + '"]');
      if (jobRow) {
        jobRow.querySelector("button.expand").setAttribute("aria-expanded", "true");
        jobRow.after(entry.row);
      }
    }
  }

  function stopFollowing(entry) {
    if (entry.follower) { entry.follower.close(); entry.follower = null; }
  }

  async function loadDetail(key, entry) {
    const asked = entry.asked = (entry.asked || 0) + 1;
    const response = await fetch(jobUrl(key));
    const html = await response.text();
    if (asked !== entry.asked || expanded.get(key) !== entry) return; // a newer answer is coming, or it was closed
    const cell = entry.row.firstElementChild;
    if (!response.ok) { stopFollowing(entry); cell.textContent = html; return; }
    const previous = cell.querySelector("pre.output");
    const holder = document.createElement("div");
    holder.innerHTML = html;
    const next = holder.firstElementChild;
    const nextOutput = next.querySelector("pre.output");
    if (entry.follower && previous && nextOutput.dataset.following === "true") {
      nextOutput.replaceWith(previous); // still running: keep the output followed so far
    } else {
      stopFollowing(entry);
      if (nextOutput.dataset.following === "true") follow(key, entry, nextOutput);
    }
    cell.replaceChildren(next);
  }

  function follow(key, entry, pre) {
    const source = new EventSource(jobUrl(key) + "/output");
    entry.follower = source;
    source.addEventListener("output", (event) => {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent += JSON.parse(event.data);
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", () => { source.close(); });
  }

  function toggle(jobRow) {
    const key = jobRow.dataset.key;
    const button = jobRow.querySelector("button.expand");
    const entry = expanded.get(key);
    if (entry) {
      stopFollowing(entry);
      entry.row.remove();
      expanded.delete(key);
      button.setAttribute("aria-expanded", "false");
      return;
    }
    const row = document.createElement("tr");
    row.className = "detail-row";
    row.dataset.key = key;
    const cell = document.createElement("td");
    cell.colSpan = jobRow.children.length;
    cell.textContent = "loading…";
    row.append(cell);
    jobRow.after(row);
    const created = { row: row, follower: null };
    expanded.set(key, created);
    button.setAttribute("aria-expanded", "true");
    loadDetail(key, created);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.expand");
    if (button) toggle(button.closest("tr.job"));
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.classList.contains("action")) return;
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-Requested-With": "console", "X-CSRF-Token": csrf, Accept: "application/json" },
      });
      if (response.ok) say((await response.json()).message, false);
      else say("refused: " + (await response.text()), true);
    } catch (error) {
      say("failed: " + error, true);
    } finally {
      button.disabled = false;
    }
  });

  if (!rows) return;
  let events = null;
  function connect() {
    events = new EventSource("/events");
    events.addEventListener("ready", () => { live.textContent = "live"; live.className = "live on"; refreshRows(); });
    events.addEventListener("changed", (event) => {
      refreshRows();
      const changed = JSON.parse(event.data);
      for (const [key, entry] of expanded) {
        // The job itself, or one of its dependents (shown in its tree), changed.
        const touched = changed.some((k) => k === key ||
          entry.row.querySelector('li[data-key="' + CSS.escape(k) + '"]'));
        if (touched) loadDetail(key, entry);
      }
    });
    events.addEventListener("signed-out", () => { window.location = "/login"; });
    events.onerror = () => { live.textContent = "live updates: reconnecting"; live.className = "live off"; };
  }
  connect();
  // Without the event stream (a proxy that buffers it), the list still refreshes every 10 seconds.
  setInterval(() => {
    if (!events || events.readyState !== EventSource.OPEN) {
      refreshRows();
      for (const [key, entry] of expanded) loadDetail(key, entry);
    }
  }, 10000);
})();
