"""Shared machinery of baton's fake servers (stdlib only, Python 3.11).

fake_llm.py and fake_twilio.py are different APIs behind the same test
plumbing: they record every request, let tests inject failures through
/_fake/fail, expose a small control API under /_fake/, and start and stop the
same way (one {"ready": true, "port": N} line on stdout; SIGTERM or SIGINT
exits 0).  That plumbing lives here once, so a fix to, say, chunked body
reading or failure-rule counting reaches both fakes:

    Recorder        thread-safe request log (+ optional JSON-lines file)
    FailureRules    ordered failure-injection rules, validated and counted
    Response        what a handler answers; recorded, then sent
    FakeHandler     request handler skeleton: body framing, sending, header
                    recording, the record / failure-rule / route pipeline and
                    the shared control endpoints
    open_server(), serve()
                    binding (IPv4 or IPv6), the ready line, signal handling

What differs between the fakes (error shapes, which headers are secrets, the
status a failure rule answers with by default...) stays in each fake, as
class attributes or hook methods of a FakeHandler subclass; the docstring of
each fake remains the reference for its CLI and wire behaviour.

The last section holds Twilio helpers that fake_twilio.py,
twilio_conversations.py and twilio_sim.py all need (error bodies, SIDs,
Twilio's date formats).
"""

import contextlib
import hashlib
import json
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# ---- small helpers ---------------------------------------------------------

def is_non_negative_number(v):
    # bool is an int subclass, but `true` is never a valid delay or latency.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def status_phrase(status, extra=None):
    """Reason phrase for a status; `extra` names codes HTTPStatus lacks."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return (extra or {}).get(status, "Error")


def parse_json_or_none(raw):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def list_filters(q):
    """(path_contains, since) of a listing query already split by parse_qs.

    Raises ValueError("since must be an integer"), the message clients get."""
    try:
        since = int(q.get("since", ["0"])[0])
    except ValueError:
        raise ValueError("since must be an integer") from None
    return q.get("path_contains", [None])[0], since


def parse_multipart(body, content_type):
    """The parts of a multipart/form-data body: [{"name", "filename",
    "content_type", "data"}] in order (filename and content_type None when the
    part has none).  Raises ValueError when the body is not multipart or its
    framing is broken, with a message fit for a 400."""
    ctype, _, params = content_type.partition(";")
    if ctype.strip().lower() != "multipart/form-data":
        raise ValueError("Content-Type must be multipart/form-data")
    m = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', params, re.I)
    if not m:
        raise ValueError("multipart/form-data without a boundary")
    delim = b"--" + (m.group(1) or m.group(2)).encode("latin-1")
    chunks = body.split(delim)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ValueError("multipart body is not closed by its boundary")
    parts = []
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise ValueError("multipart part is not framed by CRLF")
        head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            # A part with no headers starts with the blank line itself.
            if not chunk[2:].startswith(b"\r\n"):
                raise ValueError("multipart part without a header block")
            head, data = b"", chunk[4:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name = re.search(r'(?:^|;)\s*name="([^"]*)"', disp)
        fname = re.search(r'(?:^|;)\s*filename="([^"]*)"', disp)
        parts.append({"name": name.group(1) if name else None,
                      "filename": fname.group(1) if fname else None,
                      "content_type": headers.get("content-type"), "data": data})
    return parts


# ---- request log -----------------------------------------------------------

class Recorder:
    """Thread-safe request log, optionally mirrored to a JSON-lines file."""

    def __init__(self, path=None):
        self._lock = threading.Lock()
        self._records = []
        self._seq = 0
        # Line-buffered append so a test can tail the file while we run.
        self._file = open(path, "a", encoding="utf-8", buffering=1) if path else None

    def add(self, record):
        """Number and store a record; returns it with its "seq" first."""
        with self._lock:
            self._seq += 1
            record = {"seq": self._seq, **record}
            self._records.append(record)
            if self._file:
                self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._file.flush()
            return record

    def list(self, path_contains=None, since=0):
        # Shallow copies: callers serialise them outside the lock.
        with self._lock:
            return [dict(r) for r in self._records
                    if r["seq"] > since
                    and (path_contains is None or path_contains in r["path"])]

    def reset(self):
        # The file is a log of the whole run, so it is not truncated.
        with self._lock:
            self._records.clear()
            self._seq = 0

    def close(self):
        if self._file:
            self._file.close()


# ---- failure injection -----------------------------------------------------

class FailureRules:
    """Ordered failure-injection rules; each fires `count` times, then goes.

    Subclasses add rule keys through _validate_more() and _matches(); keys
    they store for themselves go in PRIVATE_KEYS so GET /_fake/fail never
    shows them (they need not be JSON-serialisable)."""

    PRIVATE_KEYS = ()

    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []

    def validate(self, rule):
        """The rule with defaults filled in; ValueError says what is wrong."""
        if not isinstance(rule, dict):
            raise ValueError("rule must be a JSON object")
        rule = dict(rule)
        rule.setdefault("path_contains", "")
        rule.setdefault("count", 1)
        if not isinstance(rule["path_contains"], str):
            raise ValueError("path_contains must be a string")
        # Here, so a subclass's path keys are reported in the same order as
        # before the fakes shared this code.
        self._validate_more(rule)
        if rule.get("method") is not None:
            if not isinstance(rule["method"], str):
                raise ValueError("method must be a string")
            rule["method"] = rule["method"].upper()
        if not isinstance(rule["count"], int) or isinstance(rule["count"], bool) \
                or rule["count"] == 0:
            raise ValueError("count must be a non-zero integer")
        status = rule.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise ValueError("status must be an integer 100..599")
        if not is_non_negative_number(rule.get("delay_ms", 0)):
            raise ValueError("delay_ms must be a non-negative number")
        if not is_non_negative_number(rule.get("answer_delay_ms", 0)):
            raise ValueError("answer_delay_ms must be a non-negative number")
        if rule.get("body") is not None and not isinstance(rule["body"], str):
            raise ValueError("body must be a string")
        if not isinstance(rule.get("headers", {}), dict):
            raise ValueError("headers must be an object")
        return rule

    def _validate_more(self, rule):
        """Hook: check (and compile into PRIVATE_KEYS) a subclass's keys."""

    def _matches(self, rule, method, path):
        return rule.get("method") in (None, method) and rule["path_contains"] in path

    def add(self, rule):
        """Append a validated rule; returns the listing, as GET /_fake/fail would."""
        with self._lock:
            self._rules.append(rule)
            return self._listing()

    def list(self):
        with self._lock:
            return self._listing()

    def _listing(self):
        return [{k: v for k, v in r.items() if k not in self.PRIVATE_KEYS}
                for r in self._rules]

    def take(self, method, path):
        """Return the first rule matching the request and use up one count."""
        with self._lock:
            for i, rule in enumerate(self._rules):
                if not self._matches(rule, method, path):
                    continue
                # A negative count never runs out: it fires until reset.
                if rule["count"] > 0:
                    rule["count"] -= 1
                    if rule["count"] == 0:
                        del self._rules[i]
                return dict(rule)
            return None

    def reset(self):
        with self._lock:
            self._rules.clear()


# ---- HTTP handling ---------------------------------------------------------

class Response:
    """What a handler decided to answer; recorded before it is sent."""

    # How the body is serialised when only a payload is given.  A fake
    # changes it in a subclass, never per response, so all its answers agree.
    ensure_ascii = True

    def __init__(self, status, payload=None, raw=None, headers=None,
                 content_type="application/json"):
        self.status = status
        self.payload = payload          # parsed JSON for the record, or None
        if raw is None:
            raw = b"" if payload is None else \
                json.dumps(payload, ensure_ascii=self.ensure_ascii).encode()
        self.raw = raw if isinstance(raw, bytes) else raw.encode()
        self.headers = headers or {}
        self.content_type = content_type


class FakeHandler(BaseHTTPRequestHandler):
    """Skeleton of a fake's request handler.

    Every request goes through _dispatch(): /_fake/... to the control API,
    anything else is recorded, matched against the failure rules and, unless
    a rule answers for it, handed to _route().  A subclass provides:

        _unreadable_body()              answer when the body framing is bad
        _start_record(path, query, body)
                                        (record fields, ctx); ctx is anything
                                        the hooks below need for this request
        _route(path, ctx)               the API itself
        _sample_answer(path, ctx)       a valid answer, for `malformed` rules
        _rule_error(rule, status, message, path, ctx)
                                        error payload of a status-only rule
        _finish(path, resp, ctx)        optional: last touches before recording

    and may extend _control_routes() / _control_fallback() and _ctl_reset().
    """

    protocol_version = "HTTP/1.1"       # keep-alive, as real clients expect
    sys_version = ""

    # ---- per-fake settings ----------------------------------------------
    response_class = Response
    max_request_bytes = 10 * 1024 * 1024   # only stops a runaway client
    extra_phrases = {}                  # reason phrases HTTPStatus lacks
    redacted_headers = ()               # recorded as "<redacted>"
    dropped_headers = ()                # not recorded at all
    rule_default_status = 200           # of body / malformed / wrong_shape rules
    retry_after_header = "Retry-After"  # as the real API spells it
    rule_json_error = "invalid JSON"    # prefix when POST /_fake/fail is not JSON

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    # One entry point for every method so unknown methods get the fake's
    # JSON errors instead of the stdlib's HTML 501 page.
    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def status_phrase(self, status):
        return status_phrase(status, self.extra_phrases)

    # ---- plumbing -------------------------------------------------------

    def _read_body(self):
        """Read the whole request body so the connection stays in sync for
        keep-alive; returns None (and marks the connection for closing) when
        the framing is unusable."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
        except ValueError:
            n = -1
        if n < 0 or n > self.max_request_bytes:
            self.close_connection = True
            return None
        return self.rfile.read(n) if n else b""

    def _read_chunked(self):
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                return None
            if size == 0:
                # Skip trailers up to the blank line.
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > self.max_request_bytes:
                self.close_connection = True
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # CRLF after each chunk

    def _send(self, resp):
        # The stdlib leaves the reason phrase empty for codes it does not know.
        self.send_response(resp.status, self.status_phrase(resp.status))
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.raw)))
        for name, value in resp.headers.items():
            self.send_header(name, str(value))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(resp.raw)
        self.wfile.flush()

    def _headers_for_record(self):
        """Request headers for the record: lower-case names, repeats joined
        with ", ", and credentials never kept (records end up in test logs)."""
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            if name in self.dropped_headers:
                continue
            if name in self.redacted_headers:
                value = "<redacted>"
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    # ---- dispatch -------------------------------------------------------

    def _dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, url.query
        body = self._read_body()
        if body is None:
            self._send(self._unreadable_body())
            return
        if path == "/_fake" or path.startswith("/_fake/"):
            self._send(self._control(path, query, body))
            return

        record, ctx = self._start_record(path, query, body)
        rule = self.server.rules.take(self.command, path)
        resp = None
        if rule:
            if rule.get("delay_ms"):
                time.sleep(rule["delay_ms"] / 1000.0)
            if rule.get("disconnect"):
                # Simulate a dropped connection: no status line at all.
                self.server.recorder.add({**record, "status": None, "response": None})
                self.close_connection = True
                return
            resp = self._injected(rule, path, ctx)
        if resp is None:
            resp = self._route(path, ctx)
        if rule and rule.get("lose_answer"):
            # Done, but the answer is lost on the way back: the client
            # cannot know whether its request took effect.
            self.server.recorder.add({**record, "status": resp.status, "response": resp.payload,
                                      "answer_lost": True})
            self.close_connection = True
            return
        if rule and rule.get("answer_delay_ms"):
            # Done at once, answered late (a client may time out or die meanwhile).
            time.sleep(rule["answer_delay_ms"] / 1000.0)
        self._finish(path, resp, ctx)
        self.server.recorder.add({**record, "status": resp.status, "response": resp.payload})
        self._send(resp)

    def _finish(self, path, resp, ctx):
        """Hook: adjust (or delay) the answer after routing, before recording."""

    def _injected(self, rule, path, ctx):
        """Build the response a failure rule asks for; None means 'no override,
        process normally' (delay-only rules)."""
        Resp = self.response_class
        headers = dict(rule.get("headers", {}))
        if rule.get("retry_after") is not None:
            headers[self.retry_after_header] = rule["retry_after"]
        ok = self.rule_default_status
        if rule.get("body") is not None:
            return Resp(rule.get("status", ok), parse_json_or_none(rule["body"]),
                        raw=rule["body"], headers=headers,
                        content_type=rule.get("content_type", "application/json"))
        if rule.get("malformed"):
            # A plausible answer cut mid-way: the client must not crash on it.
            full = json.dumps(self._sample_answer(path, ctx)).encode()
            return Resp(rule.get("status", ok), None, raw=full[:len(full) // 2],
                        headers=headers)
        if rule.get("wrong_shape"):
            return Resp(rule.get("status", ok), {"foo": 1}, headers=headers)
        status = rule.get("status")
        if status is None:
            return None
        message = rule.get("message") or self.status_phrase(status)
        return Resp(status, self._rule_error(rule, status, message, path, ctx),
                    headers=headers)

    # ---- control API ----------------------------------------------------

    def _control_routes(self):
        """(method, path) -> fn(query, body) returning a Response."""
        return {("GET", "/_fake/healthz"): self._ctl_healthz,
                ("GET", "/_fake/requests"): self._ctl_requests,
                ("POST", "/_fake/reset"): self._ctl_reset,
                ("GET", "/_fake/fail"): self._ctl_list_rules,
                ("POST", "/_fake/fail"): self._ctl_add_rule}

    def _control_fallback(self, path, query, body):
        """Hook: answer control paths outside the route table, else None."""
        return None

    def _control(self, path, query, body):
        Resp = self.response_class
        routes = self._control_routes()
        fn = routes.get((self.command, path))
        if fn is not None:
            return fn(query, body)
        resp = self._control_fallback(path, query, body)
        if resp is not None:
            return resp
        if any(p == path for _, p in routes):
            return Resp(405, {"error": f"{self.command} not allowed on {path}"})
        return Resp(404, {"error": f"unknown control path {path}"})

    def _control_json(self, body, prefix="invalid JSON"):
        """(object, None) from a control request's JSON body (empty = null),
        or (None, 400 response)."""
        try:
            return json.loads(body or b"null"), None
        except ValueError as e:   # includes UnicodeDecodeError
            return None, self.response_class(400, {"error": f"{prefix}: {e}"})

    def _ctl_healthz(self, query, body):
        return self.response_class(200, {"ok": True})

    def _ctl_requests(self, query, body):
        try:
            path_contains, since = list_filters(urllib.parse.parse_qs(query))
        except ValueError as e:
            return self.response_class(400, {"error": str(e)})
        return self.response_class(200, self.server.recorder.list(path_contains, since))

    def _ctl_reset(self, query, body):
        self.server.recorder.reset()
        self.server.rules.reset()
        return self.response_class(200, {})

    def _ctl_list_rules(self, query, body):
        return self.response_class(200, {"rules": self.server.rules.list()})

    def _ctl_add_rule(self, query, body):
        obj, err = self._control_json(body, self.rule_json_error)
        if err:
            return err
        try:
            rule = self.server.rules.validate(obj)
        except ValueError as e:
            return self.response_class(400, {"error": f"bad rule: {e}"})
        return self.response_class(200, {"rules": self.server.rules.add(rule)})


# ---- server lifecycle ------------------------------------------------------

class FakeServer(ThreadingHTTPServer):
    daemon_threads = True          # in-flight (e.g. delayed) requests never block exit
    request_queue_size = 128       # default 5 drops SYNs under parallel test load
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients hanging up mid-request are normal in timeout and failure tests.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeServer6(FakeServer):
    address_family = socket.AF_INET6


def open_server(prog, bind, port, handler_class, record_path, rules):
    """Bind the server and open its record file; on failure print
    "PROG: error" to stderr and return None (the caller exits 2).

    The server carries the shared state handlers reach through self.server:
    .recorder and .rules here, anything fake-specific set by the caller."""
    cls = FakeServer6 if ":" in bind else FakeServer
    server = None
    try:
        server = cls((bind, port), handler_class)
        server.recorder = Recorder(record_path)
    except OSError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        if server is not None:
            server.server_close()
        return None
    server.rules = rules
    return server


def close_server(server):
    server.server_close()
    server.recorder.close()


def serve(server):
    """Print the ready line and serve until SIGTERM/SIGINT, then close."""
    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it cannot run on
        # the thread that is inside serve_forever.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Tests wait for this line instead of sleeping; port 0 makes it the only
    # way to learn the port.
    print(json.dumps({"ready": True, "port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        close_server(server)


# ---- Twilio helpers (fake_twilio.py, twilio_conversations.py, twilio_sim.py)

# Conversations and Flex resources carry second-precision UTC timestamps.
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# Deterministic SIDs (fake_twilio.py --sid-seed, FAKE_TWILIO_SID_SEED): two
# fakes with the same seed hand out the same SIDs, so a capture of one run can
# be replayed against a fresh one and its Conversation (CH), Interaction (KD)
# and Task (WT) SIDs still name what the fresh run creates.  Each (stream,
# prefix) pair has its own counter: the n-th CH is the same in both runs even
# when one run created SIDs of other kinds (agent messages, participants) the
# other did not.  Code that creates resources only one of the runs creates
# (the simulated agent and customer, twilio_sim.py) does so inside
# sid_stream(), so its SIDs never shift, or collide with, the REST-created ones.
_sid = {"seed": None, "counters": {}, "lock": threading.Lock()}
_sid_local = threading.local()


def set_sid_seed(seed):
    """Deterministic SIDs from now on (None or "": random again); counters restart."""
    with _sid["lock"]:
        _sid["seed"] = None if seed in (None, "") else str(seed)
        _sid["counters"] = {}


def sid_seed():
    return _sid["seed"]


@contextlib.contextmanager
def sid_stream(name):
    """SIDs created in this block (on this thread) count in stream `name`."""
    prev = getattr(_sid_local, "stream", "")
    _sid_local.stream = name
    try:
        yield
    finally:
        _sid_local.stream = prev


def twilio_sid(prefix):
    """A Twilio-style SID: two-letter type prefix + 32 hex digits; random,
    or with a seed set the n-th of its (stream, prefix), always the same."""
    with _sid["lock"]:
        seed = _sid["seed"]
        if seed is None:
            return prefix + secrets.token_hex(16)
        key = (getattr(_sid_local, "stream", ""), prefix)
        n = _sid["counters"][key] = _sid["counters"].get(key, 0) + 1
    digest = hashlib.sha256(("%s\0%s\0%s\0%d" % (seed, key[0], prefix, n)).encode())
    return prefix + digest.hexdigest()[:32]


def twilio_error(status, code, message):
    """Twilio's REST error body."""
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


def twilio_error_reply(status, code, message, headers=None):
    """The same error as the (status, payload, headers) triple that
    twilio_conversations.py and twilio_sim.py answer with."""
    return status, twilio_error(status, code, message), headers or {}


def form_first(form, key):
    """First value of a form field, or None when absent (or no form).  An
    empty value is kept: Twilio treats Attributes= or UniqueName= as "set to
    empty"."""
    vals = (form or {}).get(key)
    return vals[0] if vals else None


def iso_now():
    return datetime.now(timezone.utc).strftime(ISO_FORMAT)


def iso_ms(t):
    """Epoch seconds as the millisecond ISO time of webhook parameters."""
    d = datetime.fromtimestamp(t, timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def parse_iso(text):
    """Epoch seconds of an ISO_FORMAT time; 0.0 when it is not one."""
    try:
        return datetime.strptime(text, ISO_FORMAT).replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return 0.0


def rfc2822_now():
    # format_datetime on an aware UTC datetime gives "+0000" like Twilio
    # (email.utils.formatdate would give "-0000").
    return format_datetime(datetime.now(timezone.utc).replace(microsecond=0))
