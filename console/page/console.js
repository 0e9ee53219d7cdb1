/* baton operator console: vanilla JavaScript, no build step.
 *
 * Two views in one page: Conversations (the escalation queue, the list with
 * its search, one conversation's transcript and timeline, refreshed every
 * 2 s) and Reports (figures over a period from /console/api/reports, drawn
 * with uPlot, the one library the page embeds: /console/uPlot.iife.min.js).
 * The queue keeps refreshing in either view: the tab's title counts the
 * conversations waiting for an agent and, if the operator turned it on, a
 * beep says a new escalation arrived.
 *
 * Auth: the console token in sessionStorage (this tab only), sent as
 * "Authorization: Bearer"; or, with "Sign in with user name and password",
 * nothing at all: the server's 401 makes the browser ask and then send
 * basic auth by itself. Every text from the server goes into the page with
 * textContent, never as HTML. Times are shown in the browser's time zone. */
(function () {
  "use strict";

  var REFRESH_MS = 2000;
  var SEARCH_DELAY_MS = 250;
  var TOKEN_KEY = "baton.console.token";
  var BASIC_KEY = "baton.console.basic";
  var SOUND_KEY = "baton.console.sound";
  var API = "/console/api/";
  var TITLE = document.title;

  var state = {
    token: null,
    basic: false,
    timer: null,
    openKey: null,        // conversation key shown in the detail panel
    detail: null,         // its last data
    sig: {},              // last rendered data per section, to skip identical redraws
    busy: false,
    session: 0,           // counts sign-outs: what a refresh brings back after one is dropped
    skew: 0,              // server clock - this browser's clock, ms
    escalations: null,    // key -> at_ms of the queue last seen (null before the first)
    mine: {},             // keys this operator escalated: not news to them
    sound: false,
    audio: null,          // AudioContext, made on a user's gesture
    beeps: 0,
    view: "conversations",
    period: "24h",
    report: null,         // last report data, redrawn on resize
    charts: [],           // uPlot instances on the page
    media: {},            // the open conversation's media: "seq/i" -> {promise, url, error}
    mediaFor: null        // whose media that is
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

  var DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // "14:05" today, "Mon 30 Nov 14:05" another day, with the year when not this one.
  function fmtTime(ms, seconds) {
    if (!ms) return "-";
    var d = new Date(ms), now = new Date();
    var hm = pad(d.getHours()) + ":" + pad(d.getMinutes()) + (seconds ? ":" + pad(d.getSeconds()) : "");
    if (d.toDateString() === now.toDateString()) return hm;
    var day = DAYS[d.getDay()] + " " + d.getDate() + " " + MONTHS[d.getMonth()];
    if (d.getFullYear() !== now.getFullYear()) day += " " + d.getFullYear();
    return day + " " + hm;
  }

  // The full local date and time, for title attributes.
  function fmtFull(ms) {
    return ms ? new Date(ms).toLocaleString() : "";
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

  // The number as the server masked it, the hidden digits as dots.
  function number(addr) {
    return short(addr).replace(/\*/g, "\u2022");
  }

  // "Ana · +•••••••••1111": the customer's WhatsApp name and masked number.
  function who(c) {
    return (c.name ? c.name + " \u00b7 " : "") + number(c.customer);
  }

  function now() { return Date.now() + state.skew; }

  function badge(mode) {
    return el("span", { "class": "badge", "data-mode": mode }, mode);
  }

  // What the state of an escalated conversation reads, and since when.
  function stateOf(c) {
    var e = c.escalation || {};
    if (c.state === "with_agent")
      return { label: "with " + (e.agent || "an agent"), since: e.agent_since_ms, text: "With " + (e.agent || "an agent") };
    if (c.state === "waiting")
      return { label: "waiting", since: e.at_ms, text: "Waiting for an agent" };
    return { label: "ai", since: null, text: "With the AI" };
  }

  function splitKey(key) {
    var i = key.indexOf("|");
    return i < 0 ? { address: key, business: null } : { address: key.slice(0, i), business: key.slice(i + 1) };
  }

  // ---- status line (aria-live) ------------------------------------------

  var statusTimer = null;
  function say(text, kind, ms) {
    var s = $("status");
    s.textContent = text;
    s.setAttribute("data-kind", kind || "ok");
    s.removeAttribute("data-stale");
    s.hidden = false;
    if (statusTimer) clearTimeout(statusTimer);
    statusTimer = null;
    if (kind !== "error") statusTimer = setTimeout(function () { s.hidden = true; }, ms || 8000);
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
    $("views").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
    state.escalations = null;
    state.session++;
    document.title = TITLE;
  }

  function showApp() {
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("session").hidden = false;
    $("views").hidden = false;
    state.sig = {};
    showView(location.hash === "#reports" ? "reports" : "conversations");
    refresh();
  }

  function showView(view) {
    state.view = view;
    ["conversations", "reports"].forEach(function (v) {
      $(v + "-view").hidden = v !== view;
      $("tab-" + v).setAttribute("aria-selected", v === view ? "true" : "false");
    });
    var hash = view === "reports" ? "#reports" : "";
    if (location.hash !== hash) history.replaceState(null, "", location.pathname + location.search + hash);
    if (view === "reports") loadReport();
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

  // A running clock: "waiting 5s", "with Marta 4m 10s"; tick() moves it.
  function clock(cls, prefix, since) {
    return el("span", { "class": cls, "data-since": since || "", "data-prefix": prefix,
                        title: since ? "since " + fmtFull(since) : null },
              prefix + (since ? fmtDuration(now() - since) : "-"));
  }

  function tick() {
    var spans = document.querySelectorAll("#app-view [data-since]");
    var t = now();
    for (var i = 0; i < spans.length; i++) {
      var since = Number(spans[i].getAttribute("data-since"));
      if (since) spans[i].textContent = (spans[i].getAttribute("data-prefix") || "") + fmtDuration(t - since);
    }
  }

  function renderQueue(q) {
    var list = $("queue"), f = focusedKey();
    var waiting = 0;
    list.textContent = "";
    q.conversations.forEach(function (c) {
      var e = c.escalation || {};
      var st = stateOf(c);
      if (c.state === "waiting") waiting++;
      var li = el("li", { "data-key": c.key, "data-mode": c.mode, "data-state": c.state });
      var b = el("button", { type: "button", "class": "queue-item", "data-key": c.key, "data-mode": c.mode,
                             "data-state": c.state,
                             "aria-current": c.key === state.openKey ? "true" : "false" });
      b.appendChild(el("span", { "class": "q-who", title: who(c) }, who(c)));
      b.appendChild(clock("q-wait", st.label + " ", st.since));
      var why = (e.trigger || "escalated") + (e.reason ? ": " + e.reason : "");
      b.appendChild(el("span", { "class": "q-why", title: why }, why));
      var m = el("span", { "class": "q-mode" });
      m.appendChild(badge(c.mode));
      b.appendChild(m);
      b.setAttribute("aria-label", who(c) + ", " + st.text.toLowerCase() + ", " + why);
      b.addEventListener("click", function () { openConversation(c.key); });
      li.appendChild(b);
      list.appendChild(li);
    });
    $("queue-count").textContent = String(q.total);
    $("queue-count").setAttribute("data-zero", q.total ? "false" : "true");
    $("queue-waiting").textContent = waiting + " waiting";
    $("queue-waiting").setAttribute("data-zero", waiting ? "false" : "true");
    $("queue-empty").hidden = q.conversations.length > 0;
    restoreFocus(f, list);
  }

  // The tab's title counts who waits for an agent; a new escalation beeps.
  function noticeQueue(q) {
    var waiting = q.conversations.filter(function (c) { return c.state === "waiting"; }).length;
    document.title = (waiting ? "(" + waiting + ") " : "") + TITLE;
    var seen = {}, fresh = [];
    q.conversations.forEach(function (c) {
      var at = c.escalation && c.escalation.at_ms;
      seen[c.key] = at;
      if (state.escalations && state.escalations[c.key] !== at) {
        if (state.mine[c.key]) delete state.mine[c.key];
        else fresh.push(c);
      }
    });
    state.escalations = seen;
    if (!fresh.length) return;
    say("New escalation: " + fresh.map(who).join(", ") + ".", "info");
    beep();
  }

  function renderList(l) {
    var body = $("conversation-rows"), f = focusedKey();
    var businesses = {};
    body.textContent = "";
    l.conversations.forEach(function (c) {
      businesses[c.business] = true;
      var tr = el("tr", { "data-key": c.key, "data-mode": c.mode, "data-state": c.state,
                          "aria-selected": c.key === state.openKey ? "true" : "false" });
      var cell = el("td");
      // A long name gives way (ellipsis); the number never does.
      var b = el("button", { type: "button", "class": "open-conv", "data-key": c.key, title: who(c) });
      if (c.name) {
        b.appendChild(el("span", { "class": "cust-name" }, c.name));
        b.appendChild(document.createTextNode(" \u00b7 "));
      }
      b.appendChild(el("span", { "class": "cust-num" }, number(c.customer)));
      b.setAttribute("aria-label", "Open conversation with " + who(c));
      cell.appendChild(b);
      tr.appendChild(cell);
      tr.appendChild(el("td", { "class": "business", title: c.business }, short(c.business)));
      // Where the conversation is: the AI, or waiting for / with a person (its mode in the tooltip).
      var m = el("td");
      if (c.state === "ai") m.appendChild(badge(c.mode));
      else m.appendChild(el("span", { "class": "badge state", "data-state": c.state, title: "mode " + c.mode },
                            stateOf(c).label));
      tr.appendChild(m);
      tr.appendChild(el("td", { "class": "when", title: fmtFull(c.last_activity_ms) }, fmtTime(c.last_activity_ms)));
      tr.appendChild(el("td", { "class": "num" }, c.customer_turns));
      tr.addEventListener("click", function () { openConversation(c.key); });
      body.appendChild(tr);
    });
    // One business number (the usual deployment): its column says nothing.
    $("conversations").setAttribute("data-businesses", String(Object.keys(businesses).length));
    var q = $("search").value.trim();
    var empty = $("list-empty");
    empty.hidden = l.conversations.length > 0;
    empty.textContent = q ? "No conversation matches \u201c" + q + "\u201d." : "No conversations yet.";
    var more = $("list-more");
    // A page of the newest; a search says when it looked at part of the store only.
    more.hidden = !l.next;
    more.textContent = l.total === null
      ? "Showing the first " + l.conversations.length + " matches" + (l.partial ? " among the most recent conversations." : ".")
      : "Showing " + l.conversations.length + " of " + l.total + " conversations.";
    restoreFocus(f, body);
  }

  function fact(dl, name, value, cls) {
    if (value === null || value === undefined || value === "") return null;
    dl.appendChild(el("dt", null, name));
    var dd = el("dd", cls ? { "class": cls } : null);
    if (typeof value === "string" || typeof value === "number") dd.textContent = String(value);
    else dd.appendChild(value);
    dl.appendChild(dd);
    return dd;
  }

  // baton's own messages, by the setting they come from.
  var OWN = {
    "handoff.holding_message": "holding message",
    "handoff.closed_message": "holding message, outside business hours",
    "handoff.no_agent_message": "no agent free",
    "handoff.no_agent_ai_message": "no agent free, back to the AI",
    "handoff.failure_message": "handoff failed",
    "ai.apology": "apology, the AI failed"
  };

  function turnLabel(h, d) {
    if (h.kind === "handback") return "baton \u00b7 hand-back";
    if (h.kind === "note") return "baton \u00b7 note for the AI";
    if (h.kind === "holding" || h.kind === "notice") return "baton (" + (OWN[h.setting] || h.kind) + ")";
    if (h.role === "customer") return "Customer" + (d.name ? " \u00b7 " + d.name : "");
    if (h.role === "agent") return "Agent" + (h.agent ? " \u00b7 " + h.agent : "");
    if (h.role === "ai") return "AI";
    return h.role;
  }

  // ---- customer media ------------------------------------------------------
  //
  // The bytes come through the console (GET conversations/KEY/media/SEQ/I),
  // which downloads them from Twilio with baton's credentials: the page never
  // sees a Twilio URL. They are fetched with the token (an <img src> could
  // not send it) and shown from a blob: URL, once per conversation opened:
  // the transcript is redrawn every time it changes.

  function mediaKind(ct) {
    ct = String(ct || "").toLowerCase();
    if (ct.indexOf("image/") === 0) return "image";
    if (ct.indexOf("audio/") === 0) return "audio";
    if (ct.split(";")[0].trim() === "application/pdf") return "pdf";
    if (ct.indexOf("video/") === 0) return "video";
    return "file";
  }

  var KIND_WORDS = { image: "photo", audio: "voice note", pdf: "PDF document", video: "video", file: "file" };

  // What is not an item, as the workers' text view words it (common/media.c).
  function mediaText(m) {
    var out = [];
    if (m.loc) {
      var place = [m.loc.label, m.loc.addr].filter(Boolean).join(", ");
      out.push({ kind: "location", text: "shared a location: " + (place ? place + " " : "") +
                 "(" + m.loc.lat + ", " + m.loc.lon + ")" });
    }
    if (m.btn) out.push({ kind: "button", text: "tapped: " + (m.btn.text || m.btn.payload || "") });
    return out;
  }

  // Media cache of the open conversation: "seq/i" -> {promise, url, error}.
  function mediaReset(key) {
    if (state.mediaFor === key) return;
    Object.keys(state.media || {}).forEach(function (k) {
      if (state.media[k].url) URL.revokeObjectURL(state.media[k].url);
    });
    state.media = {};
    state.mediaFor = key;
  }

  function mediaPath(key, seq, i) {
    return "conversations/" + encodeURIComponent(key) + "/media/" + seq + "/" + i;
  }

  var MEDIA_TRIES = 5;

  function pause(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  // The item's bytes as a blob: URL (a promise of the cache entry). The
  // console downloads a few at a time and says 503 to the rest: they wait
  // a second (its Retry-After) and ask again.
  function mediaLoad(key, seq, i) {
    var id = seq + "/" + i, entry = state.media[id];
    if (entry) return entry.promise;
    entry = state.media[id] = {};
    var headers = {};
    if (state.token) headers["Authorization"] = "Bearer " + state.token;
    function get(tries) {
      return fetch(API + mediaPath(key, seq, i), { headers: headers, credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 503 && tries > 1 && state.mediaFor === key)
            return pause(1000).then(function () { return get(tries - 1); });
          return r;
        });
    }
    entry.promise = get(MEDIA_TRIES)
      .then(function (r) {
        if (r.ok) return r.blob().then(function (b) {
          if (state.mediaFor !== key) return entry; // closed meanwhile: nothing to keep
          entry.url = URL.createObjectURL(b);
          entry.type = b.type;
          return entry;
        });
        return r.text().then(function (t) {
          var data = null;
          try { data = JSON.parse(t); } catch (e) { data = null; }
          entry.error = r.status === 401 ? "sign in again to see it"
            : (data && (data.reason || data.error)) || "HTTP " + r.status;
          return entry;
        });
      }, function () {
        entry.error = "cannot reach baton";
        if (state.media[id] === entry) delete state.media[id]; // a later redraw tries again
        return entry;
      });
    return entry.promise;
  }

  // Puts a loaded (or failed) item into whatever element shows it now.
  function mediaShow(key, seq, i) {
    return function (entry) {
      if (state.mediaFor !== key) return;
      var nodes = document.querySelectorAll('#transcript [data-media="' + seq + "/" + i + '"]');
      for (var n = 0; n < nodes.length; n++) mediaFill(nodes[n], entry);
    };
  }

  function mediaFill(node, entry) {
    var kind = node.getAttribute("data-media-kind");
    if (entry.error) {
      node.setAttribute("data-state", "failed");
      var note = node.querySelector(".media-error");
      if (!note) node.appendChild(el("span", { "class": "media-error" }, "could not be shown: " + entry.error));
      return;
    }
    if (!entry.url) return;
    node.setAttribute("data-state", "loaded");
    if (kind === "image") {
      var img = node.querySelector("img");
      if (img && img.getAttribute("src") !== entry.url) img.setAttribute("src", entry.url);
    } else if (kind === "audio") {
      var au = node.querySelector("audio");
      if (au && au.getAttribute("src") !== entry.url) au.setAttribute("src", entry.url);
    } else {
      var a = node.querySelector("a");
      if (a) a.setAttribute("href", entry.url);
    }
  }

  function renderMedia(key, h) {
    var box = el("div", { "class": "media" });
    (h.media.items || []).forEach(function (it, i) {
      var kind = mediaKind(it.ct), word = KIND_WORDS[kind];
      var label = word + (it.ct ? " (" + it.ct + ")" : "");
      var node = el("figure", { "class": "media-item", "data-media": h.seq + "/" + i, "data-media-kind": kind,
                                "data-state": "loading" });
      if (kind === "image") {
        // A thumbnail; a click opens the whole photo in a new tab.
        var img = el("img", { "class": "thumb", alt: label, title: label });
        img.addEventListener("click", function () {
          var e = state.media[h.seq + "/" + i];
          if (e && e.url) window.open(e.url, "_blank", "noopener");
        });
        node.appendChild(img);
      } else if (kind === "audio") {
        node.appendChild(el("audio", { controls: "", preload: "metadata", title: label }));
      } else {
        // Saved from the blob (the page's policy would not let a viewer run it).
        var a = el("a", { "class": "media-link", href: "#",
                          download: word.replace(/ /g, "-") + "-" + h.seq + "-" + (i + 1) + (kind === "pdf" ? ".pdf" : "") },
                   label);
        a.addEventListener("click", function (ev) {
          if (a.getAttribute("href") === "#") ev.preventDefault();
        });
        node.appendChild(a);
      }
      node.appendChild(el("figcaption", { "class": "muted small" }, label));
      box.appendChild(node);
      var entry = state.media[h.seq + "/" + i];
      if (entry && (entry.url || entry.error)) mediaFill(node, entry);
      else mediaLoad(key, h.seq, i).then(mediaShow(key, h.seq, i));
    });
    mediaText(h.media).forEach(function (t) {
      box.appendChild(el("div", { "class": "media-text", "data-media-kind": t.kind }, t.text));
    });
    return box;
  }

  function renderDetail(d) {
    state.detail = d;
    mediaReset(d.key);
    var panel = $("detail-panel");
    panel.setAttribute("data-key", d.key);
    panel.setAttribute("data-mode", d.mode);
    panel.setAttribute("data-state", d.state);
    $("detail-placeholder").hidden = true;
    $("detail-body").hidden = false;
    $("detail-customer").textContent = who(d);
    $("detail-sub").textContent = "WhatsApp with " + short(d.business) + " \u00b7 " + d.customer_turns +
      (d.customer_turns === 1 ? " customer turn \u00b7 " : " customer turns \u00b7 ") +
      d.messages + " messages" + (d.created_ms ? " \u00b7 since " + fmtTime(d.created_ms) : "");
    var st = stateOf(d);
    var sb = $("detail-state");
    sb.textContent = st.label;
    sb.setAttribute("data-state", d.state);
    sb.hidden = d.state === "ai";
    var mb = $("detail-mode");
    mb.textContent = d.mode;
    mb.setAttribute("data-mode", d.mode);
    $("handback").disabled = d.mode === "ai";
    $("escalate").disabled = d.mode !== "ai";

    var dl = $("detail-facts");
    dl.textContent = "";
    // The last escalation stays on the record after a hand-back: shown while it runs.
    var e = d.mode !== "ai" ? d.escalation : null;
    if (e) {
      // Waiting and with an agent are different stretches, each with its clock.
      var box = el("span", { "class": "state-line", "data-state": d.state });
      box.appendChild(clock("state-clock", st.text + " \u00b7 ", st.since));
      if (d.state === "with_agent" && e.waited_ms !== null && e.waited_ms !== undefined)
        box.appendChild(el("span", { "class": "muted" }, " (waited " + fmtDuration(e.waited_ms) + ")"));
      fact(dl, "Status", box, "state-fact");
      fact(dl, "Escalated", fmtTime(e.at_ms, true));
      fact(dl, "Trigger", e.trigger);
      fact(dl, "Reason", e.reason);
      fact(dl, "Agent", e.agent ? e.agent + (e.agent_since_ms ? " since " + fmtTime(e.agent_since_ms, true) : "")
                                : "not accepted yet");
      if (d.flex) fact(dl, "Flex", [d.flex.conversation, d.flex.task].filter(Boolean).join(" \u00b7 "), "sid");
      if (e.queued_until_ms) fact(dl, "Queued until", fmtTime(e.queued_until_ms));
    }
    fact(dl, "Last activity", fmtTime(d.last_activity_ms, true));
    if (d.waiting_turns) fact(dl, "Waiting turns", d.waiting_turns);
    if (d.window_closed_ms) fact(dl, "WhatsApp", "24-hour window closed");
    if (d.last_error) fact(dl, "Last error", (d.last_error.code || "") + (d.last_error.message ? " " + d.last_error.message : ""));
    dl.hidden = !dl.firstChild;

    var tr = $("transcript");
    var atBottom = tr.scrollTop + tr.clientHeight >= tr.scrollHeight - 8;
    tr.textContent = "";
    d.history.forEach(function (h) {
      var li = el("li", { "class": "turn", "data-role": h.role, "data-kind": h.kind || "message", "data-seq": h.seq });
      var meta = el("div", { "class": "meta" });
      meta.appendChild(el("span", { "class": "role" }, turnLabel(h, d)));
      meta.appendChild(el("time", { datetime: new Date(h.at_ms).toISOString(), title: fmtFull(h.at_ms) }, fmtTime(h.at_ms)));
      li.appendChild(meta);
      if (h.transcript) {
        // The words are the speech-to-text of a voice note, not typed.
        li.setAttribute("data-transcript", "true");
        li.appendChild(el("div", { "class": "transcript-mark", title: "written by speech-to-text from the customer's voice note" },
                          "voice note transcript"));
      }
      if (h.text) li.appendChild(el("div", { "class": "text" }, h.text));
      if (h.media) li.appendChild(renderMedia(d.key, h));
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
      li.appendChild(el("time", { "class": "when", datetime: new Date(t.at_ms).toISOString(), title: fmtFull(t.at_ms) },
                        fmtTime(t.at_ms, true)));
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
    mediaReset(null);
    delete state.sig.detail;
    var panel = $("detail-panel");
    panel.setAttribute("data-key", "");
    panel.setAttribute("data-mode", "");
    panel.setAttribute("data-state", "");
    $("detail-body").hidden = true;
    $("detail-placeholder").hidden = false;
    markSelection();
  }

  // ---- sound -------------------------------------------------------------

  function renderSound() {
    var b = $("sound-toggle");
    b.setAttribute("aria-pressed", state.sound ? "true" : "false");
    b.textContent = state.sound ? "Sound on" : "Sound off";
  }

  // Browsers start audio only from a user's gesture: the context is made
  // (or resumed) on the toggle's click, or on the first click after a reload.
  function wakeAudio() {
    if (!state.sound) return;
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!state.audio) state.audio = new Ctx();
    if (state.audio.state === "suspended") state.audio.resume();
  }

  // Two short tones, made on the spot: no audio file to load.
  function beep() {
    if (!state.sound) return;
    state.beeps++;
    $("sound-toggle").setAttribute("data-beeps", String(state.beeps));
    var ctx = state.audio;
    if (!ctx) return;
    [0, 0.22].forEach(function (start, i) {
      var t = ctx.currentTime + start;
      var osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = i ? 1175 : 880;
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.25, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.18);
      osc.connect(gain);
      gain.connect(ctx.destination);
      osc.start(t);
      osc.stop(t + 0.2);
    });
  }

  function toggleSound() {
    state.sound = !state.sound;
    try { localStorage.setItem(SOUND_KEY, state.sound ? "on" : "off"); } catch (e) { /* private mode */ }
    renderSound();
    wakeAudio();
    if (state.sound) beep(); // the operator hears what it will sound like
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

  function listPath() {
    var mode = $("mode-filter").value, q = $("search").value.trim();
    return "conversations?limit=200&mode=" + encodeURIComponent(mode) + (q ? "&q=" + encodeURIComponent(q) : "");
  }

  function refresh() {
    if (state.busy) return;
    state.busy = true;
    var path = listPath(), session = state.session;
    Promise.all([
      api(path),
      api("conversations?limit=100&mode=queue")
    ]).then(function (rs) {
      // Signed out while this was on its way: nothing of it is shown.
      if (session !== state.session) throw { gone: true };
      if (rs[0].status === 401 || rs[1].status === 401) throw { auth: true };
      if (rs[0].status !== 200 || rs[1].status !== 200)
        throw { status: rs[0].status !== 200 ? rs[0].status : rs[1].status, data: rs[0].data || rs[1].data };
      var list = rs[0].data, queue = rs[1].data;
      state.skew = queue.now_ms - Date.now();
      renderCounts(list.counts);
      // A search typed while this was on its way: the next round has it.
      if (path === listPath() && changed("list", [path, list.conversations, list.total])) renderList(list);
      // Redrawn when it changes; in between only the clocks move.
      if (changed("queue", queue.conversations)) renderQueue(queue);
      noticeQueue(queue);
      return loadDetail();
    }).then(function () {
      tick();
      var r = $("refreshed");
      r.textContent = "live \u00b7 " + fmtTime(Date.now(), true);
      r.setAttribute("data-ok", "true");
      if ($("status").getAttribute("data-kind") === "error" && $("status").getAttribute("data-stale") === "true") {
        $("status").hidden = true;
        $("status").removeAttribute("data-stale");
      }
    }).catch(function (err) {
      if (err && err.gone) return;
      if (err && err.auth) { state.busy = false; unauthorized(); return; }
      var r = $("refreshed");
      r.textContent = "not refreshing";
      r.setAttribute("data-ok", "false");
      var why = err && err.status === 503 ? "baton's state is not available yet (is the router running?)"
        : err && err.status ? "the server answered HTTP " + err.status : "cannot reach baton";
      say("Not refreshing: " + why + ". Retrying\u2026", "error");
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

  // ---- reports -------------------------------------------------------------

  var TRIGGERS = { rule: "rule", tool: "tool", tag: "tag", ai_failure: "AI failure", voice: "voice note", operator: "operator", other: "other" };
  var PATHS = { agent_closed: "agent closed", task_completed: "task done", operator: "operator",
                inactivity_timeout: "inactivity", no_agent: "no agent", reset: "reset", other: "other" };
  var DAY_MS = 86400000;

  function dateValue(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
  }

  // Local midnight of an <input type=date> value.
  function parseDate(v) {
    var m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v || "");
    return m ? new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])).getTime() : null;
  }

  // [from, to) of the chosen period, in ms; null when the dates are not right.
  function period() {
    var t = Date.now();
    if (state.period === "24h") return [t - DAY_MS, t];
    if (state.period === "7d") return [t - 7 * DAY_MS, t];
    if (state.period === "30d") return [t - 30 * DAY_MS, t];
    var from = parseDate($("period-from").value), to = parseDate($("period-to").value);
    if (from === null || to === null) return null;
    to = new Date(to).setDate(new Date(to).getDate() + 1); // the whole last day
    return from < to ? [from, to] : null;
  }

  function setPeriod(p) {
    state.period = p;
    var buttons = document.querySelectorAll(".period-btn");
    for (var i = 0; i < buttons.length; i++)
      buttons[i].setAttribute("aria-pressed", buttons[i].getAttribute("data-period") === p ? "true" : "false");
    $("period-custom").setAttribute("data-active", p === "custom" ? "true" : "false");
  }

  function loadReport() {
    var p = period();
    if (!p) {
      say("Pick a start date and an end date on or after it.", "error");
      return;
    }
    var path = "reports?from_ms=" + Math.floor(p[0]) + "&to_ms=" + Math.floor(p[1]);
    $("reports-view").setAttribute("data-loading", "true");
    api(path).then(function (r) {
      if (r.status === 401) throw { auth: true };
      if (r.status !== 200) throw { status: r.status, data: r.data };
      state.report = r.data;
      renderReport(r.data);
    }).catch(function (err) {
      if (err && err.auth) { unauthorized(); return; }
      say("Cannot load the report: " + (err && err.status ? "HTTP " + err.status +
          (err.data && err.data.error ? " (" + err.data.error + ")" : "") : "cannot reach baton") + ".", "error");
    }).then(function () {
      $("reports-view").removeAttribute("data-loading");
    });
  }

  function tile(label, value, sub, id) {
    var t = el("div", { "class": "tile", id: id });
    t.appendChild(el("div", { "class": "tile-value" }, value));
    t.appendChild(el("div", { "class": "tile-label" }, label));
    if (sub) t.appendChild(el("div", { "class": "tile-sub muted small" }, sub));
    return t;
  }

  // Report durations: tenths of a second under 10 s (sandbox agents are quick).
  function fmtWait(ms) {
    return ms < 10000 ? (ms / 1000).toFixed(1) + "s" : fmtDuration(ms);
  }

  function pct(x) { return x === null || x === undefined ? "-" : Math.round(x * 100) + "%"; }

  function renderReport(r) {
    $("reports-period").textContent = "From " + fmtTime(r.from_ms) + " to " + fmtTime(r.to_ms) +
      (state.period === "custom" ? "" : " (now)") + ".";
    var note = $("reports-note");
    note.hidden = !r.scan.truncated;
    note.textContent = r.scan.truncated ? "These figures cover the first " + r.scan.conversations +
      " conversations only: the store is bigger than one report reads." : "";

    var cv = r.conversations, ta = r.time_to_agent;
    var tiles = $("report-tiles");
    tiles.textContent = "";
    tiles.appendChild(tile("conversations with activity", String(cv.active), null, "tile-active"));
    tiles.appendChild(tile("finished by the AI alone", pct(cv.ai_only_share),
                           cv.ai_only + " of " + cv.active + " never escalated", "tile-ai-only"));
    tiles.appendChild(tile("escalations", String(r.escalations.total), null, "tile-escalations"));
    tiles.appendChild(tile("median time to an agent", ta.median_ms === null ? "-" : fmtWait(ta.median_ms),
                           ta.accepted + " accepted, " + ta.waiting + " still waiting, " + ta.not_accepted +
                           " not accepted" + (ta.p90_ms === null ? "" : " \u00b7 p90 " + fmtWait(ta.p90_ms)), "tile-wait"));
    tiles.appendChild(tile("hand-backs to the AI", String(r.handbacks.total), null, "tile-handbacks"));
    drawCharts(r);
  }

  function chartWidth(id) {
    return Math.max(240, $(id).clientWidth || 240);
  }

  // Whole numbers only on a count axis, from 0 and never a flat 0..0.
  function countAxis() {
    return { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000, 100000],
             font: "11px system-ui, sans-serif", size: 44,
             values: function (u, splits) { return splits.map(function (v) { return String(v); }); } };
  }

  function countScale() {
    return { range: function (u, min, max) { return [0, Math.max(1, max) * 1.15]; } };
  }

  // An empty bucket draws nothing rather than a flat line.
  function bars(values) {
    return values.map(function (v) { return v || null; });
  }

  function barSeries(label, color) {
    return { label: label, stroke: color, fill: color + "cc", width: 1, points: { show: false },
             paths: uPlot.paths.bars({ size: [0.7, 72], align: 0 }) };
  }

  // Bars over named categories (x is their index).
  function categoryChart(id, names, values, label, color) {
    var xs = names.map(function (_, i) { return i; });
    var opts = {
      width: chartWidth(id), height: 200, legend: { show: false },
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      scales: { x: { time: false, range: [-0.5, names.length - 0.5] }, y: countScale() },
      axes: [
        { splits: function () { return xs; }, font: "11px system-ui, sans-serif", grid: { show: false },
          values: function (u, splits) { return splits.map(function (v) { return names[v] || ""; }); } },
        countAxis()
      ],
      series: [{}, barSeries(label, color)]
    };
    return new uPlot(opts, [xs, bars(values)], $(id));
  }

  function drawCharts(r) {
    if (typeof uPlot === "undefined") {
      say("The charts' library did not load: reload the page.", "error");
      return;
    }
    state.charts.forEach(function (u) { u.destroy(); });
    state.charts = [];
    ["chart-hours", "chart-triggers", "chart-wait", "chart-share", "chart-paths"].forEach(function (id) {
      $(id).textContent = "";
    });

    // Escalations per hour: uPlot's time axis reads seconds, in local time.
    var ph = r.escalations.per_hour, xs = [];
    for (var i = 0; i < ph.counts.length; i++) xs.push((ph.start_ms + i * ph.step_ms) / 1000);
    state.charts.push(new uPlot({
      width: chartWidth("chart-hours"), height: 220, legend: { show: false },
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      scales: { x: { time: true, range: [xs[0] - 1800, xs[xs.length - 1] + 1800] }, y: countScale() },
      axes: [{ font: "11px system-ui, sans-serif" }, countAxis()],
      series: [{}, barSeries("escalations", "#d98a00")]
    }, [xs, bars(ph.counts)], $("chart-hours")));

    var trig = Object.keys(r.escalations.by_trigger);
    state.charts.push(categoryChart("chart-triggers", trig.map(function (k) { return TRIGGERS[k] || k; }),
                                    trig.map(function (k) { return r.escalations.by_trigger[k]; }),
                                    "escalations", "#d98a00"));

    var bins = r.time_to_agent.bins;
    state.charts.push(categoryChart("chart-wait", bins.map(function (b) {
      return b.to_ms === null ? "\u2265 " + fmtDuration(b.from_ms) : "< " + fmtDuration(b.to_ms);
    }).map(function (s) { return s.replace(/m 00s$/, "m").replace(/h 00m$/, "h"); }),
      bins.map(function (b) { return b.count; }), "handoffs", "#2456d6"));

    var cv = r.conversations;
    state.charts.push(categoryChart("chart-share", ["AI alone", "with a person"], [cv.ai_only, cv.with_person],
                                    "conversations", "#17724a"));

    var paths = Object.keys(r.handbacks.by_path);
    state.charts.push(categoryChart("chart-paths", paths.map(function (k) { return PATHS[k] || k; }),
                                    paths.map(function (k) { return r.handbacks.by_path[k]; }),
                                    "hand-backs", "#5b3fc4"));
  }

  var resizeTimer = null;
  function onResize() {
    if (resizeTimer) clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      if (state.report && state.view === "reports") drawCharts(state.report);
    }, 200);
  }

  // ---- actions -----------------------------------------------------------

  function act(what, reason) {
    var d = state.detail;
    if (!d) return;
    var name = who(d);
    var body = splitKey(d.key);
    if (reason) body.reason = reason;
    if (what === "escalate") state.mine[d.key] = true;
    var buttons = [$("handback"), $("escalate")];
    buttons.forEach(function (b) { b.disabled = true; });
    say((what === "handback" ? "Handing " + name + " back to the AI\u2026" : "Escalating " + name + "\u2026"), "info");
    api(what, { method: "POST", body: body }).then(function (r) {
      if (r.status === 401) throw { auth: true };
      if (r.status !== 200) delete state.mine[d.key];
      if (r.status === 200) {
        say(what === "handback" ? "Handed back to the AI: " + name + "." : "Escalated: " + name + ".", "ok");
      } else if (r.status === 404) {
        say("baton does not know " + name + " any more.", "error");
      } else {
        say((what === "handback" ? "Hand-back" : "Escalation") + " failed: HTTP " + r.status +
            (r.data && r.data.error ? " (" + r.data.error + ")" : "") + ". Nothing changed; try again.", "error");
      }
      delete state.sig.detail;
      state.sig.list = null;
      return loadDetail();
    }).catch(function (err) {
      delete state.mine[d.key];
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
        say("Signed in.", "ok", 3000);
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
    var searchTimer = null;
    $("search").addEventListener("input", function () {
      if (searchTimer) clearTimeout(searchTimer);
      searchTimer = setTimeout(function () { state.sig.list = null; stop(); refresh(); }, SEARCH_DELAY_MS);
    });
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

    $("tab-conversations").addEventListener("click", function () { showView("conversations"); });
    $("tab-reports").addEventListener("click", function () { showView("reports"); });
    var buttons = document.querySelectorAll(".period-btn");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (ev) {
        setPeriod(ev.currentTarget.getAttribute("data-period"));
        loadReport();
      });
    }
    var today = new Date();
    $("period-to").value = dateValue(today);
    $("period-from").value = dateValue(new Date(today.getFullYear(), today.getMonth(), today.getDate() - 6));
    $("period-custom").addEventListener("submit", function (ev) {
      ev.preventDefault();
      setPeriod("custom");
      loadReport();
    });
    $("reports-refresh").addEventListener("click", loadReport);
    window.addEventListener("resize", onResize);

    try { state.sound = localStorage.getItem(SOUND_KEY) === "on"; } catch (e) { state.sound = false; }
    renderSound();
    $("sound-toggle").addEventListener("click", toggleSound);
    document.addEventListener("click", wakeAudio);
    setInterval(tick, 1000);

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

  // For the tests and the curious: how the page writes times.
  window.batonConsole = Object.freeze({ fmtTime: fmtTime, fmtDuration: fmtDuration });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
