"""Fake Twilio Conversations v1 and Flex Interactions for fake_twilio.py.

fake_twilio.py hands every request under /v1/ to ConversationsState.handle();
this module keeps the in-memory conversations, participants, messages and
interactions and answers with the resource, list and error shapes of
wire-contracts §4 and §5.  Only the endpoints baton's flex-worker needs are
served:

    GET    /v1/ParticipantConversations?Address=|Identity=
    GET    /v1/Conversations            POST /v1/Conversations
    GET    /v1/Conversations/{Sid}      POST (update)   DELETE
    GET    /v1/Conversations/{Sid}/Participants   POST
    GET    /v1/Conversations/{Sid}/Messages       POST (Body, MediaSid or ContentSid;
                                          a MediaSid must be an MCS upload, twilio_media.py)
    POST   /v1/Interactions                       (Flex API, 200)
    GET    /v1/Interactions/{KD}/Channels/{UO}    POST (Status=closed|inactive)
                                          (served by twilio_sim.py when attached)

{Sid} may also be the conversation's unique_name, as on real Twilio.

With a specs directory (fake_twilio.py --specs DIR) every /v1/ request is also
checked against Twilio's OpenAPI documents (twilio_conversations_v1.json,
twilio_flex_v1.json): unknown or missing form/query parameters and violated
enum/pattern/length/range constraints are recorded and answered with 400 /
code 20001, so a client cannot pass the tests while sending a shape the real
API would reject or silently ignore.

Links and next_page_url point back at this server (http://<Host header>), not
at conversations.twilio.com, so a client following them stays on the fake.
"""

import json
import os
import re
import threading
import time
import urllib.parse

from fakelib import iso_now, parse_json_or_none, twilio_sid
# Short local names: nearly every route below answers through these.
from fakelib import form_first as _first
from fakelib import twilio_error_reply as _error

SPEC_FILES = ("twilio_conversations_v1.json", "twilio_flex_v1.json")

STATES = ("initializing", "inactive", "active", "closed")
CHANNEL_TYPES = ("voice", "sms", "email", "web", "whatsapp", "chat", "messenger", "gbm")
INITIATED_BY = ("customer", "agent", "api")
BODY_LIMIT_CHARS = 1600
# ParticipantConversations caps pages at 50, the other lists at 100 (spec).
MAX_PAGE = {"conversations": 100, "participants": 100, "messages": 100,
            "participant_conversations": 50}
DEFAULT_PAGE = 50
# Real Flex fills these in from the workspace; tests only need stable values.
WEBHOOK_TTID = "flex_interactionwebhook_00000000000000000000000000"
E164_RE = re.compile(r"^\+[1-9][0-9]{1,14}$")
WS_RE = re.compile(r"^WS[0-9a-fA-F]{32}$")
WW_RE = re.compile(r"^WW[0-9a-fA-F]{32}$")


def _valid_json(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def _binding_type(address):
    # The channel is the address prefix; a bare E.164 number is SMS.
    prefix, sep, _ = address.partition(":")
    return prefix.lower() if sep else "sms"


def _valid_address(address):
    kind = _binding_type(address)
    number = address.partition(":")[2] if ":" in address else address
    if kind in ("sms", "whatsapp"):
        return bool(E164_RE.match(number))
    return bool(number)


# Parsed routes by specs directory, filled by preload_specs: the tests' fork
# server (zygote.py) parses the specs once and every fake it forks shares them.
_PRELOADED = {}


def preload_specs(specs_dir):
    checker = SpecChecker(specs_dir)
    _PRELOADED[os.path.abspath(specs_dir)] = checker.routes()


class SpecChecker:
    """Checks requests against the path templates of Twilio's OpenAPI specs."""

    def __init__(self, specs_dir):
        # The files must be there now (a missing spec is an error at start),
        # but they are parsed on the first /v1/ request: most test pipelines
        # never escalate, and 4 MB of JSON per start is most of a fake's CPU.
        self._paths = [os.path.join(specs_dir, name) for name in SPEC_FILES]
        missing = [p for p in self._paths if not os.path.isfile(p)]
        if missing:
            raise OSError("missing spec files: %s" % ", ".join(missing))
        self._routes = _PRELOADED.get(os.path.abspath(specs_dir))
        self._load_lock = threading.Lock()

    def _load(self):
        routes = []
        for path in self._paths:
            with open(path, encoding="utf-8") as f:
                spec = json.load(f)
            for template, item in spec.get("paths", {}).items():
                parts = template.strip("/").split("/")
                regex = "^/" + "/".join(
                    "[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$"
                literals = sum(not p.startswith("{") for p in parts)
                routes.append((re.compile(regex), literals, template, item, spec))
        # Most literal segments first, so /v1/Configuration/Webhooks beats a
        # {Sid} template of the same length.  Both specs declare
        # /v1/Configuration (different hosts); the Conversations one, loaded
        # first, wins thanks to the stable sort.
        routes.sort(key=lambda r: -r[1])
        return routes

    def routes(self):
        with self._load_lock:
            if self._routes is None:
                self._routes = self._load()
            return self._routes

    @staticmethod
    def _resolve(spec, schema):
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 20:
            node = spec
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            schema, seen = node, seen + 1
        return schema if isinstance(schema, dict) else {}

    def _check_value(self, spec, where, name, value, schema):
        schema = self._resolve(spec, schema)
        kind = schema.get("type")
        if kind == "array":
            return self._check_value(spec, where, name, value, schema.get("items", {}))
        if kind == "integer" or kind == "number":
            try:
                num = int(value) if kind == "integer" else float(value)
            except ValueError:
                return f"{where} {name}={value!r} is not a {kind}"
            if "minimum" in schema and num < schema["minimum"]:
                return f"{where} {name}={value} is below the minimum {schema['minimum']}"
            if "maximum" in schema and num > schema["maximum"]:
                return f"{where} {name}={value} is above the maximum {schema['maximum']}"
            return None
        if kind == "boolean":
            if value.lower() not in ("true", "false"):
                return f"{where} {name}={value!r} is not a boolean"
            return None
        if "enum" in schema and value not in schema["enum"]:
            return f"{where} {name}={value!r} is not one of {schema['enum']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where} {name} is longer than {schema['maxLength']} characters"
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{where} {name} is shorter than {schema['minLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where} {name}={value!r} does not match {schema['pattern']}"
        return None

    def check(self, method, path, query, ctype, form):
        """Problems of this request (list of str).  A path the specs do not
        know is left to the router (404); a method they do not declare for a
        known path is one problem."""
        for regex, _, template, item, spec in self.routes():
            if regex.match(path):
                break
        else:
            return []
        op = item.get(method.lower())
        if not isinstance(op, dict):
            return [f"{method} is not an operation of {template}"]
        problems = []
        params = list(item.get("parameters", [])) + list(op.get("parameters", []))
        params = [self._resolve(spec, p) for p in params]

        declared_q = {p["name"]: p for p in params if p.get("in") == "query"}
        for name, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
            if name not in declared_q:
                problems.append(f"unknown query parameter {name} for {method} {template}")
                continue
            for v in values:
                bad = self._check_value(spec, "query parameter", name, v,
                                        declared_q[name].get("schema", {}))
                if bad:
                    problems.append(bad)
        for name, p in declared_q.items():
            if p.get("required") and not urllib.parse.parse_qs(query).get(name):
                problems.append(f"missing required query parameter {name}")

        content = (op.get("requestBody") or {}).get("content", {})
        form_schema = content.get("application/x-www-form-urlencoded", {}).get("schema")
        if form_schema is None:
            if content:
                problems.append(f"{method} {template} takes {sorted(content)}, not a form")
            elif form:
                problems.append(f"{method} {template} takes no body parameters, got {sorted(form)}")
            return problems
        if ctype not in ("", "application/x-www-form-urlencoded"):
            problems.append(f"Content-Type must be application/x-www-form-urlencoded, got {ctype!r}")
            return problems
        form_schema = self._resolve(spec, form_schema)
        props = form_schema.get("properties", {})
        for name, values in (form or {}).items():
            if name not in props:
                problems.append(f"unknown form parameter {name} for {method} {template}")
                continue
            schema = self._resolve(spec, props[name])
            if len(values) > 1 and schema.get("type") != "array":
                problems.append(f"form parameter {name} given {len(values)} times")
            for v in values:
                bad = self._check_value(spec, "form parameter", name, v, schema)
                if bad:
                    problems.append(bad)
        for name in form_schema.get("required", []):
            if name not in (form or {}):
                problems.append(f"missing required form parameter {name}")
        return problems


class ConversationsState:
    """All conversations/interactions of one fake server, behind one lock."""

    def __init__(self, account_sid, specs_dir=None):
        self.account_sid = account_sid
        # Real accounts have one default chat service and messaging service;
        # keeping them fixed lets tests compare them across conversations.
        self.chat_service_sid = twilio_sid("IS")
        self.messaging_service_sid = twilio_sid("MG")
        self.workflow_sid = twilio_sid("WW")
        self.queue_sid = twilio_sid("WQ")
        self.task_channel_sid = twilio_sid("TC")
        self.checker = SpecChecker(specs_dir) if specs_dir else None
        # RLock: handlers call helpers that also take it.
        self._lock = threading.RLock()
        self._convs = {}          # CH sid -> conversation dict (insertion = creation order)
        self._interactions = {}   # KD sid -> stored interaction
        self._violations = []
        # fake_twilio.py sets its twilio_media.MediaStore here: a MediaSid must
        # then be an MCS upload to this chat service, attached once.
        self.media = None
        # twilio_sim.Simulator sets itself here to see state changes and to
        # serve /v1/Interactions/{KD}/Channels/{UO}; None = plain REST fake.
        self.sim = None

    # ---- control API ----------------------------------------------------

    def reset(self):
        with self._lock:
            self._convs.clear()
            self._interactions.clear()
            self._violations.clear()

    def violations(self):
        with self._lock:
            return [dict(v) for v in self._violations]

    def dump(self, base=""):
        """Everything, for GET /_fake/state: conversations with participants
        and messages in order, and the interactions with what was asked."""
        with self._lock:
            convs = []
            for c in self._convs.values():
                item = self._conv_resource(c, base)
                item["participants"] = [self._participant_resource(c, p, base)
                                        for p in c["participants"].values()]
                item["messages"] = [self._message_resource(c, m, base) for m in c["messages"]]
                convs.append(item)
            return {"conversations": convs,
                    "interactions": [json.loads(json.dumps(i)) for i in self._interactions.values()]}

    # ---- entry point ----------------------------------------------------

    def handle(self, method, path, query, ctype, form, auth_ok, host=None):
        """Answer one /v1/ request: returns (status, payload or None, headers)."""
        if not auth_ok:
            return _error(401, 20003, "Authenticate")
        base = f"http://{host}" if host else ""
        if form is None:
            # No form body: fine for GET/DELETE and for a POST without body
            # (all create params are optional); any other body type is a
            # client bug worth naming.
            if ctype and method == "POST":
                problem = f"Content-Type must be application/x-www-form-urlencoded, got {ctype!r}"
                if self.checker:
                    self._violate(method, path, problem)
                return _error(400, 20001, problem)
            form = {}
        if self.checker:
            problems = self.checker.check(method, path, query, ctype, form)
            for p in problems:
                self._violate(method, path, p)
            if problems and not problems[0].startswith(f"{method} is not an operation"):
                return _error(400, 20001, "; ".join(problems))
        with self._lock:
            return self._route(method, path, query, form, base)

    def _list_tasks(self, workspace, query, base):
        """TaskRouter's task list: the tasks Flex made for Interactions, filtered
        by an EvaluateTaskAttributes expression of the form key == "value"
        (the only form clients of this fake use)."""
        q = urllib.parse.parse_qs(query)
        expr = (q.get("EvaluateTaskAttributes") or [""])[0]
        m = re.match(r'^\s*(\w+)\s*==\s*"([^"]*)"\s*$', expr) if expr else None
        if expr and not m:
            return _error(400, 20001, "EvaluateTaskAttributes: unsupported expression %r" % expr)
        tasks = []
        for inter in self._interactions.values():
            props = inter["routing"]["properties"]
            if props.get("workspace_sid") != workspace:
                continue
            attrs = json.loads(props["attributes"])
            if m and str(attrs.get(m.group(1))) != m.group(2):
                continue
            tasks.append({"sid": inter["task_sid"], "workspace_sid": workspace,
                          "attributes": props["attributes"],
                          "assignment_status": props.get("assignment_status", "pending"),
                          "task_channel_unique_name": props.get("task_channel_unique_name"),
                          "url": "%s/v1/Workspaces/%s/Tasks/%s" % (base, workspace, inter["task_sid"])})
        url = "%s/v1/Workspaces/%s/Tasks" % (base, workspace)
        return 200, {"tasks": tasks, "meta": {"page": 0, "page_size": 50, "first_page_url": url,
                                               "previous_page_url": None, "url": url,
                                               "next_page_url": None, "key": "tasks"}}, {}

    def _violate(self, method, path, problem):
        with self._lock:
            self._violations.append({"method": method, "path": path, "problem": problem})

    def _route(self, method, path, query, form, base):
        segs = [urllib.parse.unquote(s) for s in path.split("/")[2:]]  # after "/v1"
        if len(segs) == 3 and segs[0] == "Workspaces" and segs[2] == "Tasks":
            if method != "GET":
                return _error(405, 20004, "Method not allowed")
            return self._list_tasks(segs[1], query, base)
        routes = None
        if segs == ["ParticipantConversations"]:
            routes = {"GET": lambda: self._list_participant_conversations(path, query, base)}
        elif segs == ["Conversations"]:
            routes = {"GET": lambda: self._list_conversations(path, query, base),
                      "POST": lambda: self._create_conversation(form, base)}
        elif segs == ["Interactions"]:
            routes = {"POST": lambda: self._create_interaction(form, base)}
        elif (len(segs) == 4 and segs[0] == "Interactions" and segs[2] == "Channels"
              and self.sim is not None):
            routes = {"GET": lambda: self.sim.fetch_channel(segs[1], segs[3], path, base),
                      "POST": lambda: self.sim.update_channel(segs[1], segs[3], path, form, base)}
        elif len(segs) in (2, 3) and segs[0] == "Conversations":
            conv = self._find(segs[1])
            sub = segs[2] if len(segs) == 3 else None
            if sub is None:
                routes = {"GET": lambda: (200, self._conv_resource(conv, base), {}),
                          "POST": lambda: self._update_conversation(conv, form, base),
                          "DELETE": lambda: self._delete_conversation(conv)}
            elif sub == "Participants":
                routes = {"GET": lambda: self._list_participants(conv, path, query, base),
                          "POST": lambda: self._add_participant(conv, form, base)}
            elif sub == "Messages":
                routes = {"GET": lambda: self._list_messages(conv, path, query, base),
                          "POST": lambda: self._create_message(conv, form, base)}
            if routes is not None and method in routes and conv is None:
                return _error(404, 20404, f"The requested resource {path} was not found")
        if routes is None:
            return _error(404, 20404, f"The requested resource {path} was not found")
        if method not in routes:
            return _error(405, 20004, "Method not allowed", {"Allow": ", ".join(routes)})
        return routes[method]()

    def _find(self, sid_or_name):
        conv = self._convs.get(sid_or_name)
        if conv is None:
            conv = next((c for c in self._convs.values()
                         if c["unique_name"] is not None and c["unique_name"] == sid_or_name), None)
        return conv

    # ---- resources ------------------------------------------------------

    def _conv_resource(self, c, base):
        url = f"{base}/v1/Conversations/{c['sid']}"
        return {
            "sid": c["sid"], "account_sid": self.account_sid,
            "chat_service_sid": self.chat_service_sid,
            "messaging_service_sid": c["messaging_service_sid"],
            "friendly_name": c["friendly_name"], "unique_name": c["unique_name"],
            "attributes": c["attributes"], "state": c["state"], "timers": {}, "bindings": {},
            "date_created": c["date_created"], "date_updated": c["date_updated"], "url": url,
            "links": {"participants": url + "/Participants", "messages": url + "/Messages",
                      "webhooks": url + "/Webhooks", "export": url + "/Export"},
        }

    def _participant_resource(self, c, p, base):
        return {
            "sid": p["sid"], "account_sid": self.account_sid, "conversation_sid": c["sid"],
            "identity": p["identity"], "attributes": p["attributes"],
            "messaging_binding": dict(p["messaging_binding"]) if p["messaging_binding"] else None,
            "role_sid": p["role_sid"], "date_created": p["date_created"],
            "date_updated": p["date_updated"],
            "url": f"{base}/v1/Conversations/{c['sid']}/Participants/{p['sid']}",
            "last_read_message_index": None, "last_read_timestamp": None,
        }

    def _message_resource(self, c, m, base):
        url = f"{base}/v1/Conversations/{c['sid']}/Messages/{m['sid']}"
        return {
            "sid": m["sid"], "account_sid": self.account_sid, "conversation_sid": c["sid"],
            "index": m["index"], "author": m["author"], "body": m["body"],
            "media": json.loads(json.dumps(m["media"])), "attributes": m["attributes"],
            "participant_sid": m["participant_sid"], "date_created": m["date_created"],
            "date_updated": m["date_updated"], "content_sid": m["content_sid"],
            "delivery": None, "url": url,
            "links": {"delivery_receipts": url + "/Receipts",
                      "channel_metadata": url + "/ChannelMetadata"},
        }

    def _page(self, items, key, limit_key, path, query, filters, base):
        """One page of a list in Twilio's {key: [...], meta: {...}} shape.
        Paging is real (PageSize/Page/PageToken) so clients that follow
        next_page_url are exercised; the defaults fit everything in one page."""
        q = urllib.parse.parse_qs(query)
        try:
            size = int(q.get("PageSize", [DEFAULT_PAGE])[0])
            page = int(q.get("Page", [0])[0])
        except ValueError:
            return _error(400, 20001, "PageSize and Page must be integers")
        size = max(1, min(size, MAX_PAGE[limit_key]))
        page = max(0, page)
        offset = page * size
        token = q.get("PageToken", [""])[0]
        if token.startswith("PT") and token[2:].isdigit():
            offset = int(token[2:])

        def url(p, off=None):
            params = list(filters) + [("PageSize", size), ("Page", p)]
            if off is not None:
                params.append(("PageToken", f"PT{off}"))
            return f"{base}{path}?{urllib.parse.urlencode(params)}"

        chunk = items[offset:offset + size]
        more = offset + size < len(items)
        return 200, {
            key: chunk,
            "meta": {"page": page, "page_size": size, "first_page_url": url(0),
                     "previous_page_url": url(page - 1, max(0, offset - size)) if page > 0 else None,
                     "url": url(page, offset if token else None),
                     "next_page_url": url(page + 1, offset + size) if more else None,
                     "key": key},
        }, {}

    # ---- conversations --------------------------------------------------

    def _unique_taken(self, name, other_than=None):
        return any(c["unique_name"] == name and c["sid"] != other_than
                   for c in self._convs.values())

    def _apply_conversation_params(self, c, form, creating):
        """Validate then apply create/update params; returns an error tuple or None."""
        state = _first(form, "State")
        if state is not None and state not in STATES:
            return _error(400, 20001, f"Invalid State {state!r}")
        attrs = _first(form, "Attributes")
        if attrs is not None and attrs != "" and not _valid_json(attrs):
            return _error(400, 50001, "Invalid attributes: must be valid JSON")
        unique = _first(form, "UniqueName")
        if unique:
            if self._unique_taken(unique, other_than=None if creating else c["sid"]):
                return _error(409, 50353, "Conversation with provided unique name already exists")
        mss = _first(form, "MessagingServiceSid")
        if mss is not None and not re.match(r"^MG[0-9a-fA-F]{32}$", mss):
            return _error(400, 20001, f"Invalid MessagingServiceSid {mss!r}")
        if unique is not None:
            c["unique_name"] = unique or None
        if attrs is not None:
            c["attributes"] = attrs or "{}"
        for field, key in (("FriendlyName", "friendly_name"), ("MessagingServiceSid",
                           "messaging_service_sid"), ("DateCreated", "date_created")):
            value = _first(form, field)
            if value is not None:
                c[key] = value
        if state is not None:
            c["state"] = state
        # Timers.* are accepted but not run: no test waits minutes for them.
        return None

    def _create_conversation(self, form, base):
        now = iso_now()
        c = {"sid": twilio_sid("CH"), "friendly_name": None, "unique_name": None,
             "attributes": "{}", "state": "active",
             "messaging_service_sid": self.messaging_service_sid,
             "date_created": now, "date_updated": _first(form, "DateUpdated") or now,
             "participants": {}, "messages": []}
        err = self._apply_conversation_params(c, form, creating=True)
        if err:
            return err
        self._convs[c["sid"]] = c
        return 201, self._conv_resource(c, base), {}

    def _update_conversation(self, c, form, base):
        # "closed" is final on Twilio: nothing may change afterwards.
        if c["state"] == "closed":
            return _error(400, 50377, "Conversation is closed and cannot be updated")
        err = self._apply_conversation_params(c, form, creating=False)
        if err:
            return err
        c["date_updated"] = _first(form, "DateUpdated") or iso_now()
        return 200, self._conv_resource(c, base), {}

    def _delete_conversation(self, c):
        del self._convs[c["sid"]]
        return 204, None, {}

    def _list_conversations(self, path, query, base):
        q = urllib.parse.parse_qs(query)
        state = q.get("State", [None])[0]
        items = [self._conv_resource(c, base) for c in self._convs.values()
                 if state is None or c["state"] == state]
        filters = [("State", state)] if state else []
        return self._page(items, "conversations", "conversations", path, query, filters, base)

    def _list_participant_conversations(self, path, query, base):
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        address = q.get("Address", [None])[0]
        identity = q.get("Identity", [None])[0]
        if not address and not identity:
            return _error(400, 20001, "Either Address or Identity must be specified")
        items = []
        # Closed conversations are listed too: clients must filter them out.
        for c in self._convs.values():
            for p in c["participants"].values():
                binding = p["messaging_binding"]
                if address and (not binding or binding.get("address") != address):
                    continue
                if identity and p["identity"] != identity:
                    continue
                conv_url = f"{base}/v1/Conversations/{c['sid']}"
                items.append({
                    "account_sid": self.account_sid, "chat_service_sid": self.chat_service_sid,
                    "participant_sid": p["sid"], "participant_user_sid": None,
                    "participant_identity": p["identity"],
                    "participant_messaging_binding": None if not binding else {
                        "address": binding["address"], "proxy_address": binding["proxy_address"],
                        "type": binding["type"], "level": None, "name": None,
                        "projected_address": None},
                    "conversation_sid": c["sid"], "conversation_unique_name": c["unique_name"],
                    "conversation_friendly_name": c["friendly_name"],
                    "conversation_state": c["state"], "conversation_timers": {},
                    "conversation_attributes": c["attributes"],
                    "conversation_date_created": c["date_created"],
                    "conversation_date_updated": c["date_updated"],
                    "conversation_created_by": "system",
                    "links": {"participant": f"{conv_url}/Participants/{p['sid']}",
                              "conversation": conv_url},
                })
        filters = [("Address", address)] if address else [("Identity", identity)]
        return self._page(items, "conversations", "participant_conversations",
                          path, query, filters, base)

    # ---- participants ---------------------------------------------------

    def _list_participants(self, c, path, query, base):
        items = [self._participant_resource(c, p, base) for p in c["participants"].values()]
        return self._page(items, "participants", "participants", path, query, [], base)

    def _add_participant(self, c, form, base):
        if c["state"] == "closed":
            return _error(400, 50377, "Conversation is closed: participants cannot be added")
        if c["state"] == "initializing":
            return _error(400, 50386, "Conversation is initializing: participants cannot be added yet")
        identity = _first(form, "Identity") or None
        address = _first(form, "MessagingBinding.Address") or None
        proxy = _first(form, "MessagingBinding.ProxyAddress") or None
        attrs = _first(form, "Attributes")
        if attrs is not None and attrs != "" and not _valid_json(attrs):
            return _error(400, 50001, "Invalid attributes: must be valid JSON")
        if identity is None and address is None:
            return _error(400, 20001, "Either Identity or MessagingBinding.Address must be specified")
        if identity is not None and address is not None:
            return _error(400, 20001, "Identity and MessagingBinding.Address are mutually exclusive")
        binding = None
        if address is not None:
            if not _valid_address(address):
                return _error(400, 50407, f"Invalid messaging binding address {address}")
            if proxy is None or not _valid_address(proxy):
                return _error(400, 50408, f"Invalid messaging binding proxy address {proxy}")
            if _binding_type(address) != _binding_type(proxy):
                return _error(400, 50414, "Address and proxy address channel types differ")
            if address == proxy:
                return _error(400, 50409, "Address and proxy address must differ")
            if any((p["messaging_binding"] or {}).get("address") == address
                   for p in c["participants"].values()):
                return _error(409, 50433, "Participant already exists")
            # Inbound routing is keyed by the (address, proxy) pair, so Twilio
            # lets only one non-closed conversation hold it.
            for other in self._convs.values():
                if other["sid"] == c["sid"] or other["state"] == "closed":
                    continue
                for p in other["participants"].values():
                    b = p["messaging_binding"] or {}
                    if b.get("address") == address and b.get("proxy_address") == proxy:
                        return _error(409, 50416, "Participant already exists in another "
                                      f"conversation: {other['sid']}")
            binding = {"type": _binding_type(address), "address": address, "proxy_address": proxy}
        elif any(p["identity"] == identity for p in c["participants"].values()):
            return _error(409, 50433, "Participant already exists")
        now = iso_now()
        p = {"sid": twilio_sid("MB"), "identity": identity, "attributes": attrs or "{}",
             "messaging_binding": binding, "role_sid": _first(form, "RoleSid"),
             "date_created": _first(form, "DateCreated") or now,
             "date_updated": _first(form, "DateUpdated") or now}
        c["participants"][p["sid"]] = p
        if self.sim is not None:
            self.sim.participant_added(c, p)
        return 201, self._participant_resource(c, p, base), {}

    # ---- messages -------------------------------------------------------

    def _list_messages(self, c, path, query, base):
        order = urllib.parse.parse_qs(query).get("Order", ["asc"])[0]
        msgs = c["messages"] if order != "desc" else list(reversed(c["messages"]))
        items = [self._message_resource(c, m, base) for m in msgs]
        filters = [("Order", order)] if order == "desc" else []
        return self._page(items, "messages", "messages", path, query, filters, base)

    def _create_message(self, c, form, base):
        if c["state"] == "closed":
            return _error(400, 50377, "Conversation is closed: messages cannot be added")
        author = _first(form, "Author") or "system"
        body = _first(form, "Body")
        media_sid = _first(form, "MediaSid") or None
        content_sid = _first(form, "ContentSid") or None
        attrs = _first(form, "Attributes")
        if attrs is not None and attrs != "" and not _valid_json(attrs):
            return _error(400, 50001, "Invalid attributes: must be valid JSON")
        if not body and media_sid is None and content_sid is None:
            return _error(400, 20001, "A message needs Body, MediaSid or ContentSid")
        if body is not None and len(body) > BODY_LIMIT_CHARS:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        # Twilio links a message to the participant it was authored as.
        psid = next((p["sid"] for p in c["participants"].values()
                     if p["identity"] == author
                     or (p["messaging_binding"] or {}).get("address") == author), None)
        sid = twilio_sid("IM")
        media = None
        if media_sid is not None:
            if self.media is None:
                media = [{"sid": media_sid}]
            else:
                item, err = self.media.attach(media_sid, self.chat_service_sid, c["sid"], sid)
                if err:
                    return _error(*err)
                media = [item]
        now = iso_now()
        m = {"sid": sid, "index": len(c["messages"]), "author": author,
             "body": body if body is not None else None,
             "media": media,
             "attributes": attrs or "{}", "participant_sid": psid,
             "date_created": _first(form, "DateCreated") or now,
             "date_updated": _first(form, "DateUpdated") or now, "content_sid": content_sid}
        c["messages"].append(m)
        if self.sim is not None:
            self.sim.message_added(c, m)
        return 201, self._message_resource(c, m, base), {}

    # ---- Flex Interactions ----------------------------------------------

    @staticmethod
    def _json_object(form, name):
        raw = _first(form, name)
        if raw is None:
            return None, f"Missing required parameter {name}"
        try:
            value = json.loads(raw)
        except ValueError:
            return None, f"{name} is not valid JSON"
        if not isinstance(value, dict):
            return None, f"{name} must be a JSON object"
        return value, None

    def _create_interaction(self, form, base):
        channel, err = self._json_object(form, "Channel")
        if err:
            return _error(400, 20001, err)
        routing, err = self._json_object(form, "Routing")
        if err:
            return _error(400, 20001, err)
        ctype = channel.get("type")
        if ctype not in CHANNEL_TYPES:
            return _error(400, 20001, f"Invalid channel type {json.dumps(ctype)}")
        initiated = channel.get("initiated_by")
        if initiated not in INITIATED_BY:
            return _error(400, 20001, f"Invalid channel initiated_by {json.dumps(initiated)}")
        cprops = channel.get("properties")
        ch_sid = cprops.get("media_channel_sid") if isinstance(cprops, dict) else None
        conv = self._convs.get(ch_sid) if isinstance(ch_sid, str) else None
        if conv is None:
            return _error(400, 20001, f"Channel properties.media_channel_sid {json.dumps(ch_sid)} "
                          "is not an existing conversation")
        if conv["state"] == "closed":
            return _error(400, 20001, f"Conversation {ch_sid} is closed")
        rprops = routing.get("properties")
        if not isinstance(rprops, dict):
            return _error(400, 20001, "Routing properties must be a JSON object")
        ws = rprops.get("workspace_sid")
        if not isinstance(ws, str) or not WS_RE.match(ws):
            return _error(400, 20001, f"Routing properties.workspace_sid {json.dumps(ws)} is missing or invalid")
        ww = rprops.get("workflow_sid", self.workflow_sid)
        if not isinstance(ww, str) or not WW_RE.match(ww):
            return _error(400, 20001, f"Routing properties.workflow_sid {json.dumps(ww)} is invalid")
        attrs = rprops.get("attributes", {})
        if isinstance(attrs, str):
            # Some clients double-encode; Flex accepts a JSON string too.
            attrs = parse_json_or_none(attrs)
        if not isinstance(attrs, dict):
            return _error(400, 20001, "Routing properties.attributes must be a JSON object")

        kd, uo, wt = twilio_sid("KD"), twilio_sid("UO"), twilio_sid("WT")
        # Flex copies the routing attributes onto the task "as is" and adds
        # its own keys: the hand-back side reads conversationSid from them.
        task_attrs = dict(attrs)
        task_attrs.update({"conversationSid": ch_sid, "flexInteractionSid": kd,
                           "flexInteractionChannelSid": uo, "channelType": ctype,
                           "initiatedBy": initiated, "direction": "inbound"})
        now = int(time.time())
        url = f"{base}/v1/Interactions/{kd}"
        resource = {
            "sid": kd, "channel": {"type": ctype, "sid": uo},
            "routing": {"reservation": None, "properties": {
                "sid": wt, "workspace_sid": ws, "workflow_sid": ww,
                "queue_sid": rprops.get("queue_sid") or self.queue_sid,
                "task_channel_sid": rprops.get("task_channel_sid") or self.task_channel_sid,
                "task_channel_unique_name": rprops.get("task_channel_unique_name") or "default",
                "assignment_status": "pending",
                "attributes": json.dumps(task_attrs, separators=(",", ":"), ensure_ascii=False),
                "priority": rprops.get("priority", 0), "age": 0,
                "timeout": rprops.get("timeout", 86400), "reason": "",
                "date_created": now, "date_updated": now,
                "workflow_name": "Default Fifo Workflow", "queue_name": "Everyone",
                "account_sid": self.account_sid, "addons": "{}"}},
            "interaction_context_sid": _first(form, "InteractionContextSid") or None,
            "webhook_ttid": _first(form, "WebhookTtid") or WEBHOOK_TTID,
            "url": url, "links": {"channels": url + "/Channels"},
        }
        # The stored copy adds what was asked for, so tests can check both.
        self._interactions[kd] = {**json.loads(json.dumps(resource)),
                                  "conversation_sid": ch_sid, "channel_sid": uo, "task_sid": wt,
                                  "request": {"channel": channel, "routing": routing}}
        if self.sim is not None:
            self.sim.interaction_created(self._interactions[kd])
        return 200, resource, {}
