#!/usr/bin/env python3
"""Fake Twilio Messages API for baton's integration tests and `make demo`.

Serves POST /2010-04-01/Accounts/{AccountSid}/Messages.json on loopback with
Twilio's auth, validation, 201 resource and error shapes (wire-contracts §3),
records every request it receives, and exposes a small control API under
/_fake/ so tests can read the records, reset state and inject failures.

Usage:
    fake_twilio.py --port 0 --bind 127.0.0.1 \
        --account-sid AC00000000000000000000000000000000 \
        --auth-token sandbox_token [--record FILE] [--specs DIR]

Requests under /v1/ (Conversations v1 and Flex Interactions, wire-contracts
§4/§5) are served by twilio_conversations.py; --specs DIR also checks them
against Twilio's OpenAPI specs (see that module).

After binding it prints one line, {"ready": true, "port": N}, to stdout; tests
wait for that line instead of sleeping. SIGTERM or SIGINT stops it (exit 0).

Control API (no auth, never recorded):
    GET  /_fake/healthz                   200 {"ok": true}
    GET  /_fake/requests[?path_contains=S][&since=SEQ]
                                          200 [records...]
    POST /_fake/reset                     clears records, seq, rules, conversations,
                                          interactions and spec violations; 200 {}
    GET  /_fake/state                     200 {"conversations": [...], "interactions": [...]}
    GET  /_fake/spec_violations           200 [{"method", "path", "problem"}...]
    POST /_fake/fail   {rule}             adds a failure rule; 200 {"rules": [...]}
    GET  /_fake/fail                      200 {"rules": [...]}

Webhooks to baton, a simulated WhatsApp customer and a simulated Flex agent
(twilio_sim.py, which documents them):
    POST|GET /_fake/webhooks/config   GET /_fake/webhooks   POST /_fake/inbound
    GET /_fake/whatsapp?to=ADDRESS    POST|GET /_fake/agent  GET /_fake/agent/log
/_fake/reset also clears deliveries and the agent (back to disabled) but keeps
the webhook destination.

Failure rule keys (all optional): path_contains (""), path_regex (re.search on the path), method (any),
count (1; negative = until reset), delay_ms (sleep first), status, code,
message, retry_after (-> Retry-After), headers ({name: value}),
malformed (201 with truncated JSON), wrong_shape (201 with {"foo": 1}),
body (raw response text, status defaults to 201; content_type sets its
Content-Type), disconnect (close the connection without answering).
A rule with only delay_ms delays the request and then lets it be processed
normally. First matching rule wins.
"""

import argparse
import base64
import binascii
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

from twilio_conversations import ConversationsState
from twilio_sim import Simulator

API_VERSION = "2010-04-01"
MESSAGES_RE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
# Twilio accepts E.164 numbers, optionally with a channel prefix; E.164 caps
# the number at 15 digits.
TO_RE = re.compile(r"^(whatsapp:)?\+[0-9]{1,15}$")
BODY_LIMIT_CHARS = 1600
# Test bodies are tiny; the cap only stops a runaway client from eating memory.
MAX_REQUEST_BYTES = 10 * 1024 * 1024

# Default Twilio error codes for status-only failure rules.
STATUS_TO_CODE = {400: 21211, 401: 20003, 403: 20003, 404: 20404,
                  405: 20004, 429: 20429, 500: 20500, 503: 20503}

# GSM 03.38: plain SMS bodies use 7-bit segments, anything else UCS-2.
GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789"
                ":;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXT = set("^{}\\[~]|€")


def status_phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def twilio_error(status, code, message):
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


def rfc2822_now():
    # format_datetime on an aware UTC datetime gives "+0000" like Twilio
    # (email.utils.formatdate would give "-0000").
    return format_datetime(datetime.now(timezone.utc).replace(microsecond=0))


def num_segments(to, body):
    # WhatsApp messages are never split into SMS segments.
    if to.startswith("whatsapp:") or not body:
        return 1
    if all(c in GSM_BASIC or c in GSM_EXT for c in body):
        units = sum(2 if c in GSM_EXT else 1 for c in body)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in body)
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


class Recorder:
    """Thread-safe request log, optionally mirrored to a JSON-lines file."""

    def __init__(self, path=None):
        self._lock = threading.Lock()
        self._records = []
        self._seq = 0
        # Line-buffered append so a test can tail the file while we run.
        self._file = open(path, "a", encoding="utf-8", buffering=1) if path else None

    def add(self, record):
        with self._lock:
            self._seq += 1
            record = {"seq": self._seq, **record}
            self._records.append(record)
            if self._file:
                self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._file.flush()

    def list(self, path_contains=None, since=0):
        with self._lock:
            return [r for r in self._records
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


class FailureRules:
    """Ordered failure-injection rules; each fires `count` times, then goes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []

    @staticmethod
    def validate(rule):
        if not isinstance(rule, dict):
            raise ValueError("rule must be a JSON object")
        rule = dict(rule)
        rule.setdefault("path_contains", "")
        rule.setdefault("count", 1)
        if not isinstance(rule["path_contains"], str):
            raise ValueError("path_contains must be a string")
        if rule.get("path_regex") is not None:
            try:
                rule["_re"] = re.compile(rule["path_regex"])
            except (re.error, TypeError) as e:
                raise ValueError(f"path_regex: {e}")
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
        delay = rule.get("delay_ms", 0)
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            raise ValueError("delay_ms must be a non-negative number")
        if rule.get("body") is not None and not isinstance(rule["body"], str):
            raise ValueError("body must be a string")
        if not isinstance(rule.get("headers", {}), dict):
            raise ValueError("headers must be an object")
        return rule

    def add(self, rule):
        with self._lock:
            self._rules.append(rule)
            return list(self._rules)

    def list(self):
        with self._lock:
            return [{k: v for k, v in r.items() if k != "_re"} for r in self._rules]

    def take(self, method, path):
        """Return the first rule matching the request and use up one count."""
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.get("method") not in (None, method):
                    continue
                if rule["path_contains"] not in path:
                    continue
                if rule.get("_re") is not None and not rule["_re"].search(path):
                    continue
                if rule["count"] > 0:
                    rule["count"] -= 1
                    if rule["count"] == 0:
                        del self._rules[i]
                return dict(rule)
            return None

    def reset(self):
        with self._lock:
            self._rules.clear()


class Response:
    """What a handler decided to answer; recorded before it is sent."""

    def __init__(self, status, payload=None, raw=None, headers=None,
                 content_type="application/json"):
        self.status = status
        self.payload = payload          # parsed JSON for the record, or None
        if raw is None:
            raw = b"" if payload is None else json.dumps(payload).encode()
        self.raw = raw if isinstance(raw, bytes) else raw.encode()
        self.headers = headers or {}
        self.content_type = content_type


def parse_json_or_none(raw):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


class TwilioHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeTwilio/1.0"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    # Route every method through one place so unknown methods get Twilio JSON
    # errors instead of the stdlib's HTML 501 page.
    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

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
        if n < 0 or n > MAX_REQUEST_BYTES:
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
            if total > MAX_REQUEST_BYTES:
                self.close_connection = True
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # CRLF after each chunk

    def _send(self, resp):
        # The stdlib leaves the reason phrase empty for codes it does not know.
        self.send_response(resp.status, status_phrase(resp.status))
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
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            if name == "authorization":
                continue  # never keep credentials; see auth_user below
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "Authorization" in self.headers:
            headers["auth_user"] = self._basic_auth()[0]
        return headers

    def _basic_auth(self):
        """(user, password) from a Basic Authorization header, or (None, None)."""
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else (None, None)

    # ---- dispatch -------------------------------------------------------

    def _dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, url.query
        body = self._read_body()
        if body is None:
            self._send(Response(400, twilio_error(400, 20001, "Unreadable request body")))
            return
        if path == "/_fake" or path.startswith("/_fake/"):
            self._send(self._control(path, query, body))
            return

        started = time.time()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        form = None
        if ctype == "application/x-www-form-urlencoded":
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                         keep_blank_values=True)
        record = {"time": started, "method": self.command, "path": path,
                  "query": query, "headers": self._headers_for_record(),
                  "auth_user": self._basic_auth()[0], "form": form,
                  "json": parse_json_or_none(body) if ctype == "application/json" else None}

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
            resp = self._injected(rule, path, form or {})
        if resp is None:
            resp = self._route(path, ctype, form)
        self.server.recorder.add({**record, "status": resp.status, "response": resp.payload})
        self._send(resp)

    def _injected(self, rule, path, form):
        """Build the response a failure rule asks for; None means 'no override,
        process normally' (delay-only rules)."""
        headers = dict(rule.get("headers", {}))
        if rule.get("retry_after") is not None:
            headers["Retry-After"] = rule["retry_after"]
        if rule.get("body") is not None:
            return Response(rule.get("status", 201), parse_json_or_none(rule["body"]),
                            raw=rule["body"], headers=headers,
                            content_type=rule.get("content_type", "application/json"))
        if rule.get("malformed"):
            # A plausible resource cut mid-way: the client must not crash on it.
            full = json.dumps(self._message_resource(
                form.get("To", ["whatsapp:+10000000000"])[0],
                form.get("From", [None])[0], None, form.get("Body", [""])[0], 0)).encode()
            return Response(rule.get("status", 201), None, raw=full[:len(full) // 2],
                            headers=headers)
        if rule.get("wrong_shape"):
            return Response(rule.get("status", 201), {"foo": 1}, headers=headers)
        status = rule.get("status")
        if status is None:
            return None
        code = rule.get("code", STATUS_TO_CODE.get(status, status))
        message = rule.get("message") or status_phrase(status)
        return Response(status, twilio_error(status, code, message), headers=headers)

    def _route(self, path, ctype, form):
        if path.startswith("/v1/"):
            user, password = self._basic_auth()
            auth_ok = user == self.server.account_sid and password == self.server.auth_token
            status, payload, headers = self.server.conversations.handle(
                self.command, path, urllib.parse.urlsplit(self.path).query, ctype, form,
                auth_ok, self.headers.get("Host"))
            return Response(status, payload, headers=headers)
        m = MESSAGES_RE.match(path)
        if not m:
            return Response(404, twilio_error(
                404, 20404, f"The requested resource {path} was not found"))
        if self.command != "POST":
            return Response(405, twilio_error(405, 20004, "Method not allowed"),
                            headers={"Allow": "POST"})
        user, password = self._basic_auth()
        sid = self.server.account_sid
        if user != sid or password != self.server.auth_token or m.group(1) != sid:
            return Response(401, twilio_error(401, 20003, "Authenticate"))
        if form is None:
            # Real Twilio would ignore a non-form body and complain about To;
            # saying what is actually wrong makes client bugs obvious.
            return Response(400, twilio_error(
                400, 20001, f"Content-Type must be application/x-www-form-urlencoded, got '{ctype}'"))
        return self._create_message(form)

    def _create_message(self, form):
        def first(key):
            vals = [v for v in form.get(key, []) if v != ""]
            return vals[0] if vals else None

        to, from_, mss = first("To"), first("From"), first("MessagingServiceSid")
        body, content_sid = first("Body"), first("ContentSid")
        media = [v for v in form.get("MediaUrl", []) if v != ""]
        if to is None:
            return Response(400, twilio_error(400, 21604, "A 'To' phone number is required."))
        if not TO_RE.match(to):
            return Response(400, twilio_error(
                400, 21211, f"The 'To' number {to} is not a valid phone number."))
        if (from_ is None) == (mss is None):
            return Response(400, twilio_error(400, 21603, "A 'From' phone number is required."))
        if body is None and not media and content_sid is None:
            return Response(400, twilio_error(
                400, 21619, "A text message body or media urls must be specified."))
        if body is not None and len(body) > BODY_LIMIT_CHARS:
            return Response(400, twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."))
        return Response(201, self._message_resource(to, from_, mss, body or "", len(media)))

    def _message_resource(self, to, from_, mss, body, n_media):
        sid = "SM" + secrets.token_hex(16)
        acct = self.server.account_sid
        now = rfc2822_now()
        base = f"/2010-04-01/Accounts/{acct}/Messages/{sid}"
        return {
            "sid": sid, "account_sid": acct, "messaging_service_sid": mss,
            "from": from_, "to": to, "body": body, "status": "queued",
            "direction": "outbound-api",
            "num_segments": str(num_segments(to, body)), "num_media": str(n_media),
            "price": None, "price_unit": None, "error_code": None, "error_message": None,
            "api_version": API_VERSION, "date_created": now, "date_updated": now,
            "date_sent": None, "uri": base + ".json",
            "subresource_uris": {"media": base + "/Media.json"},
        }

    # ---- control API ----------------------------------------------------

    def _control(self, path, query, body):
        srv = self.server
        method = self.command
        if path == "/_fake/healthz" and method == "GET":
            return Response(200, {"ok": True})
        if path == "/_fake/requests" and method == "GET":
            q = urllib.parse.parse_qs(query)
            try:
                since = int(q.get("since", ["0"])[0])
            except ValueError:
                return Response(400, {"error": "since must be an integer"})
            return Response(200, srv.recorder.list(q.get("path_contains", [None])[0], since))
        if path == "/_fake/reset" and method == "POST":
            srv.recorder.reset()
            srv.rules.reset()
            srv.conversations.reset()
            srv.sim.reset()
            return Response(200, {})
        if path == "/_fake/state" and method == "GET":
            return Response(200, srv.conversations.dump(f"http://{self.headers.get('Host', '')}"))
        if path == "/_fake/spec_violations" and method == "GET":
            return Response(200, srv.conversations.violations())
        if path == "/_fake/fail" and method == "GET":
            return Response(200, {"rules": srv.rules.list()})
        if path == "/_fake/fail" and method == "POST":
            try:
                rule = FailureRules.validate(json.loads(body or b"null"))
            except ValueError as e:
                return Response(400, {"error": f"bad rule: {e}"})
            srv.rules.add(rule)
            return Response(200, {"rules": srv.rules.list()})
        sim = srv.sim.control(method, path, query, body)
        if sim is not None:
            return Response(*sim)
        if path in ("/_fake/healthz", "/_fake/requests", "/_fake/reset", "/_fake/fail",
                    "/_fake/state", "/_fake/spec_violations"):
            return Response(405, {"error": f"{method} not allowed on {path}"})
        return Response(404, {"error": f"unknown control path {path}"})


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True          # in-flight (e.g. delayed) requests never block exit
    request_queue_size = 128       # default 5 drops SYNs under parallel test load
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients hanging up mid-request are normal in failure tests.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def serve(server):
    """Print the ready line and serve until SIGTERM/SIGINT."""
    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it cannot run on
        # the thread that is inside serve_forever.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"ready": True, "port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


def main():
    ap = argparse.ArgumentParser(description="Fake Twilio Messages API")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--account-sid", default="AC00000000000000000000000000000000")
    ap.add_argument("--auth-token", default="sandbox_token")
    ap.add_argument("--record", metavar="FILE", help="append each record as a JSON line")
    ap.add_argument("--specs", metavar="DIR",
                    help="check /v1/ requests against the Twilio OpenAPI specs in DIR")
    args = ap.parse_args()

    if ":" in args.bind:
        FakeServer.address_family = socket.AF_INET6
    try:
        server = FakeServer((args.bind, args.port), TwilioHandler)
        recorder = Recorder(args.record)
    except OSError as e:
        print(f"fake_twilio: {e}", file=sys.stderr)
        return 2
    server.account_sid = args.account_sid
    server.auth_token = args.auth_token
    server.recorder = recorder
    server.rules = FailureRules()
    try:
        server.conversations = ConversationsState(args.account_sid, args.specs)
    except (OSError, ValueError) as e:
        print(f"fake_twilio: cannot load specs: {e}", file=sys.stderr)
        server.server_close()
        recorder.close()
        return 2
    server.sim = Simulator(server)
    try:
        serve(server)
    finally:
        recorder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
