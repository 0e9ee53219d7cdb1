#!/usr/bin/env python3
"""Fake LLM server for baton's integration tests and `make demo`.

Speaks two wire protocols on loopback (wire-contracts §6 and §7):
    POST /v1/messages          Anthropic Messages API
    POST /v1/chat/completions  OpenAI-compatible chat completions
    POST /v1/audio/transcriptions  OpenAI speech to text (also /inference, whisper.cpp)
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
of the last line of the last user message; the first match wins. A rule with
"image": true (or "document": true) matches only when the last user message
carries an image (document) block; "match" may then be left out.

Images and documents: Anthropic {"type": "image"|"document", "source":
{"type": "base64", "media_type", "data"}} (also source "url", and document
source "text"), OpenAI {"type": "image_url", "image_url": {"url":
"data:TYPE;base64,..."|"https://..."}} and {"type": "file", "file":
{"filename", "file_data": "data:application/pdf;base64,..."}} are validated:
the data must be base64, an image's media_type one of image/jpeg, png, gif,
webp and the bytes' magic number must agree with it (a document: a PDF),
at most 5 MB an image for Anthropic, 20 MB for OpenAI; else 400 in the
provider's shape (OpenAI code "invalid_image_format"). Each request's
blocks are summarised in its record as "media_blocks": [{"type":
"image"|"document", "media_type", "bytes" (decoded size), "source":
"base64"|"url"|..., "message", "block", "role"}], and the base64 in the
recorded "json" is replaced by "<N base64 chars>".

Transcription: multipart/form-data with file (must start with "OggS", else
400 "Invalid file format...") and model (else 400), optional language, prompt,
response_format (json (default) -> {"text"}, text, verbose_json); Bearer auth
when a key is set. Answers the configured transcript (--transcript, default
DEFAULT_TRANSCRIPT). Each call's record carries "transcription": {"model",
"filename", "content_type", "bytes", "language", "prompt", "response_format"}.

Control API (no auth, never recorded):
    GET  /_fake/healthz                   200 {"ok": true}
    GET  /_fake/requests[?path_contains=S][&since=SEQ]
    POST /_fake/reset                     clears records, seq and failure rules
    POST /_fake/fail    {rule}            adds a failure rule
    GET  /_fake/fail                      lists failure rules
    POST /_fake/config  {"latency_ms": N} changes latency at runtime
    GET  /_fake/config
    POST /_fake/script  {script}          replaces the script
    GET  /_fake/media_blocks              200 [{"seq", "path", "status", "blocks": [...]}]
                                          requests that carried images or documents
    GET  /_fake/transcriptions            200 [{"seq", "path", "status", "model", "filename",
                                          "content_type", "bytes", "language", "prompt",
                                          "response_format", "authorization": bool}]
    GET  /_fake/transcription             200 {"text", "fail_status", "delay_ms"}
    POST /_fake/transcription {"text"?, "fail_status"?: N|null, "delay_ms"?: N}
                                          changes what transcription answers (kept
                                          across /_fake/reset, like the script)

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

The plumbing shared with fake_twilio.py (recording, failure rules, the common
control endpoints, startup and shutdown) lives in fakelib.py.
"""

import argparse
import base64
import binascii
import copy
import json
import math
import re
import secrets
import string
import sys
import threading
import time

import fakelib
from fakelib import (FailureRules, FakeHandler, is_non_negative_number, parse_json_or_none,
                     parse_multipart)

# Prompts in tests are small; the cap only stops a runaway client.
MAX_REQUEST_BYTES = 32 * 1024 * 1024   # Anthropic's own request limit
ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATH = "/v1/chat/completions"
TRANSCRIPTION_PATHS = ("/v1/audio/transcriptions", "/inference")   # OpenAI, whisper.cpp
ANTHROPIC_ROLES = ("user", "assistant")
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                         402: "billing_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large",
                         429: "rate_limit_error", 500: "api_error",
                         504: "timeout_error", 529: "overloaded_error"}
FALLBACK_DEFAULT = "I can help with that."
DEFAULT_TRANSCRIPT = ("Hi, I sent a photo of the rash on my arm, can a dermatologist "
                      "look at it?")
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ANTHROPIC_IMAGE_LIMIT = 5 * 1024 * 1024       # per image, decoded
OPENAI_IMAGE_LIMIT = 20 * 1024 * 1024
OPENAI_AUDIO_FORMATS = "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"
DATA_URL_RE = re.compile(r"^data:([^;,]+);base64,(.*)$", re.S)
_ALNUM = string.ascii_letters + string.digits


def rand_id(prefix, n=24):
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(n))


def approx_tokens(text):
    # Roughly four characters per token; never zero so clients can sum usage.
    return max(1, math.ceil(len(text) / 4))


# Anthropic's overload status; HTTPStatus has no phrase for it.
EXTRA_PHRASES = {529: "Overloaded"}


def status_phrase(status):
    return fakelib.status_phrase(status, EXTRA_PHRASES)


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
        for kind in ("image", "document"):
            if not isinstance(rule.get(kind, False), bool):
                raise ValueError(f"rules[{i}].{kind} must be a boolean")
        if match is None and (rule.get("image") or rule.get("document")):
            match = []          # matched by the attachment alone
        elif not isinstance(match, list) or not match or \
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


def pick_rule(script, text, kinds=()):
    """First rule whose match strings occur in text, else a default pseudo-rule.

    A rule with "image": true (or "document": true) matches only when the
    last user message carries such a block (kinds); with match strings too,
    one of them must also occur."""
    folded = text.casefold()
    for rule in script["rules"]:
        if any(rule.get(k) and k not in kinds for k in ("image", "document")):
            continue
        if not rule["match"] or any(m in folded for m in rule["match"]):
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


def last_user_kinds(messages):
    """{"image", "document"} present in the last user message's blocks."""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            kinds = set()
            for b in content if isinstance(content, list) else []:
                t = b.get("type") if isinstance(b, dict) else None
                if t in ("image", "image_url"):
                    kinds.add("image")
                elif t in ("document", "file"):
                    kinds.add("document")
            return kinds
    return set()


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


# ---- images and documents in requests -------------------------------------

def sniff(data):
    """The media type the bytes' magic number says, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def b64decode(text):
    """Bytes of a base64 string, or None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def content_blocks(req):
    """(message index, block index, message, block) of every dict block in
    the messages' content arrays; nothing for any other shape."""
    msgs = req.get("messages") if isinstance(req, dict) else None
    if not isinstance(msgs, list):
        return
    for i, msg in enumerate(msgs):
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for j, b in enumerate(content):
            if isinstance(b, dict):
                yield i, j, msg, b


def media_blocks(path, req):
    """Summary of the image / document blocks of a chat request, in order:
    [{"type": "image"|"document", "media_type", "bytes", "source",
      "message": i, "block": j, "role"}]. "bytes" is the decoded size (None
    when the data is not base64 or the source is a URL); tolerant of any shape."""
    out = []
    for i, j, msg, b in content_blocks(req):
        kind, mtype, size, source = None, None, None, None
        if path == ANTHROPIC_PATH and b.get("type") in ("image", "document"):
            kind = b["type"]
            src = b.get("source") if isinstance(b.get("source"), dict) else {}
            source = src.get("type")
            mtype = src.get("media_type")
            if source == "base64":
                data = b64decode(src.get("data"))
                size = None if data is None else len(data)
            elif source == "text" and isinstance(src.get("data"), str):
                size = len(src["data"].encode())
        elif path == OPENAI_PATH and b.get("type") == "image_url":
            kind = "image"
            url = (b.get("image_url") or {}).get("url") if isinstance(b.get("image_url"), dict) \
                else None
            m = DATA_URL_RE.match(url) if isinstance(url, str) else None
            source = "base64" if m else "url"
            if m:
                mtype = m.group(1)
                data = b64decode(m.group(2))
                size = None if data is None else len(data)
        elif path == OPENAI_PATH and b.get("type") == "file":
            kind, source = "document", "base64"
            f = b.get("file") if isinstance(b.get("file"), dict) else {}
            m = DATA_URL_RE.match(f.get("file_data", "")) if isinstance(f.get("file_data"), str) \
                else None
            if m:
                mtype = m.group(1)
                data = b64decode(m.group(2))
                size = None if data is None else len(data)
            else:
                source = "file_id" if f.get("file_id") else None
        if kind:
            out.append({"type": kind, "media_type": mtype, "bytes": size, "source": source,
                        "message": i, "block": j, "role": msg.get("role")})
    return out


def redacted(req):
    """The request for the record: base64 payloads of images and documents
    replaced by "<N base64 chars>" (records stay small; media_blocks has sizes)."""
    out = None
    for i, j, _msg, b in content_blocks(req):
        src = b.get("source") if isinstance(b.get("source"), dict) else None
        iu = b.get("image_url") if isinstance(b.get("image_url"), dict) else None
        fl = b.get("file") if isinstance(b.get("file"), dict) else None
        for holder, key in ((src, "data"), (iu, "url"), (fl, "file_data")):
            v = holder.get(key) if holder else None
            if isinstance(v, str) and len(v) > 256 and (key == "data" or v.startswith("data:")):
                if out is None:
                    out = copy.deepcopy(req)
                target = out["messages"][i]["content"][j]
                target = target["source"] if holder is src else \
                    target["image_url"] if holder is iu else target["file"]
                head = v[:v.index(",") + 1] if v.startswith("data:") and "," in v else ""
                target[key] = "%s<%d base64 chars>" % (head, len(v) - len(head))
    return out if out is not None else req


def check_image_bytes(data, declared, where, limit):
    """Raise BadRequest unless data is an image of the declared type within limit."""
    if declared not in IMAGE_TYPES:
        raise BadRequest(f"{where}.media_type: Input should be 'image/jpeg', 'image/png', "
                         "'image/gif' or 'image/webp'")
    if data is None:
        raise BadRequest(f"{where}.data: invalid base64 data")
    if len(data) > limit:
        raise BadRequest(f"{where}: image exceeds {limit // (1024 * 1024)} MB maximum: "
                         f"{len(data)} bytes > {limit} bytes")
    if sniff(data) != declared:
        raise BadRequest(f"{where}.data: Image does not match the provided media type {declared}")


def validate_anthropic_media(i, j, block):
    kind = block["type"]
    src = block.get("source")
    where = f"messages.{i}.content.{j}.{kind}.source"
    if not isinstance(src, dict) or not isinstance(src.get("type"), str):
        raise BadRequest(f"{where}: Field required")
    if src["type"] == "url":
        if not isinstance(src.get("url"), str) or not src["url"]:
            raise BadRequest(f"{where}.url: Field required")
        return
    if kind == "document" and src["type"] == "text":
        if src.get("media_type") != "text/plain" or not isinstance(src.get("data"), str):
            raise BadRequest(f"{where}.text: media_type must be 'text/plain' with string data")
        return
    if src["type"] != "base64":
        raise BadRequest(f"{where}.type: Input should be 'base64' or 'url'")
    data = b64decode(src.get("data"))
    if kind == "image":
        check_image_bytes(data, src.get("media_type"), f"{where}.base64",
                          ANTHROPIC_IMAGE_LIMIT)
        return
    if src.get("media_type") != "application/pdf":
        raise BadRequest(f"{where}.base64.media_type: Input should be 'application/pdf'")
    if data is None:
        raise BadRequest(f"{where}.base64.data: invalid base64 data")
    if sniff(data) != "application/pdf":
        raise BadRequest(f"{where}.base64.data: The PDF specified was not valid.")


def validate_openai_media(i, j, block):
    where = f"messages[{i}].content[{j}]"
    if block["type"] == "image_url":
        iu = block.get("image_url")
        url = iu.get("url") if isinstance(iu, dict) else None
        if not isinstance(url, str) or not url:
            raise BadRequest(f"Missing required parameter: '{where}.image_url.url'",
                             f"{where}.image_url.url")
        if not url.startswith("data:"):
            return                                   # an http(s) URL: fetched by the provider
        m = DATA_URL_RE.match(url)
        data = b64decode(m.group(2)) if m else None
        if not m or m.group(1) not in IMAGE_TYPES or data is None or sniff(data) != m.group(1) \
                or len(data) > OPENAI_IMAGE_LIMIT:
            raise BadRequest("You uploaded an unsupported image. Please make sure your image "
                             "is below 20 MB in size and is of one the following formats: "
                             "['png', 'jpeg', 'gif', 'webp'].", f"{where}.image_url.url",
                             "invalid_image_format")
    elif block["type"] == "file":
        f = block.get("file")
        fd = f.get("file_data") if isinstance(f, dict) else None
        if isinstance(f, dict) and f.get("file_id") and fd is None:
            return
        m = DATA_URL_RE.match(fd) if isinstance(fd, str) else None
        data = b64decode(m.group(2)) if m else None
        if data is None or sniff(data) != "application/pdf":
            raise BadRequest("Invalid file data: expected a base64 data URL of a PDF",
                             f"{where}.file.file_data", "invalid_file")


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
            if block["type"] in ("image", "document"):
                validate_anthropic_media(i, j, block)
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
    rule = pick_rule(script, last_user_text(req["messages"]), last_user_kinds(req["messages"]))
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
        for j, block in enumerate(content if isinstance(content, list) else []):
            if isinstance(block, dict) and block.get("type") in ("image_url", "file"):
                validate_openai_media(i, j, block)
        if msg["role"] == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise BadRequest(f"Missing required parameter: 'messages[{i}].tool_call_id'",
                             f"messages[{i}].tool_call_id")


def openai_reply(req, script):
    rule = pick_rule(script, last_user_text(req["messages"]), last_user_kinds(req["messages"]))
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


# ---- server ---------------------------------------------------------------

class Response(fakelib.Response):
    # Replies carry the script's text (accents, "–") unescaped, as the real
    # APIs send UTF-8.
    ensure_ascii = False


class LLMHandler(FakeHandler):
    server_version = "FakeLLM/1.0"
    response_class = Response
    max_request_bytes = MAX_REQUEST_BYTES
    extra_phrases = EXTRA_PHRASES
    redacted_headers = ("x-api-key", "authorization")   # keys never reach records
    retry_after_header = "retry-after"   # Anthropic and OpenAI send it lower-case

    # ---- FakeHandler hooks ----------------------------------------------

    def _unreadable_body(self):
        return Response(400, openai_error("unreadable request body"))

    def _start_record(self, path, query, body):
        ctype = self.headers.get("Content-Type", "")
        multipart = ctype.split(";")[0].strip().lower() == "multipart/form-data"
        parsed = parse_json_or_none(body) if body and not multipart else None
        record = {"time": time.time(), "method": self.command, "path": path, "query": query,
                  "headers": self._headers_for_record(), "form": None, "json": redacted(parsed)}
        if path in (ANTHROPIC_PATH, OPENAI_PATH):
            blocks = media_blocks(path, parsed)
            if blocks:
                record["media_blocks"] = blocks
        self._record, self._body = record, body
        # Anthropic puts a request id on every response, errors included.
        request_id = rand_id("req_") if path == ANTHROPIC_PATH else None
        return record, (parsed, request_id)

    def _finish(self, path, resp, ctx):
        _, request_id = ctx
        if resp.status == 200 and path.startswith("/v1/"):
            latency = self.server.latency_ms
            if latency > 0:
                time.sleep(latency / 1000.0)   # per thread: other requests go on
        if request_id:
            resp.headers.setdefault("request-id", request_id)
        elif path == OPENAI_PATH:
            resp.headers.setdefault("x-request-id", rand_id("req_"))

    def _rule_error(self, rule, status, message, path, ctx):
        # Status-only rules answer in the provider's error shape.
        if path == ANTHROPIC_PATH:
            return anthropic_error(status, message, rule.get("error_type"), ctx[1])
        return openai_error_for_status(status, message, rule.get("error_type"),
                                       rule.get("code"))

    def _sample_answer(self, path, ctx):
        """A valid answer for this request if it is well formed, else a stock one."""
        parsed = ctx[0]
        script = self.server.script
        if path in TRANSCRIPTION_PATHS:
            return {"text": self.server.transcription["text"]}
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

    def _route(self, path, ctx):
        parsed, request_id = ctx
        if path in TRANSCRIPTION_PATHS:
            if self.command != "POST":
                return Response(405, openai_error_for_status(405, "Method not allowed"),
                                headers={"Allow": "POST"})
            return self._transcribe()
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

    # ---- the two APIs ---------------------------------------------------

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
            code = e.args[2] if len(e.args) > 2 else None
            return Response(400, openai_error(e.args[0], "invalid_request_error", param, code))
        return Response(200, openai_reply(parsed, self.server.script))

    def _transcribe(self):
        """OpenAI's POST /v1/audio/transcriptions (also whisper.cpp's server):
        multipart/form-data with file and model; answers the configured text."""
        key = self.server.api_key
        try:
            parts, bad = parse_multipart(self._body, self.headers.get("Content-Type", "")), None
        except ValueError as e:
            parts, bad = [], str(e)
        fields = {p["name"]: p for p in parts if p["name"]}
        f = fields.get("file")
        call = {"model": None, "filename": None, "content_type": None, "bytes": None,
                "language": None, "prompt": None, "response_format": None}
        for name in ("model", "language", "prompt", "response_format"):
            if name in fields:
                call[name] = fields[name]["data"].decode("utf-8", "replace")
        if f is not None:
            call.update(filename=f["filename"], content_type=f["content_type"],
                        bytes=len(f["data"]))
        self._record["transcription"] = call     # recorded whatever the answer
        if key and self.headers.get("Authorization", "") != f"Bearer {key}":
            return Response(401, openai_error("Incorrect API key provided",
                                              "invalid_request_error", None, "invalid_api_key"))
        if bad:
            return Response(400, openai_error(f"Invalid request: {bad}", "invalid_request_error"))
        if f is None or f["filename"] is None:
            return Response(400, openai_error("Missing required parameter: 'file'.",
                                              "invalid_request_error", "file"))
        if not call["model"]:
            return Response(400, openai_error("you must provide a model parameter",
                                              "invalid_request_error", "model"))
        if not f["data"].startswith(b"OggS"):
            return Response(400, openai_error(
                f"Invalid file format. Supported formats: {OPENAI_AUDIO_FORMATS}",
                "invalid_request_error", None))
        conf = self.server.transcription
        if conf.get("delay_ms"):
            time.sleep(conf["delay_ms"] / 1000.0)
        if conf.get("fail_status"):
            st = conf["fail_status"]
            return Response(st, openai_error_for_status(st))
        fmt = call["response_format"] or "json"
        text = conf["text"]
        if fmt == "text":
            return Response(200, None, raw=text + "\n", content_type="text/plain; charset=utf-8")
        if fmt == "verbose_json":
            return Response(200, {"task": "transcribe", "language": call["language"] or "english",
                                  "duration": 1.0, "text": text,
                                  "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": 1.0,
                                                "text": text, "tokens": [], "temperature": 0.0,
                                                "avg_logprob": -0.2, "compression_ratio": 1.0,
                                                "no_speech_prob": 0.01}]})
        if fmt != "json":
            return Response(400, openai_error(
                f"Invalid value for 'response_format': {fmt!r}; this fake serves json, "
                "text and verbose_json", "invalid_request_error", "response_format"))
        return Response(200, {"text": text})

    # ---- control API: healthz, requests, reset and fail come from FakeHandler

    def _control_routes(self):
        routes = super()._control_routes()
        routes.update({("GET", "/_fake/config"): self._ctl_get_config,
                       ("POST", "/_fake/config"): self._ctl_set_config,
                       ("POST", "/_fake/script"): self._ctl_set_script,
                       ("GET", "/_fake/media_blocks"): self._ctl_media_blocks,
                       ("GET", "/_fake/transcriptions"): self._ctl_transcriptions,
                       ("GET", "/_fake/transcription"): self._ctl_get_transcription,
                       ("POST", "/_fake/transcription"): self._ctl_set_transcription})
        return routes

    def _ctl_media_blocks(self, query, body):
        out = [{"seq": r["seq"], "path": r["path"], "status": r.get("status"),
                "blocks": r["media_blocks"]}
               for r in self.server.recorder.list() if r.get("media_blocks")]
        return Response(200, out)

    def _ctl_transcriptions(self, query, body):
        out = [dict(r["transcription"], seq=r["seq"], path=r["path"], status=r.get("status"),
                    authorization=bool(r["headers"].get("authorization")))
               for r in self.server.recorder.list() if r.get("transcription")]
        return Response(200, out)

    def _ctl_get_transcription(self, query, body):
        return Response(200, dict(self.server.transcription))

    def _ctl_set_transcription(self, query, body):
        obj, err = self._control_json(body)
        if err:
            return err
        if not isinstance(obj, dict):
            return Response(400, {"error": "body must be a JSON object"})
        conf = dict(self.server.transcription)
        conf.update(obj)
        if not isinstance(conf.get("text"), str):
            return Response(400, {"error": "text must be a string"})
        fs = conf.get("fail_status")
        if fs is not None and (not isinstance(fs, int) or isinstance(fs, bool)
                               or not 400 <= fs <= 599):
            return Response(400, {"error": "fail_status must be null or an integer 400..599"})
        if not is_non_negative_number(conf.get("delay_ms", 0)):
            return Response(400, {"error": "delay_ms must be a non-negative number"})
        unknown = set(conf) - {"text", "fail_status", "delay_ms"}
        if unknown:
            return Response(400, {"error": f"unknown keys {sorted(unknown)}"})
        self.server.transcription = conf
        return Response(200, conf)

    def _ctl_get_config(self, query, body):
        return Response(200, {"latency_ms": self.server.latency_ms})

    def _ctl_set_config(self, query, body):
        obj, err = self._control_json(body)
        if err:
            return err
        latency = obj.get("latency_ms") if isinstance(obj, dict) else None
        if not is_non_negative_number(latency):
            return Response(400, {"error": "latency_ms must be a non-negative number"})
        self.server.latency_ms = latency   # a plain attribute swap is atomic under the GIL
        return Response(200, {"latency_ms": latency})

    def _ctl_set_script(self, query, body):
        obj, err = self._control_json(body)
        if err:
            return err
        try:
            self.server.script = load_script(obj)
        except ValueError as e:
            return Response(400, {"error": f"bad script: {e}"})
        return Response(200, {"rules": len(self.server.script["rules"])})


def main():
    ap = argparse.ArgumentParser(description="Fake Anthropic / OpenAI-compatible LLM API")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--script", required=True, metavar="FILE.json")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--api-key", default="sandbox-key",
                    help="expected key; empty string disables the check")
    ap.add_argument("--record", metavar="FILE", help="append each record as a JSON line")
    ap.add_argument("--transcript", default=DEFAULT_TRANSCRIPT,
                    help="what POST /v1/audio/transcriptions answers")
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
    server = fakelib.open_server("fake_llm", args.bind, args.port, LLMHandler,
                                 args.record, FailureRules())
    if server is None:
        return 2
    server.script = script
    # Keep "500" rather than "500.0" in /_fake/config answers.
    server.latency_ms = int(args.latency_ms) if args.latency_ms.is_integer() else args.latency_ms
    server.api_key = args.api_key
    server.transcription = {"text": args.transcript, "fail_status": None, "delay_ms": 0}
    fakelib.serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
