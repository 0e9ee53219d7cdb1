"""The other side of baton's webhooks, for fake_twilio.py.

fake_twilio.py serves the REST APIs baton calls; this module makes the fake
call baton back the way Twilio does, so a test (or `make demo`) can play a
whole conversation: a customer writing on WhatsApp, the AI answering, the
escalation to Flex, a simulated human agent accepting, chatting and closing,
and the conversation going back to the AI.

Control API (no auth, never recorded; wired into fake_twilio.py's /_fake/):

    POST /_fake/webhooks/config {"deliver_to": "http://127.0.0.1:PORT",
                                 "public_url": "https://bot.example.com",
                                 "auth_token": "..."}   (token defaults to --auth-token)
    GET  /_fake/webhooks/config
    GET  /_fake/webhooks[?path_contains=S][&since=SEQ]
         every delivery: {"seq", "time", "path", "params", "status", "body",
                          "idempotency_token", "attempt", "error"}
    POST /_fake/inbound {"from", "to", "body", "profile_name"?, "retry"?,
                         "media"?: [MediaSid...], "message_type"?, "params"?: {name: str}}
         a customer's WhatsApp message, routed as Twilio routes it (synchronous).
         media: Messaging media of the fake (twilio_media.py) as NumMedia,
         MediaContentTypeN and MediaUrlN (an MM SID); message_type defaults from
         the first media's type; params adds e.g. Latitude/Longitude or
         ButtonText/ButtonPayload. Rich messages go to the Messaging webhook only
         (400 when the customer is bound to a Flex conversation):
         {"routed": "conversation"|"messaging", "status": N|null, "sid": "IM..|SM..",
          "conversation_sid"?, "retry_status"?}
    GET  /_fake/whatsapp?to=ADDRESS
         what that WhatsApp user received, in time order:
         {"time", "from", "to", "body", "via": "messages_api"|"conversation", "sid",
          "author"?, "conversation_sid"?}
    GET  /_fake/agent            the simulated Flex agent's configuration
    POST /_fake/agent {...}      replaces it (missing keys take the defaults below;
                                 "enabled" defaults to true on POST)
    GET  /_fake/agent/log[?interaction=KD]
         [{"time", "interaction", "action", "detail"}]

Webhooks: every one is a form POST to deliver_to + path, signed like Twilio
(wire-contracts §2: X-Twilio-Signature = base64 HMAC-SHA1(auth_token,
public_url + path + each sorted name and value)), with a fresh
I-Twilio-Idempotency-Token per delivery (a retry re-sends the same token).
Paths: /twilio/messages (Messaging, §1), /twilio/conversations (Conversations
post-event webhooks, §4), /twilio/taskrouter (TaskRouter events, §5).
Without deliver_to a delivery is still recorded, with status null.

Ordering: every webhook and every agent step runs on one worker thread that
takes jobs in due-time order, so the events of one chain reach baton in the
order Twilio would send them; /_fake/inbound runs its job on the same thread
and waits for it.

REST-originated actions (baton's own POSTs to /v1/...) fire no webhooks, as
on real Twilio without X-Twilio-Webhook-Enabled: true (not honoured here).
The simulated agent still *sees* customer messages baton posts by REST into
its conversation (a Flex agent reads the whole conversation) and answers them.
So with the agent disabled (the default) the fake calls baton only for
/_fake/inbound: a replay run (baton-replay of a capture) gets no webhook from
the fake that would double the captured ones.

SIDs the simulator creates itself (the customer's messages, the agent's
participant, messages, reservation and worker) count apart from the REST
ones under fake_twilio.py --sid-seed (fakelib.sid_stream).

Agent configuration (defaults):
    enabled          false
    identity         "Gonzalo"       Conversations identity and TaskRouter WorkerName
    accept_after_ms  200             null = never accept
    greeting         "Hi, good afternoon, I'm {identity}, how can I help you?"
                                     ({identity} is substituted; null/"" = no greeting)
    replies          []              [{"match": [str...] | str, "reply": str,
                                       "close_after": bool}]; first rule with any
                                     match as a case-insensitive substring of the
                                     customer's message wins; no match = no reply
    reply_delay_ms   100
    cancel_after_ms  null            with accept_after_ms null: task.canceled
                                     ("Task TTL Exceeded") after that delay
                                     (posting cancel_after_ms without
                                     accept_after_ms implies accept_after_ms null)
The configuration in force when an Interaction is created governs that
interaction for its whole life.
"""

import base64
import contextlib
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import re
import secrets
import sys
import threading
import time
import traceback
import urllib.parse

from fakelib import (Recorder, form_first, iso_ms, is_non_negative_number, list_filters,
                     parse_iso, parse_json_or_none, sid_stream, twilio_error_reply, twilio_sid)

PATH_MESSAGES = "/twilio/messages"
PATH_CONVERSATIONS = "/twilio/conversations"
PATH_TASKROUTER = "/twilio/taskrouter"
API_VERSION = "2010-04-01"
# Twilio's webhook defaults (wire-contracts §1): connect 5 s, read 15 s.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 15.0
RESPONSE_BODY_KEEP = 16384
INBOUND_WAIT_S = 60.0
WORKSPACE_NAME = "Flex Task Assignment"
COMPLETED_REASON = "Task completed by agent"
CANCELED_REASON = "Task TTL Exceeded"

AGENT_DEFAULTS = {
    "enabled": False,
    "identity": "Gonzalo",
    "accept_after_ms": 200,
    "greeting": "Hi, good afternoon, I'm {identity}, how can I help you?",
    "replies": [],
    "reply_delay_ms": 100,
    "cancel_after_ms": None,
}


# ---- helpers ------------------------------------------------------------

def twilio_signature(token, url, params):
    """wire-contracts §2: url + for each name in ordinal order, name + value
    (repeated names: de-duplicated values, sorted); base64 HMAC-SHA1."""
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    data = url
    for name in sorted({n for n, _ in pairs}):
        for value in sorted({v for n, v in pairs if n == name}):
            data += name + value
    digest = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


# ---- the one worker thread ------------------------------------------------

class Worker:
    """Runs jobs one at a time in (due time, submission) order.  Jobs marked
    droppable are discarded if a reset happened after they were submitted."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap = []
        self._seq = itertools.count()
        self.generation = 0
        self._thread = threading.Thread(target=self._run, name="twilio-sim", daemon=True)
        self._thread.start()

    def submit(self, delay_s, fn, droppable=True):
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), next(self._seq),
                                        self.generation, droppable, fn))
            self._cond.notify()

    def run_sync(self, fn, timeout):
        """Run fn on the worker (after everything already due) and return its result."""
        done, box = threading.Event(), {}

        def job():
            try:
                box["result"] = fn()
            except BaseException as e:  # handed to the waiting thread
                box["error"] = e
            finally:
                done.set()

        self.submit(0, job, droppable=False)
        if not done.wait(timeout):
            raise TimeoutError("the webhook worker did not finish in time")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def bump(self):
        with self._cond:
            self.generation += 1
            self._heap = [item for item in self._heap if not item[3]]
            heapq.heapify(self._heap)

    def alive(self, generation):
        return generation == self.generation

    def _run(self):
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        _, _, gen, droppable, fn = heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait)
            if droppable and gen != self.generation:
                continue
            try:
                fn()
            except Exception:
                traceback.print_exc(file=sys.stderr)


# ---- webhook emitter ------------------------------------------------------

class Webhooks:
    """Signs, sends and records webhooks."""

    def __init__(self, default_token):
        self._lock = threading.Lock()
        self.default_token = default_token
        self.deliver_to = None
        self.public_url = None
        self.auth_token = default_token
        # Same numbering and ?path_contains=&since= filtering as the request
        # log, without a file.
        self._log = Recorder()

    def configure(self, obj):
        if not isinstance(obj, dict):
            return "config must be a JSON object"
        unknown = set(obj) - {"deliver_to", "public_url", "auth_token"}
        if unknown:
            return f"unknown keys {sorted(unknown)}"
        deliver_to = obj.get("deliver_to")
        public_url = obj.get("public_url", self.public_url)
        token = obj.get("auth_token") or self.default_token
        if deliver_to is not None:
            if not isinstance(deliver_to, str):
                return "deliver_to must be a string"
            u = urllib.parse.urlsplit(deliver_to)
            if u.scheme not in ("http", "https") or not u.hostname:
                return "deliver_to must be an http(s) URL"
        if public_url is not None:
            if not isinstance(public_url, str) or not re.match(r"^https?://[^/]", public_url):
                return "public_url must be an http(s) URL"
        if not isinstance(token, str):
            return "auth_token must be a string"
        with self._lock:
            self.deliver_to = deliver_to.rstrip("/") if deliver_to else None
            # The signed URL defaults to the delivery URL (no proxy in between).
            self.public_url = (public_url or deliver_to or "").rstrip("/") or None
            self.auth_token = token
        return None

    def config(self):
        with self._lock:
            return {"deliver_to": self.deliver_to, "public_url": self.public_url,
                    "auth_token_set": self.auth_token != self.default_token}

    def build(self, path, params):
        """A request ready to send (and to re-send as a retry)."""
        return {"path": path, "params": {k: str(v) for k, v in params.items()},
                "token": "ID" + secrets.token_hex(16)}

    def send(self, req, attempt=1):
        with self._lock:
            deliver_to, public_url, token = self.deliver_to, self.public_url, self.auth_token
        started = time.time()
        status = body = error = None
        if deliver_to is None:
            error = "webhooks not configured (POST /_fake/webhooks/config)"
        else:
            status, body, error = self._post(deliver_to, public_url, token, req)
        record = {"time": started, "path": req["path"], "params": dict(req["params"]),
                  "status": status, "body": body, "idempotency_token": req["token"],
                  "attempt": attempt, "error": error}
        return self._log.add(record)

    @staticmethod
    def _post(deliver_to, public_url, token, req):
        u = urllib.parse.urlsplit(deliver_to)
        path = req["path"]
        payload = urllib.parse.urlencode(list(req["params"].items())).encode("utf-8")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(token, public_url + path, req["params"]),
            "I-Twilio-Idempotency-Token": req["token"],
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
        }
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.connect()
            conn.sock.settimeout(READ_TIMEOUT_S)
            conn.request("POST", (u.path or "") + path, payload, headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, raw[:RESPONSE_BODY_KEEP].decode("utf-8", "replace"), None
        except (OSError, http.client.HTTPException) as e:
            return None, None, f"{type(e).__name__}: {e}"
        finally:
            conn.close()

    def list(self, path_contains=None, since=0):
        return self._log.list(path_contains, since)

    def clear(self):
        self._log.reset()


# ---- the simulator --------------------------------------------------------

class Simulator:
    """Customer, Flex agent and webhook emitter of one fake server.

    Shares ConversationsState's lock for its own data (sessions, join
    indexes, message times, agent log): hooks are called with that lock held.
    Never sends HTTP while holding it."""

    def __init__(self, server):
        self.server = server
        self.state = server.conversations
        self.account_sid = server.account_sid
        self.webhooks = Webhooks(server.auth_token)
        self.worker = Worker()
        self._lock = self.state._lock
        self._tl = threading.local()
        self.agent_cfg = dict(AGENT_DEFAULTS)
        self._sessions = {}      # KD -> agent session
        self._joined = {}        # MB sid -> index of the first message after the join
        self._msg_times = {}     # IM sid -> epoch seconds it was added
        self._agent_log = []
        self._worker_sids = {}   # identity -> WK sid, stable for the run
        self.state.sim = self

    # ---- control API ---------------------------------------------------

    ROUTES = {"/_fake/webhooks/config": ("GET", "POST"), "/_fake/webhooks": ("GET",),
              "/_fake/inbound": ("POST",), "/_fake/whatsapp": ("GET",),
              "/_fake/agent": ("GET", "POST"), "/_fake/agent/log": ("GET",),
              "/_fake/agent/sessions": ("GET",), "/_fake/agent/act": ("POST",)}

    def control(self, method, path, query, body):
        """(status, payload) for the control paths of this module, else None."""
        if path not in self.ROUTES:
            return None
        if method not in self.ROUTES[path]:
            return 405, {"error": f"{method} not allowed on {path}"}
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        obj = None
        if method == "POST":
            try:
                obj = json.loads(body or b"{}")
            except (ValueError, UnicodeDecodeError):
                return 400, {"error": "body must be JSON"}
        if path == "/_fake/webhooks/config":
            if method == "GET":
                return 200, self.webhooks.config()
            err = self.webhooks.configure(obj)
            return (400, {"error": err}) if err else (200, self.webhooks.config())
        if path == "/_fake/webhooks":
            try:
                path_contains, since = list_filters(q)
            except ValueError as e:
                return 400, {"error": str(e)}
            return 200, self.webhooks.list(path_contains, since)
        if path == "/_fake/inbound":
            return self.inbound(obj)
        if path == "/_fake/whatsapp":
            to = q.get("to", [""])[0]
            if not to:
                return 400, {"error": "to is required"}
            return 200, self.whatsapp(to)
        if path == "/_fake/agent":
            if method == "GET":
                with self._lock:
                    return 200, json.loads(json.dumps(self.agent_cfg))
            cfg, err = self._agent_config(obj)
            if err:
                return 400, {"error": err}
            with self._lock:
                self.agent_cfg = cfg
                return 200, json.loads(json.dumps(cfg))
        if path == "/_fake/agent/log":
            kd = q.get("interaction", [None])[0]
            with self._lock:
                return 200, [dict(e) for e in self._agent_log
                             if kd is None or e["interaction"] == kd]
        if path == "/_fake/agent/sessions":
            return 200, self.sessions()
        if path == "/_fake/agent/act":
            return self.act(obj)
        return None

    # ---- the agent by hand (make sandbox) ---------------------------------

    def sessions(self):
        """Every task the simulated agent has seen, with its conversation's
        messages as the agent reads them in Flex."""
        out = []
        with self._lock:
            for kd, s in self._sessions.items():
                conv = self.state._convs.get(s["conv"]) or {"messages": [], "participants": {}}
                attrs = s["props"].get("attributes") or "{}"
                try:
                    attrs = json.loads(attrs) if isinstance(attrs, str) else attrs
                except ValueError:
                    attrs = {}
                identity = s["cfg"]["identity"]
                out.append({
                    "interaction": kd, "task": s["wt"], "conversation": s["conv"],
                    "state": s["state"], "created": s["created"], "identity": identity,
                    "customer": attrs.get("customerAddress") or attrs.get("from"),
                    "customer_name": attrs.get("customerName"),
                    "messages": [{"author": m["author"], "body": m["body"] or "",
                                  "agent": m["author"] == identity}
                                 for m in conv["messages"]]})
        return out

    def act(self, obj):
        """POST /_fake/agent/act {"interaction", "action": accept|say|close, "text"}:
        what an agent does in Flex, with the same webhooks as the automatic agent."""
        if not isinstance(obj, dict) or not isinstance(obj.get("interaction"), str):
            return 400, {"error": "interaction is required"}
        kd, action, text = obj["interaction"], obj.get("action"), obj.get("text")
        with self._lock:
            s = self._sessions.get(kd)
        if s is None:
            return 404, {"error": f"no task for interaction {kd}"}
        gen = self.worker.generation
        if action == "accept":
            if s["state"] != "pending":
                return 409, {"error": f"the task is {s['state']}, not pending"}
            self.worker.run_sync(lambda: self._agent_accept(kd), 10)
        elif action == "say":
            if not isinstance(text, str) or not text.strip():
                return 400, {"error": "text is required"}
            if s["state"] != "active":
                return 409, {"error": f"the task is {s['state']}, not active"}
            self.worker.run_sync(lambda: self._agent_say(s, text, "replied", gen), 10)
        elif action == "close":
            if s["state"] != "active":
                return 409, {"error": f"the task is {s['state']}, not active"}
            self.worker.run_sync(lambda: self._agent_close(s, gen), 10)
        else:
            return 400, {"error": "action is accept, say or close"}
        with self._lock:
            return 200, {"interaction": kd, "state": s["state"]}

    def reset(self):
        """POST /_fake/reset: forget everything but the webhook destination."""
        self.worker.bump()
        with self._lock:
            self.agent_cfg = dict(AGENT_DEFAULTS)
            self._sessions.clear()
            self._joined.clear()
            self._msg_times.clear()
            self._agent_log.clear()
        self.webhooks.clear()

    @staticmethod
    def _agent_config(obj):
        if not isinstance(obj, dict):
            return None, "agent config must be a JSON object"
        unknown = set(obj) - set(AGENT_DEFAULTS)
        if unknown:
            return None, f"unknown keys {sorted(unknown)}"
        cfg = dict(AGENT_DEFAULTS)
        cfg["enabled"] = True
        if obj.get("cancel_after_ms") is not None and "accept_after_ms" not in obj:
            cfg["accept_after_ms"] = None
        cfg.update(obj)
        if not isinstance(cfg["enabled"], bool):
            return None, "enabled must be a boolean"
        if not isinstance(cfg["identity"], str) or not cfg["identity"]:
            return None, "identity must be a non-empty string"
        for key in ("accept_after_ms", "cancel_after_ms"):
            if cfg[key] is not None and not is_non_negative_number(cfg[key]):
                return None, f"{key} must be a non-negative number or null"
        if not is_non_negative_number(cfg["reply_delay_ms"]):
            return None, "reply_delay_ms must be a non-negative number"
        if cfg["greeting"] is not None and not isinstance(cfg["greeting"], str):
            return None, "greeting must be a string or null"
        if not isinstance(cfg["replies"], list):
            return None, "replies must be a list"
        rules = []
        for i, r in enumerate(cfg["replies"]):
            if not isinstance(r, dict) or set(r) - {"match", "reply", "close_after"}:
                return None, f"replies[{i}] must be an object with match, reply, close_after"
            match = r.get("match", [])
            if isinstance(match, str):
                match = [match]
            if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
                return None, f"replies[{i}].match must be a string or a list of strings"
            if not isinstance(r.get("reply"), str) or not r["reply"]:
                return None, f"replies[{i}].reply must be a non-empty string"
            if not isinstance(r.get("close_after", False), bool):
                return None, f"replies[{i}].close_after must be a boolean"
            rules.append({"match": match, "reply": r["reply"],
                          "close_after": r.get("close_after", False)})
        cfg["replies"] = rules
        return cfg, None

    # ---- hooks called by ConversationsState (its lock held) ----------------

    @contextlib.contextmanager
    def _own(self):
        """Marks state changes the simulator makes itself (they get their
        webhooks from the simulator, not from the REST hooks).  Their SIDs
        count in their own stream (fakelib.sid_stream): with --sid-seed, a
        replay run without the simulated customer and agent still gets the
        SIDs of the original run for everything baton creates by REST."""
        self._tl.own = True
        try:
            with sid_stream("sim"):
                yield
        finally:
            self._tl.own = False

    def participant_added(self, conv, participant):
        # Messages with an index below this were there before the participant
        # joined: Twilio does not deliver them to its WhatsApp.
        self._joined[participant["sid"]] = len(conv["messages"])

    def message_added(self, conv, message):
        self._msg_times[message["sid"]] = time.time()
        if getattr(self._tl, "own", False):
            return
        # Added through the REST API: no webhook; the agent reads it in Flex.
        self._agent_observe(conv, message)

    def interaction_created(self, inter):
        inter["channel_status"] = "active"
        inter["task_status"] = "pending"
        cfg = json.loads(json.dumps(self.agent_cfg))
        if not cfg["enabled"]:
            return
        kd = inter["sid"]
        props = inter["routing"]["properties"]
        identity = cfg["identity"]
        with sid_stream("sim"):
            wr = twilio_sid("WR")
            wk = self._worker_sids.get(identity) or twilio_sid("WK")
        self._worker_sids[identity] = wk
        sess = {"kd": kd, "wt": inter["task_sid"], "uo": inter["channel_sid"],
                "conv": inter["conversation_sid"], "cfg": cfg, "state": "pending",
                "wr": wr, "wk": wk, "props": props, "created": time.time(),
                "participant_sid": None, "joined_index": None}
        self._sessions[kd] = sess
        if cfg["accept_after_ms"] is not None:
            self._log(kd, "accept_scheduled", {"after_ms": cfg["accept_after_ms"],
                                               "identity": identity})
            self.worker.submit(cfg["accept_after_ms"] / 1000.0, lambda: self._agent_accept(kd))
        elif cfg["cancel_after_ms"] is not None:
            self._log(kd, "cancel_scheduled", {"after_ms": cfg["cancel_after_ms"]})
            self.worker.submit(cfg["cancel_after_ms"] / 1000.0, lambda: self._agent_cancel(kd))
        else:
            self._log(kd, "waiting", {"detail": "accept_after_ms and cancel_after_ms are null"})

    # ---- Flex Interaction Channel (REST, routed by ConversationsState) ------

    def _channel(self, kd, uo, path):
        inter = self.state._interactions.get(kd)
        if inter is None or inter.get("channel_sid") != uo:
            return None, twilio_error_reply(404, 20404, f"The requested resource {path} was not found")
        return inter, None

    def _channel_resource(self, inter, base):
        kd, uo = inter["sid"], inter["channel_sid"]
        url = f"{base}/v1/Interactions/{kd}/Channels/{uo}"
        return {"sid": uo, "interaction_sid": kd, "type": inter["channel"]["type"],
                "status": inter.get("channel_status", "active"),
                "error_code": None, "error_message": None,
                "media_channel_sid": inter.get("conversation_sid"),
                "routing": {"task_sid": inter.get("task_sid"),
                            "status": inter.get("task_status", "pending")},
                "url": url,
                "links": {"participants": url + "/Participants", "invites": url + "/Invites",
                          "transfers": url + "/Transfers"}}

    def fetch_channel(self, kd, uo, path, base):
        inter, err = self._channel(kd, uo, path)
        return err or (200, self._channel_resource(inter, base), {})

    def update_channel(self, kd, uo, path, form, base):
        """POST /v1/Interactions/{KD}/Channels/{UO}: Status=closed|inactive,
        Routing={"status":"closed"} (required with inactive).  Closing also
        closes the bound conversation; as a REST action it fires no webhook."""
        inter, err = self._channel(kd, uo, path)
        if err:
            return err
        status = form_first(form, "Status")
        if status is None:
            return twilio_error_reply(400, 20001, "Missing required parameter Status in the post body")
        if status not in ("closed", "inactive"):
            return twilio_error_reply(400, 20001, f"Invalid Status {status!r}: closed or inactive")
        routing_raw = form_first(form, "Routing")
        routing = None
        if routing_raw is not None:
            routing = parse_json_or_none(routing_raw)
            if not isinstance(routing, dict):
                return twilio_error_reply(400, 20001, "Routing must be a JSON object")
            if routing.get("status") != "closed":
                return twilio_error_reply(400, 20001, "Routing status must be 'closed'")
        if status == "inactive" and routing is None:
            return twilio_error_reply(400, 20001, "Routing is required when Status is inactive")
        inter["channel_status"] = status
        if inter.get("task_status") not in ("completed", "canceled"):
            inter["task_status"] = "completed" if routing else "wrapping"
        conv = self.state._convs.get(inter.get("conversation_sid"))
        closed_conv = False
        if status == "closed" and conv is not None and conv["state"] != "closed":
            with self._own():
                self.state._update_conversation(conv, {"State": ["closed"]}, base)
            closed_conv = True
        sess = self._sessions.get(kd)
        if sess is not None and sess["state"] in ("pending", "active"):
            sess["state"] = "stopped"
        if sess is not None:
            self._log(kd, "channel_updated_by_api", {"status": status, "routing": routing,
                                                     "conversation_closed": closed_conv})
        return 200, self._channel_resource(inter, base), {}

    # ---- simulated customer ---------------------------------------------

    def inbound(self, obj):
        if not isinstance(obj, dict):
            return 400, {"error": "body must be a JSON object"}
        frm, to, body = obj.get("from"), obj.get("to"), obj.get("body", "")
        name = obj.get("profile_name")
        retry = obj.get("retry", False)
        if not isinstance(frm, str) or not frm or not isinstance(to, str) or not to:
            return 400, {"error": "from and to are required strings"}
        if not isinstance(body, str):
            return 400, {"error": "body must be a string"}
        if name is not None and not isinstance(name, str):
            return 400, {"error": "profile_name must be a string"}
        if not isinstance(retry, bool):
            return 400, {"error": "retry must be a boolean"}
        rich, err = self._rich_params(obj)
        if err:
            return 400, {"error": err}
        try:
            return self.worker.run_sync(lambda: self._inbound_job(frm, to, body, name, retry, rich),
                                        INBOUND_WAIT_S)
        except TimeoutError as e:
            return 504, {"error": str(e)}

    def _rich_params(self, obj):
        """(media list, message_type, extra params) of a rich /_fake/inbound, or an error."""
        media = obj.get("media", [])
        mtype = obj.get("message_type")
        extra = obj.get("params", {})
        if not isinstance(media, list) or len(media) > 10 or not all(
                isinstance(m, str) for m in media):
            return None, "media must be a list of at most 10 MediaSids"
        if mtype is not None and not isinstance(mtype, str):
            return None, "message_type must be a string"
        if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
            return None, "params must be an object of strings"
        store = getattr(self.server, "media", None)
        types = []
        for sid in media:
            entry = store.media.get(sid) if store is not None else None
            types.append(entry["content_type"] if entry else "image/jpeg")
        if mtype is None:
            major = types[0].split("/")[0] if types else "text"
            mtype = major if major in ("image", "audio", "video", "text") else "document"
        return (list(zip(media, types)), mtype, extra), None

    def _binding(self, frm, to):
        for c in self.state._convs.values():
            if c["state"] == "closed":
                continue
            for p in c["participants"].values():
                b = p["messaging_binding"] or {}
                if b.get("address") == frm and b.get("proxy_address") == to:
                    return c, p
        return None, None

    def _inbound_job(self, frm, to, body, name, retry, rich=None):
        media, mtype, extra = rich or ([], "text", {})
        with self._lock:
            conv, _ = self._binding(frm, to)
            if conv is not None and (media or extra):
                return 400, {"error": "media or extra params into a Flex conversation are "
                             "not simulated"}
            if conv is not None:
                with self._own():
                    st, res, _ = self.state._create_message(
                        conv, {"Author": [frm], "Body": [body]}, "")
                if st != 201:
                    return 400, {"error": "the conversation refused the message", "twilio": res}
                msg = conv["messages"][-1]
                params = self._message_added_params(conv, msg, "WHATSAPP")
                req = self.webhooks.build(PATH_CONVERSATIONS, params)
        if conv is not None:
            rec = self.webhooks.send(req)
            out = {"routed": "conversation", "status": rec["status"], "sid": msg["sid"],
                   "conversation_sid": conv["sid"]}
            if retry:
                out["retry_status"] = self.webhooks.send(req, attempt=2)["status"]
            with self._lock:
                self._agent_observe(conv, msg)
            return 200, out
        with sid_stream("sim"):  # not counted with the SMs baton's sends get
            sid = twilio_sid("MM" if media else "SM")
        params = {"SmsMessageSid": sid, "NumMedia": str(len(media))}
        if name:
            params["ProfileName"] = name
        for i, (msid, ctype) in enumerate(media):
            params["MediaContentType%d" % i] = ctype
            params["MediaUrl%d" % i] = "%s/2010-04-01/Accounts/%s/Messages/%s/Media/%s" % (
                self._api_base(), self.account_sid, sid, msid)
        params.update(extra)
        params.update({
            "MessageType": mtype, "SmsSid": sid,
            "WaId": re.sub(r"[^0-9]", "", frm.partition(":")[2] or frm),
            "SmsStatus": "received", "Body": body, "To": to, "NumSegments": "1",
            "ReferralNumMedia": "0", "MessageSid": sid, "AccountSid": self.account_sid,
            "From": frm, "ApiVersion": API_VERSION})
        req = self.webhooks.build(PATH_MESSAGES, params)
        rec = self.webhooks.send(req)
        out = {"routed": "messaging", "status": rec["status"], "sid": sid}
        if retry:
            out["retry_status"] = self.webhooks.send(req, attempt=2)["status"]
        return 200, out

    def _api_base(self):
        """This fake's own base URL, as MediaUrlN points at it."""
        host, port = self.server.server_address[:2]
        if ":" in host:
            host = "[%s]" % host
        return "http://%s:%d" % (host, port)

    def _message_added_params(self, conv, msg, source, identity=None):
        t = self._msg_times.get(msg["sid"], time.time())
        p = {"EventType": "onMessageAdded", "AccountSid": self.account_sid,
             "ConversationSid": conv["sid"], "MessageSid": msg["sid"],
             "Index": str(msg["index"]), "Author": msg["author"], "Body": msg["body"] or ""}
        if msg["participant_sid"]:
            p["ParticipantSid"] = msg["participant_sid"]
        if identity is not None:
            p["ClientIdentity"] = identity
        if msg.get("media"):
            # As Twilio sends it: a JSON array of PascalCase media descriptions.
            p["Media"] = json.dumps([{"Sid": m.get("sid"), "Filename": m.get("filename"),
                                      "ContentType": m.get("content_type"), "Size": m.get("size")}
                                     for m in msg["media"]], separators=(",", ":"))
        p.update({"Attributes": msg["attributes"], "DateCreated": iso_ms(t), "Source": source,
                  "RetryCount": "0"})
        if conv.get("messaging_service_sid"):
            p["MessagingServiceSid"] = conv["messaging_service_sid"]
        p["ChatServiceSid"] = self.state.chat_service_sid
        return p

    # ---- what a WhatsApp user received ------------------------------------

    def whatsapp(self, to):
        out = []
        for r in self.server.recorder.list(path_contains="/Messages.json"):
            res = r.get("response")
            if r.get("method") != "POST" or r.get("status") != 201 or not isinstance(res, dict):
                continue
            if res.get("to") != to or not str(res.get("sid", "")).startswith(("SM", "MM")):
                continue
            out.append({"time": r["time"], "from": res.get("from") or res.get("messaging_service_sid"),
                        "to": to, "body": res.get("body"), "via": "messages_api",
                        "sid": res["sid"]})
        with self._lock:
            for c in self.state._convs.values():
                for p in c["participants"].values():
                    b = p["messaging_binding"] or {}
                    if b.get("address") != to:
                        continue
                    for m in c["messages"][self._joined.get(p["sid"], 0):]:
                        if m["author"] == to:
                            continue
                        out.append({"time": self._msg_times.get(m["sid"], parse_iso(m["date_created"])),
                                    "from": b.get("proxy_address"), "to": to, "body": m["body"],
                                    "via": "conversation", "author": m["author"],
                                    "sid": m["sid"], "conversation_sid": c["sid"]})
        out.sort(key=lambda e: e["time"])
        return out

    # ---- simulated Flex agent -------------------------------------------

    def _log(self, kd, action, detail):
        with self._lock:
            self._agent_log.append({"time": time.time(), "interaction": kd,
                                    "action": action, "detail": detail})

    def _stale(self, gen):
        return not self.worker.alive(gen)

    def _task_params(self, s, event, resource, status, description, extra=None):
        props, now = s["props"], int(time.time())
        p = {"EventType": event, "AccountSid": self.account_sid,
             "WorkspaceSid": props["workspace_sid"], "WorkspaceName": WORKSPACE_NAME,
             "EventDescription": description,
             "ResourceType": resource,
             "ResourceSid": s["wr"] if resource == "reservation" else s["wt"],
             "Timestamp": str(now),
             "TaskSid": s["wt"], "TaskAttributes": props["attributes"],
             "TaskAge": str(max(0, now - int(s["created"]))),
             "TaskPriority": str(props.get("priority", 0)),
             "TaskAssignmentStatus": status,
             "TaskQueueSid": props["queue_sid"], "TaskQueueName": props["queue_name"],
             "TaskChannelSid": props["task_channel_sid"],
             "TaskChannelUniqueName": props["task_channel_unique_name"],
             "WorkflowSid": props["workflow_sid"], "WorkflowName": props["workflow_name"]}
        p.update(extra or {})
        return p

    def _send_task_event(self, s, action, params):
        rec = self.webhooks.send(self.webhooks.build(PATH_TASKROUTER, params))
        self._log(s["kd"], action, {"webhook_status": rec["status"], "webhook_seq": rec["seq"]})
        return rec

    def _set_task_status(self, s, status):
        inter = self.state._interactions.get(s["kd"])
        if inter is not None:
            inter["task_status"] = status

    def _agent_accept(self, kd):
        gen = self.worker.generation
        with self._lock:
            s = self._sessions.get(kd)
            if s is None or s["state"] != "pending":
                return
            conv = self.state._convs.get(s["conv"])
            if conv is None or conv["state"] == "closed":
                s["state"] = "stopped"
                self._log(kd, "skipped", {"reason": "conversation gone or closed before accept"})
                return
            s["state"] = "accepting"
            self._set_task_status(s, "assigned")
            identity = s["cfg"]["identity"]
            params = self._task_params(
                s, "reservation.accepted", "reservation", "assigned",
                f"Reservation {s['wr']} accepted by worker {identity}",
                {"WorkerSid": s["wk"], "WorkerName": identity,
                 "WorkerAttributes": json.dumps({"contact_uri": f"client:{identity}",
                                                 "full_name": identity}),
                 "ReservationSid": s["wr"]})
        self._send_task_event(s, "reservation.accepted", params)
        if self._stale(gen):
            return
        with self._lock:
            if conv["state"] == "closed" or s["state"] != "accepting":
                s["state"] = "stopped" if s["state"] == "accepting" else s["state"]
                self._log(kd, "skipped", {"reason": "conversation closed before the agent joined"})
                return
            with self._own():
                st, res, _ = self.state._add_participant(conv, {"Identity": [identity]}, "")
            if st == 201:
                psid = res["sid"]
            else:  # already a participant (e.g. a second interaction)
                psid = next((p["sid"] for p in conv["participants"].values()
                             if p["identity"] == identity), None)
            s["participant_sid"] = psid
            s["joined_index"] = len(conv["messages"])
            s["state"] = "active"
        self._log(kd, "joined", {"conversation": conv["sid"], "participant_sid": psid,
                                 "identity": identity})
        greeting = s["cfg"]["greeting"]
        if greeting:
            self._agent_say(s, greeting.replace("{identity}", identity), "greeted", gen)

    def _agent_say(self, s, text, action, gen):
        """Agent posts text into its conversation (+ onMessageAdded, Source SDK)."""
        if self._stale(gen):
            return False
        identity = s["cfg"]["identity"]
        with self._lock:
            conv = self.state._convs.get(s["conv"])
            if conv is None or conv["state"] == "closed":
                self._log(s["kd"], "skipped", {"reason": "conversation closed", "text": text})
                return False
            with self._own():
                st, res, _ = self.state._create_message(
                    conv, {"Author": [identity], "Body": [text]}, "")
            if st != 201:
                self._log(s["kd"], "error", {"reason": "message refused", "twilio": res})
                return False
            msg = conv["messages"][-1]
            params = self._message_added_params(conv, msg, "SDK", identity=identity)
        rec = self.webhooks.send(self.webhooks.build(PATH_CONVERSATIONS, params))
        self._log(s["kd"], action, {"message_sid": msg["sid"], "body": text,
                                    "webhook_status": rec["status"], "webhook_seq": rec["seq"]})
        return True

    def _agent_observe(self, conv, msg):
        """A message was added to conv (lock held): the agent answers customers."""
        s = next((x for x in reversed(list(self._sessions.values()))
                  if x["conv"] == conv["sid"] and x["state"] == "active"), None)
        if s is None or msg["index"] < (s["joined_index"] or 0):
            return
        customers = {(p["messaging_binding"] or {}).get("address")
                     for p in conv["participants"].values() if p["messaging_binding"]}
        if msg["author"] not in customers:
            return
        body = (msg["body"] or "").lower()
        rule = next((r for r in s["cfg"]["replies"]
                     if any(m.lower() in body for m in r["match"])), None)
        if rule is None:
            self._log(s["kd"], "no_rule_matched", {"message_sid": msg["sid"], "body": msg["body"]})
            return
        self._log(s["kd"], "reply_scheduled", {"message_sid": msg["sid"],
                                               "after_ms": s["cfg"]["reply_delay_ms"]})
        kd = s["kd"]
        self.worker.submit(s["cfg"]["reply_delay_ms"] / 1000.0,
                           lambda: self._agent_reply(kd, rule))

    def _agent_reply(self, kd, rule):
        gen = self.worker.generation
        with self._lock:
            s = self._sessions.get(kd)
            if s is None or s["state"] != "active":
                if s is not None:
                    self._log(kd, "skipped", {"reason": f"agent is {s['state']}",
                                              "text": rule["reply"]})
                return
        if self._agent_say(s, rule["reply"], "replied", gen) and rule["close_after"]:
            self._agent_close(s, gen)

    def _agent_close(self, s, gen):
        """Agent ends the chat: task.wrapup, conversation closed
        (onConversationStateUpdated), task.completed."""
        kd = s["kd"]
        with self._lock:
            if s["state"] != "active":
                return
            s["state"] = "closing"
            self._set_task_status(s, "wrapping")
            params = self._task_params(s, "task.wrapup", "task", "wrapping",
                                       f"Task {s['wt']} wrapping up",
                                       {"TaskCompletedReason": COMPLETED_REASON})
        self._send_task_event(s, "task.wrapup", params)
        if self._stale(gen):
            return
        params = None
        with self._lock:
            conv = self.state._convs.get(s["conv"])
            if conv is not None and conv["state"] != "closed":
                old = conv["state"]
                with self._own():
                    self.state._update_conversation(conv, {"State": ["closed"]}, "")
                inter = self.state._interactions.get(kd)
                if inter is not None:
                    inter["channel_status"] = "closed"
                params = {"EventType": "onConversationStateUpdated",
                          "ConversationSid": conv["sid"],
                          "ChatServiceSid": self.state.chat_service_sid,
                          "StateFrom": old, "StateTo": "closed", "StateUpdated": iso_ms(time.time()),
                          "Reason": "API"}
                if conv.get("messaging_service_sid"):
                    params["MessagingServiceSid"] = conv["messaging_service_sid"]
                params["AccountSid"] = self.account_sid
        if params is not None:
            rec = self.webhooks.send(self.webhooks.build(PATH_CONVERSATIONS, params))
            self._log(kd, "conversation_closed", {"conversation": s["conv"],
                                                  "webhook_status": rec["status"],
                                                  "webhook_seq": rec["seq"]})
        else:
            self._log(kd, "skipped", {"reason": "conversation already closed"})
        if self._stale(gen):
            return
        with self._lock:
            s["state"] = "closed"
            self._set_task_status(s, "completed")
            params = self._task_params(s, "task.completed", "task", "completed",
                                       f"Task {s['wt']} completed",
                                       {"TaskCompletedReason": COMPLETED_REASON})
        self._send_task_event(s, "task.completed", params)

    def _agent_cancel(self, kd):
        with self._lock:
            s = self._sessions.get(kd)
            if s is None or s["state"] != "pending":
                return
            s["state"] = "canceled"
            self._set_task_status(s, "canceled")
            params = self._task_params(s, "task.canceled", "task", "canceled",
                                       f"Task {s['wt']} canceled",
                                       {"TaskCanceledReason": CANCELED_REASON})
        self._send_task_event(s, "task.canceled", params)
