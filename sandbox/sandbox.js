// baton sandbox page: polls /api/state and drives the fakes through /api/*.
"use strict";

const $ = (id) => document.getElementById(id);
let customer = "";
let selected = null;     // the Flex interaction (KD...) the agent looks at
let busy = false;

async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(j.error || ("HTTP " + r.status));
  return j;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function time(t) {
  return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function renderChat(chat) {
  const ol = $("chat");
  ol.replaceChildren(...chat.map((m) => {
    const li = el("li", m.from_customer ? "out" : "in");
    if (!m.from_customer) li.append(el("span", "who", m.who || ""));
    li.append(document.createTextNode(m.body));
    li.dataset.who = m.from_customer ? "customer" : (m.who || "baton");
    return li;
  }));
  ol.scrollTop = ol.scrollHeight;
}

function renderTasks(tasks) {
  const box = $("tasks");
  if (!tasks.length) {
    box.replaceChildren(el("p", "muted", "No task yet. Ask the bot for a person."));
    $("task").hidden = true;
    selected = null;
    return;
  }
  if (!selected || !tasks.find((t) => t.interaction === selected))
    selected = tasks[tasks.length - 1].interaction;
  box.replaceChildren(...tasks.map((t) => {
    const b = el("button", t.interaction === selected ? "selected" : "",
                 `${t.customer_name || t.customer} · ${t.state}`);
    b.type = "button";
    b.onclick = () => { selected = t.interaction; refresh(); };
    return b;
  }));
  const t = tasks.find((x) => x.interaction === selected);
  $("task").hidden = false;
  $("task-title").textContent = `Task from ${t.customer_name || t.customer}`;
  $("task-state").textContent = t.state;
  $("accept").disabled = t.state !== "pending";
  $("close").disabled = t.state !== "active";
  $("agent-send-btn").disabled = t.state !== "active";
  $("thread").replaceChildren(...t.messages.map((m) => {
    const li = el("li", m.agent ? "agent" : "");
    li.append(el("span", "who", m.author), document.createTextNode(m.body));
    return li;
  }));
}

function renderInside(state) {
  const mode = $("mode");
  mode.textContent = state.mode || "-";
  mode.className = "mode " + (state.mode || "");
  $("timeline").replaceChildren(...(state.timeline || []).map((e) =>
    el("li", "", `${time(e.at_ms / 1000)}  ${e.event}  ${e.detail || ""}`)));
  $("llm-count").textContent = `(${state.llm.length})`;
  $("llm").replaceChildren(...state.llm.map((r) =>
    el("li", "", `${time(r.time)}  ${r.messages} messages, last: “${r.last}”`)));
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const s = await api("GET", "/api/state");
    customer = s.customer;
    $("customer-addr").textContent = s.customer;
    $("agent-name").textContent = "(" + s.agent + ")";
    renderChat(s.chat);
    renderTasks(s.tasks);
    renderInside(s);
  } catch (e) {
    console.error(e);
  } finally {
    busy = false;
  }
}

$("send").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  await api("POST", "/api/customer", { text });
  refresh();
});

$("agent-send").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("agent-text").value.trim();
  if (!text || !selected) return;
  $("agent-text").value = "";
  await api("POST", "/api/agent", { interaction: selected, action: "say", text });
  refresh();
});

$("accept").addEventListener("click", async () => {
  await api("POST", "/api/agent", { interaction: selected, action: "accept" });
  refresh();
});

$("close").addEventListener("click", async () => {
  await api("POST", "/api/agent", { interaction: selected, action: "close" });
  refresh();
});

refresh();
setInterval(refresh, 700);
