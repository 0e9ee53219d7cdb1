#!/usr/bin/env python3
"""make sandbox: baton on loopback with the fakes, and a page to talk to it.

Starts the fake Twilio (with its simulated WhatsApp customer and Flex
agent), the fake LLM and the five baton processes in sandbox mode, like the
demo and the tests, then serves a page on 127.0.0.1 with three panes:

  - the customer's phone: what you type is a signed Twilio webhook into
    ingress (or, once an agent has the customer, a message in the Flex
    conversation: the fake routes it as Twilio does);
  - the Flex agent: tasks appear when baton hands over; accept, reply,
    close (the fake sends TaskRouter and Conversations webhooks back);
  - inside baton: the conversation's mode, its timeline, the LLM requests.

    scripts/sandbox.py [--port 8765] [--customer whatsapp:+5511988887777] [--name Ana]

Ctrl-C (or SIGTERM) stops everything. The page and its API are loopback
only; nothing here talks to the internet.
"""

import argparse
import http.server
import json
import secrets
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from baton_harness import Pipeline  # noqa: E402

PAGE = os.path.join(ROOT, "sandbox")
FILES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/index.html": ("index.html", "text/html; charset=utf-8"),
         "/sandbox.css": ("sandbox.css", "text/css; charset=utf-8"),
         "/sandbox.js": ("sandbox.js", "text/javascript; charset=utf-8")}
AGENT = "Marta"


class Sandbox:
    def __init__(self, customer, name):
        self.customer, self.name = customer, name
        self.sent = []   # what the customer typed: {"time", "body"}
        self.lock = threading.Lock()
        # The operator console runs beside it, with a token made for this run.
        self.console_token = secrets.token_urlsafe(18)
        self.p = Pipeline(env={"BATON_CONSOLE_TOKEN": self.console_token})
        self.p.start_all()
        # The agent waits for you: no automatic accept, greeting or replies.
        self.p.agent(identity=AGENT, accept_after_ms=None, greeting=None, replies=[])

    def close(self):
        self.p.close()

    def state(self):
        p = self.p
        chat = [{"time": m["time"], "body": m["body"], "from_customer": False,
                 "who": m.get("author") if m.get("via") == "conversation" else "baton"}
                for m in p.whatsapp(self.customer)]
        with self.lock:
            chat += [dict(m, from_customer=True) for m in self.sent]
        chat.sort(key=lambda m: m["time"])
        show = {}
        rc, out, _ = p.ctl("--json", "show", self.customer)
        if rc == 0:
            show = json.loads(out)
        llm = []
        for r in p.llm_requests():
            msgs = (r.get("json") or {}).get("messages") or []
            users = [m for m in msgs if m.get("role") == "user"]
            last = users[-1].get("content") if users else ""
            if isinstance(last, list):
                last = " ".join(b.get("text", "") for b in last if isinstance(b, dict))
            last = str(last).splitlines()[-1] if last else ""
            llm.append({"time": r.get("time", 0), "messages": len(msgs),
                        "last": last[:120]})
        tasks = [t for t in p.fake_get("twilio", "/_fake/agent/sessions")
                 if t.get("customer") == self.customer]
        return {"customer": self.customer, "agent": AGENT, "chat": chat,
                "mode": show.get("mode"), "timeline": show.get("timeline", []),
                "llm": llm, "tasks": tasks}

    def say(self, text):
        with self.lock:
            self.sent.append({"time": time.time(), "body": text})
        self.p.customer(self.customer, text, name=self.name)

    def agent(self, obj):
        return self.p.fake_post("twilio", "/_fake/agent/act", obj)


def handler_for(sb):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "baton-sandbox"

        def log_message(self, fmt, *args):  # noqa: A002 - stdlib signature
            pass

        def reply(self, status, obj=None, raw=None, ctype="application/json"):
            body = raw if raw is not None else json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path in FILES:
                name, ctype = FILES[path]
                with open(os.path.join(PAGE, name), "rb") as f:
                    return self.reply(200, raw=f.read(), ctype=ctype)
            if path == "/api/state":
                try:
                    return self.reply(200, sb.state())
                except Exception as e:  # a fake restarting: the page polls again
                    return self.reply(503, {"error": str(e)})
            return self.reply(404, {"error": "not found"})

        def do_POST(self):
            path = urllib.parse.urlsplit(self.path).path
            n = int(self.headers.get("Content-Length") or 0)
            try:
                obj = json.loads(self.rfile.read(min(n, 65536)) or b"{}")
            except ValueError:
                return self.reply(400, {"error": "JSON body expected"})
            if not isinstance(obj, dict):
                return self.reply(400, {"error": "JSON object expected"})
            try:
                if path == "/api/customer":
                    text = str(obj.get("text", "")).strip()
                    if not text:
                        return self.reply(400, {"error": "text is required"})
                    sb.say(text)
                    return self.reply(200, {"ok": True})
                if path == "/api/agent":
                    return self.reply(200, sb.agent(obj))
            except AssertionError as e:   # the fake said no (e.g. the task is not active)
                return self.reply(409, {"error": str(e)[:300]})
            return self.reply(404, {"error": "not found"})
    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--customer", default="whatsapp:+5511988887777")
    ap.add_argument("--name", default="Ana")
    a = ap.parse_args()
    sb = Sandbox(a.customer, a.name)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), handler_for(sb))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("baton sandbox: http://127.0.0.1:%d/  (state in %s; Ctrl-C stops everything)"
          % (httpd.server_address[1], sb.p.dir), flush=True)
    print("operator console: http://127.0.0.1:%d/console  (token %s)"
          % (sb.p.console_port, sb.console_token), flush=True)
    try:
        stop.wait()
    finally:
        httpd.shutdown()
        sb.close()
        print("baton sandbox: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
