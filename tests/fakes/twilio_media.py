"""Media for fake_twilio.py: what customers send (Messaging media) and what
baton uploads for Flex (the Media Content Service, MCS).

Messaging media: an inbound WhatsApp message with media carries MediaUrlN =
{api base}/2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media/{MediaSid};
a GET of it (HTTP basic auth with the account's credentials, as when "HTTP
basic authentication for media" is on in the Console) answers the bytes
with their Content-Type; .../Media/{MediaSid}.json answers the Media
subresource's JSON. The MessageSid in the path is not checked (tests invent
it). Preloaded media (PRELOADED below; MEDIA_* names):

    ME00000000000000000000000000000001  image/jpeg  tests/fixtures/media/rash.jpg
    ME00000000000000000000000000000002  audio/ogg   tests/fixtures/media/voice.ogg
    ME00000000000000000000000000000003  application/pdf  tests/fixtures/media/exam.pdf
    ME00000000000000000000000000000004  missing: 404 (code 20404), like any unknown SID
    ME00000000000000000000000000000005  slow: rash.jpg after slow_ms (default 10000)
    ME00000000000000000000000000000006  oversized: image/jpeg, 6 MiB (JPEG magic, zeros)
    ME00000000000000000000000000000007  lying: Content-Type image/jpeg, an HTML page
    ME00000000000000000000000000000008  corrupt: Content-Type audio/ogg, garbage bytes
    ME00000000000000000000000000000009  redirect: 307 to /cdn/{sid} (no auth there) serving
                                        rash.jpg, as real Twilio redirects to its media host

With media_config {"redirect": true} every media GET answers 307 like that.

MCS (on mcs.us1.twilio.com in production; here the same server):
    POST /v1/Services/{ChatServiceSid}/Media     raw bytes, Content-Type = the media's;
        or multipart/form-data with one file part (its Content-Type and filename).
        Optional ?Filename= (or ?filename=). 201 with the Media resource.
        Empty body, or no Content-Type: 400 (20001). Unknown service: 404 (20404).
    GET  /v1/Services/{ChatServiceSid}/Media/{MediaSid}          200 the resource
    GET  /v1/Services/{ChatServiceSid}/Media/{MediaSid}/Content  200 the bytes
All need basic auth (401, 20003). The resource (what mcs.us1 answers):
    {"sid": "ME..", "account_sid", "service_sid", "date_created",
     "date_upload_updated", "date_updated", "links": {"content":
     "/v1/Services/IS../Media/ME../Content", "content_direct_temporary":
     "http://HOST/cdn/ME..?Expires=..."}, "size", "content_type", "filename",
     "author": "system", "category": "media", "message_sid", "channel_sid",
     "url": "/v1/Services/IS../Media/ME..", "is_multipart_upstream": false}
message_sid and channel_sid are null until a Conversations message attaches it.
A MediaSid can be attached to one message only (a second: 400, 50508); one
never uploaded to the conversation's service: 400, 50510.

GET /cdn/{MediaSid} serves Messaging or MCS media without auth (the
temporary, pre-signed URL stand-in).
"""

import base64
import hashlib
import os
import re
import threading
import time
import urllib.parse

from fakelib import iso_now, rfc2822_now, twilio_error, twilio_sid

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "media")

MEDIA_JPEG = "ME" + "0" * 31 + "1"
MEDIA_OGG = "ME" + "0" * 31 + "2"
MEDIA_PDF = "ME" + "0" * 31 + "3"
MEDIA_MISSING = "ME" + "0" * 31 + "4"
MEDIA_SLOW = "ME" + "0" * 31 + "5"
MEDIA_OVERSIZED = "ME" + "0" * 31 + "6"
MEDIA_LYING = "ME" + "0" * 31 + "7"
MEDIA_CORRUPT_OGG = "ME" + "0" * 31 + "8"
MEDIA_REDIRECT = "ME" + "0" * 31 + "9"

OVERSIZED_BYTES = 6 * 1024 * 1024
DEFAULT_SLOW_MS = 10000

MESSAGING_RE = re.compile(
    r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)/Media/([^/.]+)(\.json)?$")
MCS_RE = re.compile(r"^/v1/Services/([^/]+)/Media(?:/([^/]+)(/Content)?)?$")
CDN_RE = re.compile(r"^/cdn/([^/]+)$")
SID_RE = re.compile(r"^ME[0-9a-fA-F]{32}$")

LYING_BODY = (b"<!DOCTYPE html>\n<html><head><title>Login</title></head>"
              b"<body><h1>Please sign in</h1><p>This is not a JPEG.</p></body></html>\n")
CORRUPT_OGG_BODY = bytes((i * 37 + 11) % 251 for i in range(2048))


def _fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def _oversized():
    return b"\xff\xd8\xff\xe0" + bytes(OVERSIZED_BYTES - 4)


def preloaded():
    """{sid: entry} of the preloaded Messaging media (bytes may be a callable)."""
    jpeg = _fixture("rash.jpg")
    return {
        MEDIA_JPEG: {"content_type": "image/jpeg", "data": jpeg, "filename": "rash.jpg"},
        MEDIA_OGG: {"content_type": "audio/ogg", "data": _fixture("voice.ogg"),
                    "filename": "voice.ogg"},
        MEDIA_PDF: {"content_type": "application/pdf", "data": _fixture("exam.pdf"),
                    "filename": "exam.pdf"},
        MEDIA_SLOW: {"content_type": "image/jpeg", "data": jpeg, "filename": "rash.jpg",
                     "slow": True},
        MEDIA_OVERSIZED: {"content_type": "image/jpeg", "data": _oversized,
                          "size": OVERSIZED_BYTES, "filename": "huge.jpg"},
        MEDIA_LYING: {"content_type": "image/jpeg", "data": LYING_BODY, "filename": "photo.jpg"},
        MEDIA_CORRUPT_OGG: {"content_type": "audio/ogg", "data": CORRUPT_OGG_BODY,
                            "filename": "voice.ogg"},
        MEDIA_REDIRECT: {"content_type": "image/jpeg", "data": jpeg, "filename": "rash.jpg",
                         "redirect": True},
    }


def _size(entry):
    return entry.get("size", len(entry["data"]) if isinstance(entry["data"], bytes) else 0)


def _bytes(entry):
    d = entry["data"]
    return d() if callable(d) else d


class MediaStore:
    """Messaging media and MCS uploads of one fake server."""

    def __init__(self, account_sid, chat_service_sid, slow_ms=DEFAULT_SLOW_MS):
        self.account_sid = account_sid
        self.chat_service_sid = chat_service_sid
        self._lock = threading.Lock()
        self._start_slow_ms = slow_ms
        self._base = preloaded()
        self.reset()

    def reset(self):
        with self._lock:
            self.media = dict(self._base)      # Messaging media by SID
            self.mcs = {}                      # MCS uploads by SID, upload order
            self.config = {"slow_ms": self._start_slow_ms, "redirect": False}

    # ---- control API ------------------------------------------------------

    def control(self, method, path, query, body, json_body):
        """(status, payload) for /_fake/media*, or None when not ours."""
        if path == "/_fake/media" and method == "GET":
            with self._lock:
                return 200, [self._describe(sid, e) for sid, e in self.media.items()]
        if path == "/_fake/media" and method == "POST":
            return self._add(json_body)
        if path == "/_fake/media_config" and method == "GET":
            with self._lock:
                return 200, dict(self.config)
        if path == "/_fake/media_config" and method == "POST":
            return self._configure(json_body)
        if path == "/_fake/mcs" and method == "GET":
            q = urllib.parse.parse_qs(query)
            content = q.get("content", ["0"])[0] not in ("0", "", "false")
            with self._lock:
                out = []
                for sid, e in self.mcs.items():
                    item = {"sid": sid, "service_sid": e["service_sid"],
                            "content_type": e["content_type"], "filename": e["filename"],
                            "size": len(e["data"]), "sha256": hashlib.sha256(e["data"]).hexdigest(),
                            "message_sid": e["message_sid"], "channel_sid": e["channel_sid"],
                            "date_created": e["date_created"]}
                    if content:
                        item["content_b64"] = base64.b64encode(e["data"]).decode()
                    out.append(item)
                return 200, out
        return None

    @staticmethod
    def _describe(sid, e):
        return {"sid": sid, "content_type": e["content_type"], "size": _size(e),
                "filename": e.get("filename"), "status": e.get("status", 200),
                "delay_ms": e.get("delay_ms", 0), "slow": bool(e.get("slow")),
                "redirect": bool(e.get("redirect"))}

    def _add(self, obj):
        if not isinstance(obj, dict):
            return 400, {"error": "body must be a JSON object"}
        sid = obj.get("sid") or twilio_sid("ME")
        if not isinstance(sid, str) or not SID_RE.match(sid):
            return 400, {"error": "sid must be ME + 32 hex digits"}
        ctype = obj.get("content_type")
        if not isinstance(ctype, str) or not ctype:
            return 400, {"error": "content_type is required"}
        try:
            data = base64.b64decode(obj.get("data_b64", ""), validate=True)
        except (ValueError, TypeError):
            return 400, {"error": "data_b64 must be base64"}
        status = obj.get("status", 200)
        delay = obj.get("delay_ms", 0)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            return 400, {"error": "status must be an integer 100..599"}
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            return 400, {"error": "delay_ms must be a non-negative number"}
        redirect = obj.get("redirect", False)
        if not isinstance(redirect, (bool, str)):
            return 400, {"error": "redirect must be a boolean or the host:port to redirect to"}
        entry = {"content_type": ctype, "data": data, "filename": obj.get("filename"),
                 "status": status, "delay_ms": delay, "redirect": redirect}
        with self._lock:
            self.media[sid] = entry
        return 200, self._describe(sid, entry)

    def _configure(self, obj):
        if not isinstance(obj, dict):
            return 400, {"error": "body must be a JSON object"}
        slow = obj.get("slow_ms", self.config["slow_ms"])
        redirect = obj.get("redirect", self.config["redirect"])
        if not isinstance(slow, (int, float)) or isinstance(slow, bool) or slow < 0:
            return 400, {"error": "slow_ms must be a non-negative number"}
        if not isinstance(redirect, bool):
            return 400, {"error": "redirect must be a boolean"}
        with self._lock:
            self.config = {"slow_ms": slow, "redirect": redirect}
            return 200, dict(self.config)

    # ---- Messaging media --------------------------------------------------

    def messaging(self, m, auth_ok, host, record):
        """GET of a MediaUrl: (status, payload or None, raw or None, content_type, headers)."""
        account, message_sid, sid, as_json = m.group(1), m.group(2), m.group(3), m.group(4)
        record["media_sid"] = sid
        if not auth_ok or account != self.account_sid:
            return 401, twilio_error(401, 20003, "Authenticate"), None, None, {}
        with self._lock:
            entry = self.media.get(sid)
            config = dict(self.config)
        if entry is None:
            return 404, twilio_error(404, 20404, f"The requested resource "
                                     f"/2010-04-01/Accounts/{account}/Messages/{message_sid}"
                                     f"/Media/{sid} was not found"), None, None, {}
        if as_json:
            base = f"/2010-04-01/Accounts/{account}/Messages/{message_sid}/Media/{sid}"
            now = rfc2822_now()
            return 200, {"sid": sid, "account_sid": account, "parent_sid": message_sid,
                         "content_type": entry["content_type"], "date_created": now,
                         "date_updated": now, "uri": base + ".json"}, None, None, {}
        delay = entry.get("delay_ms", 0) / 1000.0
        if entry.get("slow"):
            delay = max(delay, config["slow_ms"] / 1000.0)
        if delay:
            time.sleep(delay)
        status = entry.get("status", 200)
        if status != 200:
            return status, twilio_error(status, 20404 if status == 404 else status,
                                        f"media {sid} answers {status}"), None, None, {}
        if entry.get("redirect") or config["redirect"]:
            # redirect may name another host:port (a storage host not on the list).
            to = entry["redirect"] if isinstance(entry.get("redirect"), str) else host
            location = f"http://{to}/cdn/{sid}?Expires={int(time.time()) + 300}&Signature=fake"
            record["redirect"] = location
            return 307, None, b"", "text/plain", {"Location": location}
        data = _bytes(entry)
        record["media_bytes"] = len(data)
        return 200, None, data, entry["content_type"], {}

    def cdn(self, sid, record):
        """GET /cdn/{sid}: no auth, Messaging or MCS media."""
        record["media_sid"] = sid
        with self._lock:
            entry = self.media.get(sid) or self.mcs.get(sid)
        if entry is None:
            return 404, {"message": "Not Found"}, None, None, {}
        data = _bytes(entry)
        record["media_bytes"] = len(data)
        return 200, None, data, entry["content_type"], {}

    # ---- MCS --------------------------------------------------------------

    def mcs_route(self, method, m, query, ctype_header, body, auth_ok, host, record,
                  multipart_parser):
        service, sid, content = m.group(1), m.group(2), m.group(3)
        if not auth_ok:
            return 401, twilio_error(401, 20003, "Authenticate"), None, None, {}
        if service != self.chat_service_sid:
            return 404, twilio_error(404, 20404, f"Service {service} not found"), None, None, {}
        if sid is None:
            if method != "POST":
                return 405, twilio_error(405, 20004, "Method not allowed"), None, None, \
                    {"Allow": "POST"}
            return self._upload(service, query, ctype_header, body, host, record,
                                multipart_parser)
        if method != "GET":
            return 405, twilio_error(405, 20004, "Method not allowed"), None, None, \
                {"Allow": "GET"}
        record["media_sid"] = sid
        with self._lock:
            entry = self.mcs.get(sid)
            if entry is None or entry["service_sid"] != service:
                return 404, twilio_error(404, 50507, f"Media {sid} not found"), None, None, {}
            if content:
                return 200, None, entry["data"], entry["content_type"], {}
            return 200, self._mcs_resource(sid, entry, host), None, None, {}

    def _upload(self, service, query, ctype_header, body, host, record, multipart_parser):
        q = urllib.parse.parse_qs(query)
        filename = (q.get("Filename") or q.get("filename") or [None])[0]
        ctype = ctype_header.split(";")[0].strip().lower()
        data = body
        if ctype == "multipart/form-data":
            try:
                parts = [p for p in multipart_parser(body, ctype_header) if p["filename"] is not None
                         or p["content_type"]]
            except ValueError as e:
                return 400, twilio_error(400, 20001, str(e)), None, None, {}
            if len(parts) != 1:
                return 400, twilio_error(400, 20001, "multipart upload needs exactly one file "
                                         "part"), None, None, {}
            data, ctype = parts[0]["data"], (parts[0]["content_type"] or "").split(";")[0].strip()
            filename = parts[0]["filename"] or filename
        if not ctype:
            return 400, twilio_error(400, 20001, "Content-Type header is required"), None, None, {}
        if not data:
            return 400, twilio_error(400, 20001, "Media content is empty"), None, None, {}
        sid = twilio_sid("ME")
        now = iso_now()
        entry = {"service_sid": service, "content_type": ctype, "filename": filename,
                 "data": data, "date_created": now, "date_updated": now,
                 "message_sid": None, "channel_sid": None}
        with self._lock:
            self.mcs[sid] = entry
        record.update(media_sid=sid, media_bytes=len(data), media_content_type=ctype,
                      media_filename=filename)
        return 201, self._mcs_resource(sid, entry, host), None, None, {}

    def _mcs_resource(self, sid, e, host):
        url = f"/v1/Services/{e['service_sid']}/Media/{sid}"
        return {"sid": sid, "account_sid": self.account_sid, "service_sid": e["service_sid"],
                "date_created": e["date_created"], "date_upload_updated": e["date_created"],
                "date_updated": e["date_updated"],
                "links": {"content": url + "/Content",
                          "content_direct_temporary":
                              f"http://{host}/cdn/{sid}?Expires={int(time.time()) + 300}"
                              "&Signature=fake"},
                "size": len(e["data"]), "content_type": e["content_type"],
                "filename": e["filename"], "author": "system", "category": "media",
                "message_sid": e["message_sid"], "channel_sid": e["channel_sid"],
                "url": url, "is_multipart_upstream": False}

    # ---- Conversations messages -------------------------------------------

    def attach(self, sid, service, channel_sid, message_sid):
        """The media entry of a Conversations message ({sid, content_type,
        filename, size}), or an error (status, code, message)."""
        with self._lock:
            e = self.mcs.get(sid)
            if e is None or e["service_sid"] != service:
                return None, (400, 50510, f"Invalid message media SID {sid}: not uploaded to "
                              f"service {service}")
            if e["message_sid"] is not None:
                return None, (400, 50508, f"Media {sid} already sent with another message")
            e["message_sid"], e["channel_sid"] = message_sid, channel_sid
            e["date_updated"] = iso_now()
            return {"sid": sid, "content_type": e["content_type"], "filename": e["filename"],
                    "size": len(e["data"])}, None
