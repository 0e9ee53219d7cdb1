/* baton operator console: vanilla JavaScript, no build step.
 *
 * Auth: the console token in sessionStorage (this tab only), sent as
 * "Authorization: Bearer"; or, with "Sign in with user name and password",
 * nothing at all: the server's 401 makes the browser ask and then send
 * basic auth by itself. Every text from the server goes into the page with
 * textContent, never as HTML. */
(function () {
  "use strict";

  var REFRESH_MS = 2000;
  var TOKEN_KEY = "baton.console.token";
  var BASIC_KEY = "baton.console.basic";
  var API = "/console/api/";

  var state = {
    token: null,
    basic: false,
    timer: null,
    openKey: null,        // conversation key shown in the detail panel
    detail: null,         // its last data
    sig: {},              // last rendered data per section, to skip identical redraws
    busy: false
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
      });
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // ---- formatting ----------------------------------------------------

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function fmtTime(ms) {
    if (!ms) return "-";
    var d = new Date(ms), now = new Date();
    var hm = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    if (d.toDateString() === now.toDateString()) return hm;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hm;
  }

  function fmtDuration(ms) {
    if (ms < 0) ms = 0;
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + pad(s % 60) + "s";
    var h = Math.floor(m / 60);
    if (h < 48) return h + "h " + pad(m % 60) + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  // Every address is WhatsApp's: the prefix is noise in a table.
  function short(addr) {
    return String(addr || "").replace(/^whatsapp:/, "");
  }

  function badge(mode) {
    return el("span", { "class": "badge", "data-mode": mode }, mode);
  }

  function splitKey(key) {
    var i = key.indexOf("|");
    return i < 0 ? { address: key, business: null } : { address: key.slice(0, i), business: key.slice(i + 1) };
  }

  // ---- status line (aria-live) ------------------------------------------

  var statusTimer = null;
  function say(text, kind) {
    var s = $("status");
    s.textContent = text;
    s.setAttribute("data-kind", kind || "ok");
    s.hidden = false;
    if (statusTimer) clearTimeout(statusTimer);
    if (kind !== "error") statusTimer = setTimeout(function () { s.hidden = true; }, 8000);
  }

  // ---- API -------------------------------------------------------------

  function api(path, opts) {
    opts = opts || {};
    var headers = { "Accept": "application/json" };
    if (state.token) headers["Authorization"] = "Bearer " + state.token;
    var init = { method: opts.method || "GET", headers: headers, cache: "no-store", credentials: "same-origin" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    return fetch(API + path, init).then(function (r) {
      return r.text().then(function (t) {
        var data = null;
        try { data = t ? JSON.parse(t) : null; } catch (e) { data = { error: t.trim() }; }
        return { status: r.status, data: data };
      });
    });
  }

  function unauthorized() {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(BASIC_KEY);
    state.token = null;
    state.basic = false;
    showLogin("Your session is no longer valid: sign in again.");
  }

  // ---- views -------------------------------------------------------------

  function showLogin(message) {
    $("app-view").hidden = true;
    $("session").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function showApp() {
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("session").hidden = false;
    state.sig = {};
    refresh();
  }

  function stop() {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
  }

  function schedule() {
    stop();
    state.timer = setTimeout(refresh, REFRESH_MS);
  }

  function changed(section, data) {
    var s = JSON.stringify(data);
    if (state.sig[section] === s) return false;
    state.sig[section] = s;
    return true;
  }

  // Keeps keyboard focus on the same conversation across redraws.
  function focusedKey() {
    var a = document.activeElement;
    return a && a.getAttribute ? { key: a.getAttribute("data-key"), cls: a.className } : null;
  }

  function restoreFocus(f, root) {
    if (!f || !f.key) return;
    var nodes = root.querySelectorAll("[data-key]");
    for (var i = 0; i < nodes.length; i++) {
      if (nodes[i].getAttribute("data-key") === f.key && nodes[i].className === f.cls) {
        nodes[i].focus();
        return;
      }
    }
  }

  function renderCounts(counts) {
    var c = $("counts");
    c.textContent = "";
    ["ai", "escalating", "human"].forEach(function (m) {
      var b = badge(m + " " + (counts[m] || 0));
      b.setAttribute("data-mode", m);
      b.setAttribute("id", "count-" + m);
      c.appendChild(b);
    });
  }

  function renderQueue(q) {
    var list = $("queue"), f = focusedKey();
    var now = q.now_ms;
    list.textContent = "";
    q.conversations.forEach(function (c) {
      var e = c.escalation || {};
      var li = el("li", { "data-key": c.key, "data-mode": c.mode });
      var b = el("button", { type: "button", "class": "queue-item", "data-key": c.key, "data-mode": c.mode,
                             "aria-current": c.key === state.openKey ? "true" : "false" });
      b.appendChild(el("span", { "class": "q-who" }, short(c.customer)));
      b.appendChild(el("span", { "class": "q-wait", "data-since": e.at_ms || "",
                                 title: "waiting since " + fmtTime(e.at_ms) },
                       e.at_ms ? fmtDuration(now - e.at_ms) : "-"));
      var why = (e.trigger || "escalated") + (e.reason ? ": " + e.reason : "");
      b.appendChild(el("span", { "class": "q-why", title: why }, why));
      var m = el("span", { "class": "q-mode" });
      m.appendChild(badge(c.mode));
      b.appendChild(m);
      b.setAttribute("aria-label", short(c.customer) + ", " + c.mode + ", " + why);
      b.addEventListener("click", function () { openConversation(c.key); });
      li.appendChild(b);
      list.appendChild(li);
    });
    $("queue-count").textContent = String(q.total);
    $("queue-count").setAttribute("data-zero", q.total ? "false" : "true");
    $("queue-empty").hidden = q.conversations.length > 0;
    restoreFocus(f, list);
  }

  function tickWaits(now) {
    var spans = document.querySelectorAll("#queue .q-wait[data-since]");
    for (var i = 0; i < spans.length; i++) {
      var since = Number(spans[i].getAttribute("data-since"));
      if (since) spans[i].textContent = fmtDuration(now - since);
    }
  }

  function renderList(l) {
    var body = $("conversation-rows"), f = focusedKey();
    body.textContent = "";
    l.conversations.forEach(function (c) {
      var tr = el("tr", { "data-key": c.key, "data-mode": c.mode,
                          "aria-selected": c.key === state.openKey ? "true" : "false" });
      var who = el("td");
      var b = el("button", { type: "button", "class": "open-conv", "data-key": c.key, title: c.customer },
                 short(c.customer));
      b.setAttribute("aria-label", "Open conversation with " + c.customer);
      who.appendChild(b);
      tr.appendChild(who);
      tr.appendChild(el("td", { title: c.business }, short(c.business)));
      var m = el("td");
      m.appendChild(badge(c.mode));
      tr.appendChild(m);
      tr.appendChild(el("td", { "class": "when", title: c.last_activity }, fmtTime(c.last_activity_ms)));
      tr.appendChild(el("td", { "class": "num" }, c.customer_turns));
      tr.addEventListener("click", function () { openConversation(c.key); });
      body.appendChild(tr);
    });
    $("list-empty").hidden = l.conversations.length > 0;
    var more = $("list-more");
    more.hidden = l.total <= l.conversations.length;
    more.textContent = "Showing " + l.conversations.length + " of " + l.total + " conversations.";
    restoreFocus(f, body);
  }

  function fact(dl, name, value, cls) {
    if (value === null || value === undefined || value === "") return;
    dl.appendChild(el("dt", null, name));
    dl.appendChild(el("dd", cls ? { "class": cls } : null, value));
  }

  function renderDetail(d) {
    state.detail = d;
    var panel = $("detail-panel");
    panel.setAttribute("data-key", d.key);
    panel.setAttribute("data-mode", d.mode);
    $("detail-placeholder").hidden = true;
    $("detail-body").hidden = false;
    $("detail-customer").textContent = (d.name ? d.name + " · " : "") + short(d.customer);
    $("detail-sub").textContent = "WhatsApp with " + short(d.business) + " · " + d.customer_turns +
      (d.customer_turns === 1 ? " customer turn · " : " customer turns · ") +
      d.messages + " messages";
    var mb = $("detail-mode");
    mb.textContent = d.mode;
    mb.setAttribute("data-mode", d.mode);
    $("handback").disabled = d.mode === "ai";
    $("escalate").disabled = d.mode !== "ai";

    var dl = $("detail-facts");
    dl.textContent = "";
    var e = d.escalation;
    if (e) {
      fact(dl, "Escalated", fmtTime(e.at_ms) + (e.at_ms ? " (waiting " + fmtDuration(d.now_ms - e.at_ms) + ")" : ""));
      fact(dl, "Trigger", e.trigger);
      fact(dl, "Reason", e.reason);
      fact(dl, "Agent", e.agent ? e.agent + (e.accepted_at_ms ? " since " + fmtTime(e.accepted_at_ms) : "") : "not accepted yet");
      fact(dl, "Flex", [d.flex_conversation, d.task].filter(Boolean).join(" · "), "sid");
      if (e.queued_until_ms) fact(dl, "Queued until", fmtTime(e.queued_until_ms));
    }
    fact(dl, "Last activity", fmtTime(d.last_activity_ms));
    if (d.waiting_turns) fact(dl, "Waiting turns", d.waiting_turns);
    if (d.window_closed) fact(dl, "WhatsApp", "24-hour window closed");
    if (d.last_error_code) fact(dl, "Last error", d.last_error_code + (d.last_error ? " " + d.last_error : ""));
    dl.hidden = !dl.firstChild;

    var tr = $("transcript");
    var atBottom = tr.scrollTop + tr.clientHeight >= tr.scrollHeight - 8;
    tr.textContent = "";
    d.history.forEach(function (h) {
      var li = el("li", { "class": "turn", "data-role": h.role, "data-seq": h.seq });
      var meta = el("div", { "class": "meta" });
      meta.appendChild(el("span", { "class": "role" }, h.role + (h.agent ? " · " + h.agent : "")));
      meta.appendChild(el("time", { datetime: new Date(h.ts).toISOString() }, fmtTime(h.ts)));
      li.appendChild(meta);
      li.appendChild(el("div", { "class": "text" }, h.text + (h.media ? " [" + h.media + " media]" : "")));
      tr.appendChild(li);
    });
    $("transcript-count").textContent = d.history_total > d.history.length
      ? "(last " + d.history.length + " of " + d.history_total + ")" : "(" + d.history.length + ")";
    if (atBottom || tr.getAttribute("data-for") !== d.key) tr.scrollTop = tr.scrollHeight;
    tr.setAttribute("data-for", d.key);

    var tl = $("timeline");
    tl.textContent = "";
    d.timeline.forEach(function (t) {
      var li = el("li", { "data-event": t.event });
      li.appendChild(el("span", { "class": "ev" }, t.event.replace(/_/g, " ")));
      li.appendChild(el("time", { "class": "when", datetime: new Date(t.ts).toISOString() }, fmtTime(t.ts)));
      if (t.detail) li.appendChild(el("span", { "class": /^[A-Z]{2}[0-9a-f]{32}$/.test(t.detail) ? "detail-text sid" : "detail-text" },
                                     t.detail));
      tl.appendChild(li);
    });
    $("timeline-empty").hidden = d.timeline.length > 0;
  }

  function markSelection() {
    var nodes = document.querySelectorAll("#conversation-rows tr[data-key]");
    for (var i = 0; i < nodes.length; i++)
      nodes[i].setAttribute("aria-selected", nodes[i].getAttribute("data-key") === state.openKey ? "true" : "false");
    nodes = document.querySelectorAll("#queue .queue-item");
    for (i = 0; i < nodes.length; i++)
      nodes[i].setAttribute("aria-current", nodes[i].getAttribute("data-key") === state.openKey ? "true" : "false");
  }

  function closeDetail() {
    state.openKey = null;
    state.detail = null;
    delete state.sig.detail;
    var panel = $("detail-panel");
    panel.setAttribute("data-key", "");
    panel.setAttribute("data-mode", "");
    $("detail-body").hidden = true;
    $("detail-placeholder").hidden = false;
    markSelection();
  }

  // ---- refresh loop ------------------------------------------------------

  function loadDetail() {
    if (!state.openKey) return Promise.resolve();
    var key = state.openKey;
    return api("conversation?address=" + encodeURIComponent(key)).then(function (r) {
      if (r.status === 401) throw { auth: true };
      if (key !== state.openKey) return;
      if (r.status === 404) {
        say("That conversation no longer exists.", "error");
        closeDetail();
        return;
      }
      if (r.status !== 200) throw { status: r.status };
      // now_ms changes every call: compare without it.
      var cmp = Object.assign({}, r.data);
      delete cmp.now_ms;
      if (changed("detail", cmp)) renderDetail(r.data);
    });
  }

  function refresh() {
    if (state.busy) return;
    state.busy = true;
    var mode = $("mode-filter").value;
    Promise.all([
      api("conversations?limit=200&mode=" + encodeURIComponent(mode)),
      api("conversations?limit=100&mode=queue")
    ]).then(function (rs) {
      if (rs[0].status === 401 || rs[1].status === 401) throw { auth: true };
      if (rs[0].status !== 200 || rs[1].status !== 200)
        throw { status: rs[0].status !== 200 ? rs[0].status : rs[1].status, data: rs[0].data || rs[1].data };
      var list = rs[0].data, queue = rs[1].data;
      renderCounts(list.counts);
      if (changed("list", list.conversations.concat([list.total]))) renderList(list);
      // Redrawn when it changes; in between only the waiting times move.
      if (changed("queue", queue.conversations)) renderQueue(queue);
      else tickWaits(queue.now_ms);
      return loadDetail();
    }).then(function () {
      var r = $("refreshed");
      r.textContent = "live · " + fmtTime(Date.now());
      r.setAttribute("data-ok", "true");
      if ($("status").getAttribute("data-kind") === "error" && $("status").getAttribute("data-stale") === "true") {
        $("status").hidden = true;
        $("status").removeAttribute("data-stale");
      }
    }).catch(function (err) {
      if (err && err.auth) { state.busy = false; unauthorized(); return; }
      var r = $("refreshed");
      r.textContent = "not refreshing";
      r.setAttribute("data-ok", "false");
      var why = err && err.status === 503 ? "baton's state is not available yet (is the router running?)"
        : err && err.status ? "the server answered HTTP " + err.status : "cannot reach baton";
      say("Not refreshing: " + why + ". Retrying…", "error");
      $("status").setAttribute("data-stale", "true");
    }).then(function () {
      state.busy = false;
      if (state.token || state.basic) schedule();
    });
  }

  function openConversation(key) {
    state.openKey = key;
    delete state.sig.detail;
    markSelection();
    loadDetail().then(function () {
      $("detail-title").setAttribute("tabindex", "-1");
      $("detail-title").focus();
    }).catch(function (err) {
      if (err && err.auth) unauthorized();
      else say("Cannot open the conversation" + (err && err.status ? " (HTTP " + err.status + ")" : ""), "error");
    });
  }

  // ---- actions -----------------------------------------------------------

  function act(what, reason) {
    var d = state.detail;
    if (!d) return;
    var who = short(d.customer);
    var body = splitKey(d.key);
    if (reason) body.reason = reason;
    var buttons = [$("handback"), $("escalate")];
    buttons.forEach(function (b) { b.disabled = true; });
    say((what === "handback" ? "Handing " + who + " back to the AI…" : "Escalating " + who + "…"), "info");
    api(what, { method: "POST", body: body }).then(function (r) {
      if (r.status === 401) throw { auth: true };
      if (r.status === 200) {
        say(what === "handback" ? "Handed back to the AI: " + who + "." : "Escalated: " + who + ".", "ok");
      } else if (r.status === 404) {
        say("baton does not know " + who + " any more.", "error");
      } else {
        say((what === "handback" ? "Hand-back" : "Escalation") + " failed: HTTP " + r.status +
            (r.data && r.data.error ? " (" + r.data.error + ")" : "") + ". Nothing changed; try again.", "error");
      }
      delete state.sig.detail;
      state.sig.list = null;
      return loadDetail();
    }).catch(function (err) {
      if (err && err.auth) unauthorized();
      else say("Cannot reach baton: nothing was sent.", "error");
    }).then(function () {
      if (state.detail) {
        $("handback").disabled = state.detail.mode === "ai";
        $("escalate").disabled = state.detail.mode !== "ai";
      }
    });
  }

  function openEscalate() {
    var dlg = $("escalate-dialog");
    $("escalate-reason").value = "";
    if (typeof dlg.showModal === "function") dlg.showModal();
    else dlg.setAttribute("open", "");
    $("escalate-reason").focus();
  }

  function closeEscalate() {
    var dlg = $("escalate-dialog");
    if (typeof dlg.close === "function") dlg.close();
    else dlg.removeAttribute("open");
    $("escalate").focus();
  }

  // ---- login ---------------------------------------------------------------

  function tryLogin(token) {
    state.token = token;
    state.basic = !token;
    $("login-button").disabled = true;
    $("login-error").textContent = "";
    return api("conversations?limit=1").then(function (r) {
      if (r.status === 200) {
        if (token) sessionStorage.setItem(TOKEN_KEY, token);
        else sessionStorage.setItem(BASIC_KEY, "1");
        say("Signed in.", "ok");
        showApp();
        return;
      }
      state.token = null;
      state.basic = false;
      if (r.status === 401)
        $("login-error").textContent = token ? "That token is not right." : "User name and password were not accepted (or basic sign-in is off).";
      else if (r.status === 503)
        $("login-error").textContent = "Signed in, but baton's state is not available yet: try again in a moment.";
      else
        $("login-error").textContent = "baton answered HTTP " + r.status + ".";
    }).catch(function () {
      state.token = null;
      state.basic = false;
      $("login-error").textContent = "Cannot reach baton.";
    }).then(function () {
      $("login-button").disabled = false;
    });
  }

  function init() {
    $("login-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var t = $("token").value.trim();
      if (!t) {
        $("login-error").textContent = "Type the console token.";
        $("token").focus();
        return;
      }
      tryLogin(t);
    });
    $("basic-login").addEventListener("click", function () { tryLogin(null); });
    $("logout").addEventListener("click", function () {
      stop();
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(BASIC_KEY);
      state.token = null;
      state.basic = false;
      closeDetail();
      showLogin("Signed out.");
    });
    $("mode-filter").addEventListener("change", function () { state.sig.list = null; stop(); refresh(); });
    $("handback").addEventListener("click", function () { act("handback", "operator console"); });
    $("escalate").addEventListener("click", openEscalate);
    $("escalate-cancel").addEventListener("click", closeEscalate);
    $("escalate-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var reason = $("escalate-reason").value.trim();
      closeEscalate();
      act("escalate", reason || "operator console");
    });
    $("close-detail").addEventListener("click", closeDetail);

    var saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      state.token = saved;
      showApp();
    } else if (sessionStorage.getItem(BASIC_KEY)) {
      state.basic = true;
      showApp();
    } else {
      showLogin("");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
