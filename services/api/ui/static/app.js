// Fabu's pages work without this file; it adds live updates and confirmations.
"use strict";

function follow(pre) {
  // A running release's transcript, live (Server-Sent Events; the session cookie is sent).
  const source = new EventSource(pre.dataset.follow);
  const seen = pre.querySelectorAll("span").length;
  let lines = 0;
  source.addEventListener("line", (event) => {
    lines += 1;
    if (lines <= seen) return; // already on the page
    const line = JSON.parse(event.data);
    const span = document.createElement("span");
    span.textContent = `${line.at.slice(11, 19)} ${line.text}`;
    pre.append(span, "\n");
    pre.scrollTop = pre.scrollHeight;
  });
  const badge = document.getElementById("release-state");
  const known = Number(pre.dataset.events || 0); // state changes the page was made with
  let states = 0;
  source.addEventListener("state", (event) => {
    const change = JSON.parse(event.data);
    const state = change.state;
    states += 1;
    if (states <= known) return;
    const progress = document.getElementById("progress");
    if (progress && state === "applied") {
      progress.dataset.since = change.at; // the timeout runs from the apply
      progress.dataset.applied = "yes";
    }
    if (state === "paused" || state === "awaiting_approval") {
      source.close();
      window.location.reload(); // it waits for someone: show what they can do
      return;
    }
    if (badge) {
      badge.dataset.state = state;
      badge.querySelector(".state").className = `state ${state}`;
      badge.querySelector(".state").textContent = state;
    }
  });
  source.addEventListener("pods", (event) => showPods(JSON.parse(event.data)));
  source.addEventListener("end", () => {
    source.close();
    window.location.reload(); // the finished page: result, pods, diagnosis, actions
  });
}

function when(at) {
  return at ? at.slice(0, 19).replace("T", " ") : "-";
}

function showPods(pods) {
  // The pod timeline as the tracker last wrote it: one row per pod, replaced whole.
  const body = document.querySelector("#pods tbody");
  if (!body) return;
  const rows = pods.map((p) => {
    const row = document.createElement("tr");
    row.className = p.new ? "new" : "old";
    row.dataset.pod = p.name;
    const cells = [
      p.name, p.node, when(p.created_at), when(p.scheduled_at), when(p.ready_at),
      String(p.restarts), p.cause, when(p.terminated_at), p.reasons.join(", "),
    ];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  });
  body.replaceChildren(...rows);
}

function tick(element) {
  // Elapsed time, and what is left of the rollout's timeout once it is applied.
  const timeout = Number(element.dataset.timeoutS || 0);
  const show = () => {
    const since = Date.parse(element.dataset.since);
    const elapsed = Math.max(0, Math.round((Date.now() - since) / 1000));
    let text = `${elapsed} s`;
    if (timeout && element.dataset.applied) {
      text += ` · ${Math.max(0, timeout - elapsed)} s ${element.dataset.left || "left"}`;
    }
    element.textContent = text;
  };
  show();
  setInterval(show, 1000);
}

function refresh(element) {
  const every = 1000 * Number(element.dataset.refreshS || 5);
  setInterval(async () => {
    const answer = await fetch(element.dataset.refreshUrl, { credentials: "same-origin" });
    if (answer.ok) element.innerHTML = await answer.text();
  }, every);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("pre[data-follow]").forEach((pre) => {
    if (pre.dataset.follow) follow(pre);
  });
  document.querySelectorAll("[data-refresh-url]").forEach(refresh);
  document.querySelectorAll("#progress[data-since]").forEach(tick);
  document.querySelectorAll("[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
});
