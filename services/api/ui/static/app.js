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
    const state = JSON.parse(event.data).state;
    states += 1;
    if (states <= known) return;
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
  source.addEventListener("end", () => {
    source.close();
    window.location.reload(); // the finished page: result, pods, diagnosis, actions
  });
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
  document.querySelectorAll("[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
});
