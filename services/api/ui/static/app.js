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
    const wait = document.getElementById("canary-wait");
    if (wait && state !== "paused") wait.remove(); // the pause is over
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

function pauseLeft(element) {
  // A canary step's timed pause: what is left of it (not of the rollout's timeout).
  const ends = Date.parse(element.dataset.pauseEnds);
  const said = element.textContent;
  const show = () => {
    const left = Math.max(0, Math.round((ends - Date.now()) / 1000));
    element.textContent = `${left} ${element.dataset.left || "s left"} · ${said}`;
  };
  show();
  setInterval(show, 1000);
}

function refresh(element) {
  // A part of the page drawn again every few seconds, until what it shows has ended
  // (an element marked data-final). A section of actions that holds only while the
  // state is what it was (data-while) is drawn again, with the page, once it is not.
  const every = 1000 * Number(element.dataset.refreshS || 5);
  const ended = () => element.querySelector("[data-final]") !== null;
  if (ended()) return;
  const timer = setInterval(async () => {
    let answer;
    try {
      answer = await fetch(element.dataset.refreshUrl, { credentials: "same-origin" });
    } catch {
      return; // the server is away for a moment: try again next time
    }
    if (!answer.ok) return;
    element.innerHTML = await answer.text();
    if (ended()) clearInterval(timer);
    const held = document.querySelector("[data-while]");
    const badge = element.querySelector("[data-state]");
    if (held && badge && badge.dataset.state !== held.dataset.while) {
      clearInterval(timer);
      window.location.reload();
    }
  }, every);
}

function versionChoices(select) {
  // A version box suggests the tags of the service chosen beside it (the registry's,
  // those CI registered first), as the new release form lists them.
  const list = document.getElementById(select.dataset.versionsList);
  if (!list) return;
  const fill = async () => {
    const asked = select.value;
    list.replaceChildren();
    if (!asked) return;
    let answer;
    try {
      answer = await fetch(`/api/v1/services/${encodeURIComponent(asked)}/images`, { credentials: "same-origin" });
    } catch {
      return; // no suggestions: the box takes any version
    }
    if (!answer.ok || select.value !== asked) return;
    const found = await answer.json();
    list.replaceChildren(...found.versions.map((v) => {
      const option = document.createElement("option");
      option.value = v.tag;
      if (v.registered) {
        const commit = v.commit_sha ? ` ${v.commit_sha.slice(0, 8)}` : "";
        option.label = `${list.dataset.registered || "registered"}${commit}`;
      }
      return option;
    }));
  };
  select.addEventListener("change", fill);
  fill();
}

// The release config form, made from the template's parameter schema. It edits the
// values in the raw JSON box (which the server reads), so the form and the JSON agree.
function schemaForm(root) {
  const schema = JSON.parse(document.getElementById("parameters-schema").textContent);
  const errors = JSON.parse(document.getElementById("parameter-errors").textContent);
  const words = JSON.parse(root.dataset.words);
  const word = (w) => words[w] || w;
  const mask = root.dataset.mask;
  const lang = document.documentElement.lang || "en";
  const raw = document.getElementById("values-json");
  let data;

  const resolve = (node) => {
    if (!node || typeof node.$ref !== "string" || !node.$ref.startsWith("#/")) return node || {};
    let found = schema;
    for (const part of node.$ref.slice(2).split("/")) found = found ? found[part] : undefined;
    return found || {};
  };
  const said = (node, what) => ((node["x-i18n"] || {})[lang] || {})[what] || node[what] || "";
  const typeOf = (node) => {
    const type = Array.isArray(node.type) ? node.type.find((t) => t !== "null") : node.type;
    if (type) return type;
    if (node.properties) return "object";
    return node.enum ? "enum" : "";
  };
  const where = (path) => "params" + path.map((k) => (typeof k === "number" ? `[${k}]`
    : /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`)).join("");
  const get = (path) => path.reduce((v, k) => (v == null ? undefined : v[k]), data);
  const sync = () => { raw.value = JSON.stringify(data, null, 2); };
  const set = (path, value) => {
    let node = data;
    path.slice(0, -1).forEach((k, i) => {
      if (node[k] == null || typeof node[k] !== "object") {
        node[k] = typeof path[i + 1] === "number" ? [] : {};
      }
      node = node[k];
    });
    const last = path[path.length - 1];
    if (value === undefined) delete node[last];
    else node[last] = value;
    sync();
  };
  const make = (tag, props = {}, ...children) => {
    const element = Object.assign(document.createElement(tag), props);
    element.append(...children);
    return element;
  };
  const button = (text, onclick) => make("button", { type: "button", className: "small", textContent: word(text), onclick });
  const blank = (node) => {
    const type = typeOf(resolve(node));
    if ("default" in node) return JSON.parse(JSON.stringify(node.default));
    return { object: {}, array: [], integer: 0, number: 0, boolean: false }[type] ?? "";
  };

  function scalar(node, path, id) {
    const value = get(path);
    const type = typeOf(node);
    if (node.enum) {
      const select = make("select", { id });
      const unset = "default" in node ? `— ${word("default")}: ${node.default}` : "—";
      select.append(make("option", { value: "", textContent: unset }));
      node.enum.forEach((option, i) => {
        const item = make("option", { value: String(i), textContent: String(option) });
        item.selected = JSON.stringify(option) === JSON.stringify(value);
        select.append(item);
      });
      select.onchange = () => set(path, select.value === "" ? undefined : node.enum[Number(select.value)]);
      return select;
    }
    if (type === "boolean") {
      const box = make("input", { id, type: "checkbox", checked: value ?? node.default ?? false });
      box.onchange = () => set(path, box.checked);
      return box;
    }
    if (type === "object" || type === "array" || !type) {
      const area = make("textarea", { id, rows: 3, value: value === undefined ? "" : JSON.stringify(value) });
      area.onchange = () => {
        try { set(path, area.value.trim() ? JSON.parse(area.value) : undefined); area.setCustomValidity(""); }
        catch { area.setCustomValidity(word("not valid JSON")); area.reportValidity(); }
      };
      return area;
    }
    const secret = node.writeOnly === true || node.format === "password";
    const number = type === "integer" || type === "number";
    const input = make("input", { id, type: secret ? "password" : number ? "number" : "text" });
    if (number && type === "integer") input.step = "1";
    if (secret) {
      input.autocomplete = "new-password";
      input.placeholder = value === mask ? word("unchanged") : "";
    } else {
      input.value = value ?? "";
      if ("default" in node) input.placeholder = `${word("default")}: ${node.default}`;
    }
    const kept = value === mask ? mask : undefined;
    input.oninput = () => {
      const text = input.value;
      if (text === "") return set(path, secret ? kept : undefined);
      set(path, number && text.trim() !== "" && !Number.isNaN(Number(text)) ? Number(text) : text);
    };
    return input;
  }

  function field(declared, path, name, required) {
    const node = resolve(declared);
    const type = typeOf(node);
    const at = where(path);
    const id = "p-" + at.replace(/[^A-Za-z0-9]+/g, "-");
    const wrap = make("div", { className: "param" });
    wrap.dataset.path = at;
    const title = said(node, "title") || name;
    const help = said(node, "description");
    let body;
    if (type === "object" && node.properties) {
      body = make("fieldset", { className: "group" }, make("legend", { textContent: title + (required ? " *" : "") }));
      const needed = node.required || [];
      for (const [key, sub] of Object.entries(node.properties)) {
        body.append(field(sub, [...path, key], key, needed.includes(key)));
      }
      wrap.append(body);
    } else if (type === "object" && node.additionalProperties && typeof node.additionalProperties === "object") {
      body = make("fieldset", { className: "pairs" }, make("legend", { textContent: title }));
      const value = get(path) || {};
      Object.keys(value).forEach((key) => {
        const keyInput = make("input", { value: key, className: "key", ariaLabel: `${title} ${word("key")}` });
        keyInput.onchange = () => {
          const renamed = {};
          for (const [k, v] of Object.entries(get(path) || {})) renamed[k === key ? keyInput.value : k] = v;
          set(path, renamed);
          draw();
        };
        const row = make("div", { className: "pair" }, keyInput,
          field(node.additionalProperties, [...path, key], word("value"), false),
          button("Remove", () => { const left = { ...get(path) }; delete left[key]; set(path, left); draw(); }));
        body.append(row);
      });
      body.append(button("Add", () => {
        const next = { ...(get(path) || {}) };
        let key = word("key");
        for (let n = 2; key in next; n += 1) key = `${word("key")}-${n}`;
        next[key] = blank(node.additionalProperties);
        set(path, next);
        draw();
      }));
      wrap.append(body);
    } else if (type === "array" && node.items && typeof node.items === "object" && !Array.isArray(node.items)) {
      body = make("fieldset", { className: "list" }, make("legend", { textContent: title + (required ? " *" : "") }));
      (get(path) || []).forEach((_, i) => {
        body.append(make("div", { className: "item" }, field(node.items, [...path, i], `${i + 1}`, false),
          button("Remove", () => { const left = [...get(path)]; left.splice(i, 1); set(path, left); draw(); })));
      });
      body.append(button("Add", () => { set(path, [...(get(path) || []), blank(node.items)]); draw(); }));
      wrap.append(body);
    } else {
      const input = scalar(node, path, id);
      wrap.append(make("label", { htmlFor: id, textContent: title + (required ? " *" : "") }), input);
    }
    if (help) wrap.append(make("small", { className: "help", textContent: help }));
    if (errors[at]) wrap.append(make("p", { className: "error", role: "alert", textContent: errors[at] }));
    return wrap;
  }

  function draw() {
    const needed = schema.required || [];
    const fields = Object.entries(schema.properties || {}).map(([key, sub]) => field(sub, [key], key, needed.includes(key)));
    root.replaceChildren(...fields);
  }

  function load() {
    try {
      data = JSON.parse(raw.value || "{}");
    } catch {
      raw.setCustomValidity(word("not valid JSON"));
      raw.reportValidity();
      return false;
    }
    raw.setCustomValidity("");
    if (data === null || typeof data !== "object" || Array.isArray(data)) data = {};
    return true;
  }

  if (!load()) return; // the expert's JSON, as it was sent: left to the server's answer
  draw();
  document.getElementById("raw-values").open = false;
  raw.addEventListener("change", () => { if (load()) draw(); });
}

document.addEventListener("DOMContentLoaded", () => {
  const parameters = document.getElementById("schema-form");
  if (parameters) schemaForm(parameters);
  // Another template has other parameters: draw the form of the one chosen.
  const choice = document.getElementById("template-choice");
  if (choice) choice.addEventListener("change", () => {
    const url = new URL(window.location.href);
    url.searchParams.set("template", choice.value);
    window.location.assign(url.toString());
  });
  // A template kept in Fabu has content; one read from a source has a place.
  document.querySelectorAll("input[name=kind]").forEach((radio) => {
    const shown = () => {
      const kind = document.querySelector("input[name=kind]:checked")?.value;
      document.querySelectorAll(".kind-fabu").forEach((e) => { e.hidden = kind !== "fabu"; });
      document.querySelectorAll(".kind-source").forEach((e) => { e.hidden = kind === "fabu"; });
    };
    radio.addEventListener("change", shown);
    shown();
  });
  document.querySelectorAll("pre[data-follow]").forEach((pre) => {
    if (pre.dataset.follow) follow(pre);
  });
  document.querySelectorAll("[data-refresh-url]").forEach(refresh);
  document.querySelectorAll("#progress[data-since]").forEach(tick);
  document.querySelectorAll("#hook-clock[data-since]").forEach(tick);
  document.querySelectorAll("#canary-wait[data-pause-ends]").forEach(pauseLeft);
  // "Back" returns to the page before (the link itself leads home).
  document.querySelectorAll("a[data-back]").forEach((link) => {
    link.addEventListener("click", (event) => {
      if (window.history.length < 2) return;
      event.preventDefault();
      window.history.back();
    });
  });
  document.querySelectorAll("select[data-versions-list]").forEach(versionChoices);
});

// Asked before it is done, on every page and in every part drawn again later.
document.addEventListener("click", (event) => {
  const button = event.target.closest ? event.target.closest("[data-confirm]") : null;
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});
