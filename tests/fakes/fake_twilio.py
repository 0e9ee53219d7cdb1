#!/usr/bin/env python3
"""Fake Twilio Messages API for baton's integration tests and `make demo`.

Serves POST /2010-04-01/Accounts/{AccountSid}/Messages.json on loopback with
Twilio's auth, validation, 201 resource and error shapes (wire-contracts §3),
records every request it receives, and exposes a small control API under
/_fake/ so tests can read the records, reset state and inject failures.

GET of the same path lists the messages it created, as Twilio's Read
Multiple Message Resources does (twilio_api_v2010.json): filters To, From,
DateSent, DateSent< and DateSent> (YYYY-MM-DD, on the day the message was
sent), PageSize (default 50, at most 1000) and Page/PageToken, newest
first, with next_page_uri. Like Twilio it is eventually consistent: a
message is listed, with its date_sent, only list_lag_ms after its 201
(--list-lag-ms, default 300; POST /_fake/messages_config {"list_lag_ms": N}).

Usage:
    fake_twilio.py --port 0 --bind 127.0.0.1 \
        --account-sid AC00000000000000000000000000000000 \
        --auth-token sandbox_token [--record FILE] [--specs DIR] [--sid-seed S]

Requests under /v1/ (Conversations v1 and Flex Interactions, wire-contracts
§4/§5) are served by twilio_conversations.py; --specs DIR also checks them
against Twilio's OpenAPI specs (see that module).

--sid-seed S (default: the FAKE_TWILIO_SID_SEED environment variable; unset
or empty = random SIDs) makes every SID the fake hands out a function of
(S, prefix, how many of that prefix came before): two fakes with the same
seed create the same Conversation, Interaction, Task... SIDs in the same
order, so a capture of one run (capture.dir) replays against the other.  The
simulated customer and agent (twilio_sim.py) count their SIDs apart, so a run
without them gets the same SIDs for what baton creates.  /_fake/reset does not
restart the counts (SIDs stay unique for the fake's life).

After binding it prints one line, {"ready": true, "port": N}, to stdout; tests
wait for that line instead of sleeping. SIGTERM or SIGINT stops it (exit 0).

Control API (no auth, never recorded):
    GET  /_fake/healthz                   200 {"ok": true}
    GET  /_fake/requests[?path_contains=S][&since=SEQ]
                                          200 [records...]
    POST /_fake/reset                     clears records, seq, rules, conversations,
                                          interactions and spec violations; 200 {}
    GET  /_fake/state                     200 {"conversations": [...], "interactions": [...]}
    POST /_fake/messages_config {"list_lag_ms": N}
                                          200 {"list_lag_ms": N}
    GET  /_fake/messages[?to=ADDRESS]     200 [message resources...]: every message
                                          created, oldest first, at once (no list lag)
    GET  /_fake/spec_violations           200 [{"method", "path", "problem"}...]
    POST /_fake/fail   {rule}             adds a failure rule; 200 {"rules": [...]}
    GET  /_fake/fail                      200 {"rules": [...]}

Media (twilio_media.py documents the paths, the preloaded MediaSids and the
resource shapes):
    GET  /2010-04-01/Accounts/{AC}/Messages/{MM}/Media/{ME}[.json]
                                          a MediaUrlN of an inbound message (basic auth)
    POST /v1/Services/{IS}/Media          MCS upload (raw bytes + Content-Type); 201
    GET  /v1/Services/{IS}/Media/{ME}[/Content]
    GET  /cdn/{ME}                        the temporary media URL stand-in (no auth)
    GET  /_fake/media                     200 [{"sid", "content_type", "size", "filename",
                                          "status", "delay_ms", "slow", "redirect"}...]
    POST /_fake/media {"sid"?, "content_type", "data_b64", "filename"?, "status"?,
                       "delay_ms"?, "redirect"?}
                                          adds Messaging media; 200 its description
    GET|POST /_fake/media_config {"slow_ms": N, "redirect": bool}
                                          slow_ms: the slow media's wait (--media-slow-ms,
                                          default 10000); redirect: every media GET
                                          answers 307 to /cdn/ as real Twilio does
    GET  /_fake/mcs[?content=1]           200 [{"sid", "service_sid", "content_type",
                                          "filename", "size", "sha256", "message_sid",
                                          "channel_sid", "date_created", "content_b64"?}...]
/_fake/reset also forgets MCS uploads and media added at runtime and restores
media_config. Media requests are recorded like the others, with "media_sid"
and, when bytes were served or stored, "media_bytes".

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
Content-Type), disconnect (close the connection without answering, nothing
done), lose_answer (do it, then close the connection without answering),
answer_delay_ms (do it at once, answer that much later).
A rule with only delay_ms delays the request and then lets it be processed
normally. First matching rule wins.

The plumbing shared with fake_llm.py (recording, failure rules, the common
control endpoints, startup and shutdown) lives in fakelib.py.
"""

import argparse
import base64
import binascii
import os
import re
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from email.utils import format_datetime

import fakelib
from fakelib import (FailureRules, FakeHandler, Response, parse_json_or_none,
                     rfc2822_now, twilio_error, twilio_sid)
import twilio_media
from twilio_conversations import ConversationsState
from twilio_sim import Simulator

API_VERSION = "2010-04-01"
MESSAGES_RE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
# Twilio accepts E.164 numbers, optionally with a channel prefix; E.164 caps
# the number at 15 digits.
TO_RE = re.compile(r"^(whatsapp:)?\+[0-9]{1,15}$")
BODY_LIMIT_CHARS = 1600

# Default Twilio error codes for status-only failure rules.
STATUS_TO_CODE = {400: 21211, 401: 20003, 403: 20003, 404: 20404,
                  405: 20004, 429: 20429, 500: 20500, 503: 20503}

# GSM 03.38: plain SMS bodies use 7-bit segments, anything else UCS-2.
GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789"
                ":;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXT = set("^{}\\[~]|€")


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



def rfc2822(t):
    return format_datetime(datetime.fromtimestamp(int(t), timezone.utc))


class MessageLog:
    """Messages created through Messages.json, for its list endpoint."""

    def __init__(self, lag_ms):
        self.lock = threading.Lock()
        self.lag_ms = lag_ms
        self.msgs = []   # resource dicts plus "_created" (epoch s), oldest first

    def add(self, resource):
        with self.lock:
            self.msgs.append(dict(resource, _created=time.time()))

    def reset(self):
        with self.lock:
            self.msgs = []

    def created(self, to=None):
        """Every message created so far, oldest first, without the list lag."""
        with self.lock:
            return [{k: v for k, v in m.items() if not k.startswith("_")}
                    for m in self.msgs if to is None or m["to"] == to]

    def listed(self, query):
        """(status, payload) of one list page for the parsed query."""
        def one(name):
            vals = query.get(name)
            return vals[0] if vals else None
        try:
            size = int(one("PageSize") or 50)
            page = int(one("Page") or 0)
        except ValueError:
            return 400, twilio_error(400, 20001, "PageSize and Page must be integers")
        if not 1 <= size <= 1000 or page < 0:
            return 400, twilio_error(400, 20001, "PageSize must be 1..1000")
        day_filters = []
        for name, op in (("DateSent", "=="), ("DateSent>", ">="), ("DateSent<", "<=")):
            v = one(name)
            if v is None:
                continue
            if not re.match(r"^\d{4}-\d{2}-\d{2}$", v):
                return 400, twilio_error(400, 20001, f"{name} must be YYYY-MM-DD")
            day_filters.append((op, v))
        to, frm = one("To"), one("From")
        now = time.time()
        out = []
        with self.lock:
            for m in reversed(self.msgs):       # newest first, as Twilio lists
                visible = m["_created"] + self.lag_ms / 1000.0
                if now < visible:
                    continue                     # not listed yet: eventual consistency
                if to is not None and m["to"] != to:
                    continue
                if frm is not None and m["from"] != frm:
                    continue
                day = datetime.fromtimestamp(visible, timezone.utc).strftime("%Y-%m-%d")
                if not all((day == d) if op == "==" else (day >= d) if op == ">=" else (day <= d)
                           for op, d in day_filters):
                    continue
                r = {k: v for k, v in m.items() if not k.startswith("_")}
                r.update(status="sent", date_sent=rfc2822(visible))
                out.append(r)
        start = page * size
        chunk = out[start:start + size]
        base = urllib.parse.urlencode([(k, v) for k, vs in query.items() if k not in
                                       ("Page", "PageToken", "PageSize") for v in vs])
        path = "/2010-04-01/Accounts/%s/Messages.json" % self.account_sid
        def uri(p):
            return "%s?%s%sPageSize=%d&Page=%d" % (path, base, "&" if base else "", size, p)
        more = start + size < len(out)
        return 200, {
            "messages": chunk, "page": page, "page_size": size, "start": start,
            "end": start + len(chunk) - 1 if chunk else start, "uri": uri(page),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) + "&PageToken=PA%d" % (page + 1) if more else None,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
        }


class TwilioFailureRules(FailureRules):
    """FailureRules plus path_regex (re.search on the path), which tests use
    to hit one Twilio resource among many that share a path prefix."""

    PRIVATE_KEYS = ("_re",)   # the compiled path_regex

    def _validate_more(self, rule):
        if rule.get("path_regex") is not None:
            try:
                rule["_re"] = re.compile(rule["path_regex"])
            except (re.error, TypeError) as e:
                raise ValueError(f"path_regex: {e}")

    def _matches(self, rule, method, path):
        return super()._matches(rule, method, path) and \
            (rule.get("_re") is None or bool(rule["_re"].search(path)))


class TwilioHandler(FakeHandler):
    server_version = "FakeTwilio/1.0"
    # Test bodies are tiny; the cap only stops a runaway client from eating memory.
    max_request_bytes = 10 * 1024 * 1024
    dropped_headers = ("authorization",)   # never kept; auth_user stands in for it
    rule_default_status = 201              # what Messages.json answers on success
    # Unparsable POST /_fake/fail bodies have always been reported as a bad
    # rule here (fake_llm says "invalid JSON"); kept so messages do not move.
    rule_json_error = "bad rule"

    def _headers_for_record(self):
        headers = super()._headers_for_record()
        if "Authorization" in self.headers:
            headers["auth_user"] = self._basic_auth()[0]
        return headers

    def _auth_ok(self):
        """The account and its auth token, or an API key (SK...) and its secret."""
        user, password = self._basic_auth()
        if user == self.server.account_sid and password == self.server.auth_token:
            return True
        key = self.server.api_key
        return key is not None and (user, password) == key

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

    # ---- FakeHandler hooks ----------------------------------------------

    def _unreadable_body(self):
        return Response(400, twilio_error(400, 20001, "Unreadable request body"))

    def _start_record(self, path, query, body):
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
        # Media routes add to the record (media_sid, media_bytes...) and read
        # the raw body; one request at a time per handler.
        self._record, self._body = record, body
        return record, (ctype, form)

    def _rule_error(self, rule, status, message, path, ctx):
        code = rule.get("code", STATUS_TO_CODE.get(status, status))
        return twilio_error(status, code, message)

    def _sample_answer(self, path, ctx):
        # A resource built from what the client sent, as Messages.json would.
        form = ctx[1] or {}
        return self._message_resource(
            form.get("To", ["whatsapp:+10000000000"])[0],
            form.get("From", [None])[0], None, form.get("Body", [""])[0], 0)

    def _media_route(self, path):
        """Messaging media, MCS and the /cdn/ stand-in (twilio_media.py); None
        when the path is none of them."""
        media, host = self.server.media, self.headers.get("Host", "")
        m = twilio_media.MESSAGING_RE.match(path)
        if m:
            if self.command != "GET":
                return Response(405, twilio_error(405, 20004, "Method not allowed"),
                                headers={"Allow": "GET"})
            out = media.messaging(m, self._auth_ok(), host, self._record)
        elif twilio_media.MCS_RE.match(path):
            out = media.mcs_route(self.command, twilio_media.MCS_RE.match(path),
                                  urllib.parse.urlsplit(self.path).query,
                                  self.headers.get("Content-Type", ""), self._body,
                                  self._auth_ok(), host, self._record, fakelib.parse_multipart)
        elif twilio_media.CDN_RE.match(path) and self.command == "GET":
            out = media.cdn(twilio_media.CDN_RE.match(path).group(1), self._record)
        else:
            return None
        status, payload, raw, ctype, headers = out
        if raw is not None:
            return Response(status, None, raw=raw, headers=headers, content_type=ctype)
        return Response(status, payload, headers=headers)

    def _route(self, path, ctx):
        ctype, form = ctx
        resp = self._media_route(path)
        if resp is not None:
            return resp
        if path.startswith("/v1/"):
            auth_ok = self._auth_ok()
            status, payload, headers = self.server.conversations.handle(
                self.command, path, urllib.parse.urlsplit(self.path).query, ctype, form,
                auth_ok, self.headers.get("Host"))
            return Response(status, payload, headers=headers)
        m = MESSAGES_RE.match(path)
        if not m:
            return Response(404, twilio_error(
                404, 20404, f"The requested resource {path} was not found"))
        if self.command not in ("POST", "GET"):
            return Response(405, twilio_error(405, 20004, "Method not allowed"),
                            headers={"Allow": "GET, POST"})
        sid = self.server.account_sid
        if not self._auth_ok() or m.group(1) != sid:
            return Response(401, twilio_error(401, 20003, "Authenticate"))
        if self.command == "GET":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query,
                                          keep_blank_values=True)
            return Response(*self.server.messages.listed(query))
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
        resource = self._message_resource(to, from_, mss, body or "", len(media))
        self.server.messages.add(resource)
        return Response(201, resource)

    def _message_resource(self, to, from_, mss, body, n_media):
        sid = twilio_sid("SM")
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

    # ---- control API: healthz, requests, reset and fail come from FakeHandler

    def _control_routes(self):
        routes = super()._control_routes()
        routes.update({("GET", "/_fake/state"): self._ctl_state,
                       ("POST", "/_fake/messages_config"): self._ctl_messages_config,
                       ("GET", "/_fake/messages"): self._ctl_messages,
                       ("GET", "/_fake/spec_violations"): self._ctl_spec_violations})
        return routes

    def _control_fallback(self, path, query, body):
        if path in ("/_fake/media", "/_fake/media_config", "/_fake/mcs"):
            obj = None
            if self.command == "POST":
                obj, err = self._control_json(body)
                if err:
                    return err
            out = self.server.media.control(self.command, path, query, body, obj)
            if out is not None:
                return Response(*out)
            return Response(405, {"error": f"{self.command} not allowed on {path}"})
        # Webhooks, the simulated customer and the simulated agent.
        sim = self.server.sim.control(self.command, path, query, body)
        return Response(*sim) if sim is not None else None

    def _ctl_messages_config(self, query, body):
        obj, err = self._control_json(body)
        if err is not None:
            return err
        lag = obj.get("list_lag_ms") if isinstance(obj, dict) else None
        if not isinstance(lag, int) or isinstance(lag, bool) or lag < 0:
            return Response(400, {"error": "list_lag_ms must be a non-negative integer"})
        self.server.messages.lag_ms = lag
        return Response(200, {"list_lag_ms": lag})

    def _ctl_messages(self, query, body):
        to = urllib.parse.parse_qs(query).get("to", [None])[0]
        return Response(200, self.server.messages.created(to))

    def _ctl_reset(self, query, body):
        resp = super()._ctl_reset(query, body)
        self.server.messages.reset()
        self.server.conversations.reset()
        self.server.media.reset()
        self.server.sim.reset()
        return resp

    def _ctl_state(self, query, body):
        return Response(200, self.server.conversations.dump(
            f"http://{self.headers.get('Host', '')}"))

    def _ctl_spec_violations(self, query, body):
        return Response(200, self.server.conversations.violations())


def main():
    ap = argparse.ArgumentParser(description="Fake Twilio Messages API")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--account-sid", default="AC00000000000000000000000000000000")
    ap.add_argument("--auth-token", default="sandbox_token")
    ap.add_argument("--record", metavar="FILE", help="append each record as a JSON line")
    ap.add_argument("--specs", metavar="DIR",
                    help="check /v1/ requests against the Twilio OpenAPI specs in DIR")
    ap.add_argument("--api-key", metavar="SK...:SECRET",
                    help="an API key accepted for REST calls beside the account's auth token")
    ap.add_argument("--list-lag-ms", type=int, default=300,
                    help="a created message is listed only this long after its 201")
    ap.add_argument("--media-slow-ms", type=float, default=twilio_media.DEFAULT_SLOW_MS,
                    help="how long the slow preloaded media waits before answering")
    ap.add_argument("--sid-seed", metavar="S", default=os.environ.get("FAKE_TWILIO_SID_SEED"),
                    help="deterministic SIDs from seed S (default $FAKE_TWILIO_SID_SEED; "
                         "unset = random)")
    args = ap.parse_args()
    fakelib.set_sid_seed(args.sid_seed)

    server = fakelib.open_server("fake_twilio", args.bind, args.port, TwilioHandler,
                                 args.record, TwilioFailureRules())
    if server is None:
        return 2
    server.account_sid = args.account_sid
    server.auth_token = args.auth_token
    server.api_key = tuple(args.api_key.split(":", 1)) if args.api_key else None
    server.messages = MessageLog(args.list_lag_ms)
    server.messages.account_sid = args.account_sid
    try:
        server.conversations = ConversationsState(args.account_sid, args.specs)
    except (OSError, ValueError) as e:
        print(f"fake_twilio: cannot load specs: {e}", file=sys.stderr)
        fakelib.close_server(server)
        return 2
    server.media = twilio_media.MediaStore(args.account_sid,
                                           server.conversations.chat_service_sid,
                                           args.media_slow_ms)
    server.conversations.media = server.media
    server.sim = Simulator(server)
    fakelib.serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
