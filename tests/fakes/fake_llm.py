#!/usr/bin/env python3
"""Fake LLM server for baton's integration tests and `make demo`.

Speaks two wire protocols on loopback (wire-contracts §6 and §7):
    POST /v1/messages          Anthropic Messages API
    POST /v1/chat/completions  OpenAI-compatible chat completions
Replies come from a script of keyword rules matched against the last user
message, so tests get deterministic answers (including [ESCALAR] tags,
Anthropic tool_use blocks, OpenAI tool calls and json_schema output).

Usage:
    fake_llm.py --port 0 --bind 127.0.0.1 --script FILE.json \
        [--latency-ms 0] [--api-key sandbox-key] [--record FILE]

`--api-key ''` disables the key check (like Ollama, which ignores keys).
After binding it prints one line, {"ready": true, "port": N}, to stdout.
SIGTERM or SIGINT stops it (exit 0).

Script format:
    {"rules": [{"match": ["where", "address"], "reply": "We are at ...",
                "tool": {"name": "escalate_to_human", "input": {...}},   optional
                "structured": {...}},                                   optional
               ...],
     "default": "fallback reply",
     "default_structured": {...}}                                       optional
A rule matches when any of its match strings is a case-insensitive substring
of the last line of the last user message; the first match wins.

Control API (no auth, never recorded):
    GET  /_fake/healthz                   200 {"ok": true}
    GET  /_fake/requests[?path_contains=S][&since=SEQ]
    POST /_fake/reset                     clears records, seq and failure rules
    POST /_fake/fail    {rule}            adds a failure rule
    GET  /_fake/fail                      lists failure rules
    POST /_fake/config  {"latency_ms": N} changes latency at runtime
    GET  /_fake/config
    POST /_fake/script  {script}          replaces the script

Failure rule keys (all optional): path_contains (""), method (any),
count (1; negative = until reset), delay_ms, status, message, error_type,
code, retry_after (-> retry-after), headers ({name: value}),
body (raw text; status defaults to 200; content_type sets its Content-Type),
malformed (200 with truncated JSON), wrong_shape (200 with {"foo": 1}),
disconnect (close without answering).
Status-only rules answer in the provider's error shape. A rule with only
delay_ms delays the request and then processes it normally.

Latency (--latency-ms / _fake/config) applies to every 200 answer on /v1/,
including malformed and wrong_shape ones; error answers only wait delay_ms.
"""

import argparse
import json
import math
import secrets
import signal
import socket
import string
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Prompts in tests are small; the cap only stops a runaway client.
MAX_REQUEST_BYTES = 32 * 1024 * 1024   # Anthropic's own request limit
ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_ROLES = ("user", "assistant")
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                         402: "billing_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large",
                         429: "rate_limit_error", 500: "api_error",
                         504: "timeout_error", 529: "overloaded_error"}
FALLBACK_DEFAULT = "I can help with that."
_ALNUM = string.ascii_letters + string.digits


def rand_id(prefix, n=24):
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(n))


def approx_tokens(text):
    # Roughly four characters per token; never zero so clients can sum usage.
    return max(1, math.ceil(len(text) / 4))


def status_phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else "Error"


def anthropic_error(status, message, error_type=None, request_id=None):
    if error_type is None:
        error_type = ANTHROPIC_ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": error_type, "message": message},
            "request_id": request_id or rand_id("req_")}


def openai_error(message, error_type="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def openai_error_for_status(status, message=None, error_type=None, code=None):
    if error_type is None:
        error_type = ("rate_limit_exceeded" if status == 429 else
                      "server_error" if status >= 500 else "invalid_request_error")
    return openai_error(message or status_phrase(status), error_type, None, code)


class BadRequest(Exception):
    """A request that fails validation; the message goes to the client."""


def load_script(obj):
    """Validate a script object and return it normalised (match always a list)."""
    if not isinstance(obj, dict):
        raise ValueError("script must be a JSON object")
    rules = obj.get("rules", [])
    if not isinstance(rules, list):
        raise ValueError("rules must be a list")
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise ValueError(f"rules[{i}] must be an object")
        match = rule.get("match")
        if isinstance(match, str):
            match = [match]
        if not isinstance(match, list) or not match or \
                not all(isinstance(m, str) and m for m in match):
            raise ValueError(f"rules[{i}].match must be a non-empty list of strings")
        if not isinstance(rule.get("reply", ""), str):
            raise ValueError(f"rules[{i}].reply must be a string")
        tool = rule.get("tool")
        if tool is not None and not (isinstance(tool, dict) and isinstance(tool.get("name"), str)
                                     and isinstance(tool.get("input", {}), dict)):
            raise ValueError(f"rules[{i}].tool must be {{\"name\": str, \"input\": object}}")
        out.append({**rule, "match": [m.casefold() for m in match],
                    "reply": rule.get("reply", "")})
    default = obj.get("default", FALLBACK_DEFAULT)
    if not isinstance(default, str):
        raise ValueError("default must be a string")
    return {"rules": out, "default": default,
            "default_structured": obj.get("default_structured")}


def pick_rule(script, text):
    """First rule whose match strings occur in text, else a default pseudo-rule."""
    folded = text.casefold()
    for rule in script["rules"]:
        if any(m in folded for m in rule["match"]):
            return rule
    return {"reply": script["default"], "structured": script.get("default_structured")}


def text_of(content):
    """Plain text of a message content: a string, or the text parts of a block list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content
                         if isinstance(b, dict) and b.get("type") == "text"
                         and isinstance(b.get("text"), str))
    return ""


def last_user_text(messages):
    """The customer's latest words: the last line of the last user message.

    Clients merge consecutive user turns with newlines (baton puts a system
    note before the customer's first message after a hand-back), and keyword
    rules must answer what the customer just said, not the note."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            lines = [l for l in text_of(msg.get("content")).split("\n") if l.strip()]
            return lines[-1] if lines else ""
    return ""


# ---- protocol: Anthropic --------------------------------------------------

def validate_anthropic(req):
    if not isinstance(req, dict):
        raise BadRequest("request body must be a JSON object")
    if not isinstance(req.get("model"), str) or not req["model"]:
        raise BadRequest("model: Field required")
    mt = req.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        raise BadRequest("max_tokens: Field required (integer >= 1)")
    msgs = req.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages: at least one message is required")
    for i, msg in enumerate(msgs):
        if not isinstance(msg, dict) or msg.get("role") not in ANTHROPIC_ROLES:
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = msg.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise BadRequest(f"messages.{i}.content: Input should be a string or a list of blocks")
        for j, block in enumerate(content):
            # Other block types (tool_use, tool_result, image...) are legal on
            # the real API; only their basic shape is checked here.
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise BadRequest(f"messages.{i}.content.{j}: block must be an object with a type")
            if block["type"] == "text" and not isinstance(block.get("text"), str):
                raise BadRequest(f"messages.{i}.content.{j}.text: Field required")
    system = req.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list) or not all(
                isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
                for b in system):
            raise BadRequest("system: Input should be a string or a list of text blocks")
    tools = req.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)):
        raise BadRequest("tools: each tool must be an object with a name")


def anthropic_reply(req, script):
    rule = pick_rule(script, last_user_text(req["messages"]))
    reply = rule["reply"]
    content = [{"type": "text", "text": reply}] if reply != "" else []
    stop_reason = "end_turn"
    tool = rule.get("tool")
    offered = {t["name"] for t in req.get("tools") or []}
    tool_choice = req.get("tool_choice") or {}
    if tool and tool["name"] in offered and tool_choice.get("type") != "none":
        content.append({"type": "tool_use", "id": rand_id("toolu_"),
                        "name": tool["name"], "input": tool.get("input", {})})
        stop_reason = "tool_use"
    if not content:
        content = [{"type": "text", "text": ""}]
    system = req.get("system") or ""
    prompt = (system if isinstance(system, str) else text_of(system)) + "".join(
        text_of(m.get("content")) for m in req["messages"])
    output = reply + "".join(json.dumps(b.get("input", "")) for b in content
                             if b["type"] == "tool_use")
    return {"id": rand_id("msg_"), "type": "message", "role": "assistant",
            "model": req["model"], "content": content,
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": approx_tokens(prompt),
                      "output_tokens": approx_tokens(output),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}


# ---- protocol: OpenAI -----------------------------------------------------

def validate_openai(req):
    if not isinstance(req, dict):
        raise BadRequest("request body must be a JSON object", None)
    if not isinstance(req.get("model"), str) or not req["model"]:
        raise BadRequest("you must provide a model parameter", "model")
    msgs = req.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty array", "messages")
    for i, msg in enumerate(msgs):
        if not isinstance(msg, dict) or msg.get("role") not in OPENAI_ROLES:
            raise BadRequest(f"Invalid value for 'messages[{i}].role': expected one of "
                             + ", ".join(OPENAI_ROLES), f"messages[{i}].role")
        content = msg.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise BadRequest(f"Invalid type for 'messages[{i}].content'", f"messages[{i}].content")
        if msg["role"] == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise BadRequest(f"Missing required parameter: 'messages[{i}].tool_call_id'",
                             f"messages[{i}].tool_call_id")


def openai_reply(req, script):
    rule = pick_rule(script, last_user_text(req["messages"]))
    reply = rule["reply"]
    message = {"role": "assistant", "content": reply, "refusal": None}
    finish = "stop"
    fmt = req.get("response_format") or {}
    tool = rule.get("tool")
    offered = {t.get("function", {}).get("name") for t in req.get("tools") or []
               if isinstance(t, dict) and isinstance(t.get("function"), dict)}
    if fmt.get("type") == "json_schema" and rule.get("structured") is not None:
        message["content"] = json.dumps(rule["structured"], ensure_ascii=False)
    elif tool and tool["name"] in offered and req.get("tool_choice") != "none":
        # Mirror of the Anthropic tool_use path; arguments is a JSON *string*.
        message["content"] = reply or None
        message["tool_calls"] = [{"id": rand_id("call_"), "type": "function",
                                  "function": {"name": tool["name"],
                                               "arguments": json.dumps(tool.get("input", {}))}}]
        finish = "tool_calls"
    prompt = "".join(text_of(m.get("content")) for m in req["messages"])
    n_in = approx_tokens(prompt)
    n_out = approx_tokens(message["content"] or "")
    return {"id": rand_id("chatcmpl-"), "object": "chat.completion",
            "created": int(time.time()), "model": req["model"],
            "choices": [{"index": 0, "message": message,
                         "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out,
                      "total_tokens": n_in + n_out}}


# ---- shared server machinery ---------------------------------------------

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
            return list(self._rules)

    def take(self, method, path):
        """Return the first rule matching the request and use up one count."""
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.get("method") not in (None, method):
                    continue
                if rule["path_contains"] not in path:
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
            raw = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        self.raw = raw if isinstance(raw, bytes) else raw.encode()
        self.headers = headers or {}
        self.content_type = content_type


def parse_json_or_none(raw):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


class LLMHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    # One entry point for every method so unknown methods get JSON errors
    # instead of the stdlib's HTML 501 page.
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
        # The stdlib leaves the reason phrase empty for codes it does not know (529).
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
            if name in ("x-api-key", "authorization"):
                value = "<redacted>"   # keys never reach logs or records
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    # ---- dispatch -------------------------------------------------------

    def _dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, url.query
        body = self._read_body()
        if body is None:
            self._send(Response(400, openai_error("unreadable request body")))
            return
        if path == "/_fake" or path.startswith("/_fake/"):
            self._send(self._control(path, query, body))
            return

        started = time.time()
        parsed = parse_json_or_none(body) if body else None
        record = {"time": started, "method": self.command, "path": path, "query": query,
                  "headers": self._headers_for_record(), "form": None, "json": parsed}
        # Anthropic puts a request id on every response, errors included.
        request_id = rand_id("req_") if path == ANTHROPIC_PATH else None

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
            resp = self._injected(rule, path, parsed, request_id)
        if resp is None:
            resp = self._route(path, parsed, request_id)
        if resp.status == 200 and path.startswith("/v1/"):
            latency = self.server.latency_ms
            if latency > 0:
                time.sleep(latency / 1000.0)   # per thread: other requests go on
        if request_id:
            resp.headers.setdefault("request-id", request_id)
        elif path == OPENAI_PATH:
            resp.headers.setdefault("x-request-id", rand_id("req_"))
        self.server.recorder.add({**record, "status": resp.status, "response": resp.payload})
        self._send(resp)

    def _injected(self, rule, path, parsed, request_id):
        """Build the response a failure rule asks for; None means 'no override,
        process normally' (delay-only rules)."""
        headers = dict(rule.get("headers", {}))
        if rule.get("retry_after") is not None:
            headers["retry-after"] = rule["retry_after"]
        if rule.get("body") is not None:
            return Response(rule.get("status", 200), parse_json_or_none(rule["body"]),
                            raw=rule["body"], headers=headers,
                            content_type=rule.get("content_type", "application/json"))
        if rule.get("malformed"):
            # A plausible answer cut mid-way: the client must not crash on it.
            full = json.dumps(self._sample_answer(path, parsed)).encode()
            return Response(rule.get("status", 200), None, raw=full[:len(full) // 2],
                            headers=headers)
        if rule.get("wrong_shape"):
            return Response(rule.get("status", 200), {"foo": 1}, headers=headers)
        status = rule.get("status")
        if status is None:
            return None
        message = rule.get("message") or status_phrase(status)
        if path == ANTHROPIC_PATH:
            payload = anthropic_error(status, message, rule.get("error_type"), request_id)
        else:
            payload = openai_error_for_status(status, message, rule.get("error_type"),
                                              rule.get("code"))
        return Response(status, payload, headers=headers)

    def _sample_answer(self, path, parsed):
        """A valid answer for this request if it is well formed, else a stock one."""
        script = self.server.script
        try:
            if path == OPENAI_PATH:
                validate_openai(parsed)
                return openai_reply(parsed, script)
            validate_anthropic(parsed)
            return anthropic_reply(parsed, script)
        except BadRequest:
            req = {"model": "fake", "max_tokens": 1,
                   "messages": [{"role": "user", "content": ""}]}
            return openai_reply(req, script) if path == OPENAI_PATH \
                else anthropic_reply(req, script)

    def _route(self, path, parsed, request_id):
        if path == ANTHROPIC_PATH:
            if self.command != "POST":
                return Response(405, anthropic_error(405, "Method not allowed", None,
                                                     request_id), headers={"Allow": "POST"})
            return self._anthropic(parsed, request_id)
        if path == OPENAI_PATH:
            if self.command != "POST":
                return Response(405, openai_error_for_status(405, "Method not allowed"),
                                headers={"Allow": "POST"})
            return self._openai(parsed)
        if path.startswith(ANTHROPIC_PATH):
            return Response(404, anthropic_error(404, f"Not found: {path}", None, request_id))
        return Response(404, openai_error(f"Unknown request URL: {self.command} {path}",
                                          "invalid_request_error", None, "unknown_url"))

    def _anthropic(self, parsed, request_id):
        key = self.server.api_key
        if key and self.headers.get("x-api-key") != key:
            return Response(401, anthropic_error(401, "invalid x-api-key", None, request_id))
        if not self.headers.get("anthropic-version"):
            return Response(400, anthropic_error(
                400, "anthropic-version: header is required", None, request_id))
        if parsed is None:
            return Response(400, anthropic_error(
                400, "There was an error parsing the body of your request: invalid JSON",
                None, request_id))
        try:
            validate_anthropic(parsed)
        except BadRequest as e:
            return Response(400, anthropic_error(400, str(e), None, request_id))
        return Response(200, anthropic_reply(parsed, self.server.script))

    def _openai(self, parsed):
        key = self.server.api_key
        auth = self.headers.get("Authorization", "")
        if key and auth != f"Bearer {key}":
            return Response(401, openai_error("Incorrect API key provided",
                                              "invalid_request_error", None, "invalid_api_key"))
        if parsed is None:
            return Response(400, openai_error(
                "We could not parse the JSON body of your request.", "invalid_request_error"))
        try:
            validate_openai(parsed)
        except BadRequest as e:
            param = e.args[1] if len(e.args) > 1 else None
            return Response(400, openai_error(e.args[0], "invalid_request_error", param))
        return Response(200, openai_reply(parsed, self.server.script))

    # ---- control API ----------------------------------------------------

    def _control(self, path, query, body):
        srv = self.server
        method = self.command
        routes = {("GET", "/_fake/healthz"), ("GET", "/_fake/requests"),
                  ("POST", "/_fake/reset"), ("GET", "/_fake/fail"), ("POST", "/_fake/fail"),
                  ("GET", "/_fake/config"), ("POST", "/_fake/config"),
                  ("POST", "/_fake/script")}
        if (method, path) not in routes:
            if any(p == path for _, p in routes):
                return Response(405, {"error": f"{method} not allowed on {path}"})
            return Response(404, {"error": f"unknown control path {path}"})
        if path == "/_fake/healthz":
            return Response(200, {"ok": True})
        if path == "/_fake/requests":
            q = urllib.parse.parse_qs(query)
            try:
                since = int(q.get("since", ["0"])[0])
            except ValueError:
                return Response(400, {"error": "since must be an integer"})
            return Response(200, srv.recorder.list(q.get("path_contains", [None])[0], since))
        if path == "/_fake/reset":
            srv.recorder.reset()
            srv.rules.reset()
            return Response(200, {})
        if path == "/_fake/fail" and method == "GET":
            return Response(200, {"rules": srv.rules.list()})
        if path == "/_fake/config" and method == "GET":
            return Response(200, {"latency_ms": srv.latency_ms})

        try:
            obj = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            return Response(400, {"error": f"invalid JSON: {e}"})
        if path == "/_fake/fail":
            try:
                rule = FailureRules.validate(obj)
            except ValueError as e:
                return Response(400, {"error": f"bad rule: {e}"})
            return Response(200, {"rules": srv.rules.add(rule)})
        if path == "/_fake/config":
            latency = obj.get("latency_ms") if isinstance(obj, dict) else None
            if not isinstance(latency, (int, float)) or isinstance(latency, bool) or latency < 0:
                return Response(400, {"error": "latency_ms must be a non-negative number"})
            srv.latency_ms = latency   # a plain attribute swap is atomic under the GIL
            return Response(200, {"latency_ms": latency})
        # /_fake/script
        try:
            srv.script = load_script(obj)
        except ValueError as e:
            return Response(400, {"error": f"bad script: {e}"})
        return Response(200, {"rules": len(srv.script["rules"])})


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True          # in-flight (e.g. slow) requests never block exit
    request_queue_size = 128       # default 5 drops SYNs under parallel test load
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients hanging up mid-request are normal in timeout tests.
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
    ap = argparse.ArgumentParser(description="Fake Anthropic / OpenAI-compatible LLM API")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--script", required=True, metavar="FILE.json")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--api-key", default="sandbox-key",
                    help="expected key; empty string disables the check")
    ap.add_argument("--record", metavar="FILE", help="append each record as a JSON line")
    args = ap.parse_args()

    try:
        with open(args.script, encoding="utf-8") as f:
            script = load_script(json.load(f))
    except (OSError, ValueError) as e:
        print(f"fake_llm: cannot load script '{args.script}': {e}", file=sys.stderr)
        return 2
    if args.latency_ms < 0:
        print("fake_llm: --latency-ms must be >= 0", file=sys.stderr)
        return 2
    if ":" in args.bind:
        FakeServer.address_family = socket.AF_INET6
    try:
        server = FakeServer((args.bind, args.port), LLMHandler)
        recorder = Recorder(args.record)
    except OSError as e:
        print(f"fake_llm: {e}", file=sys.stderr)
        return 2
    server.script = script
    # Keep "500" rather than "500.0" in /_fake/config answers.
    server.latency_ms = int(args.latency_ms) if args.latency_ms.is_integer() else args.latency_ms
    server.api_key = args.api_key
    server.recorder = recorder
    server.rules = FailureRules()
    try:
        serve(server)
    finally:
        recorder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
