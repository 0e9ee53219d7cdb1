"""Secure by default: hostile HTTP traffic, forged or replayed webhooks,
planted capture files and unauthenticated ZeroMQ peers get nowhere."""

import http.client
import os
import resource
import socket
import threading
import time
import unittest

from baton_harness import ACCOUNT_SID, Pipeline, twilio_signature, PUBLIC_URL, AUTH_TOKEN

ANA = "whatsapp:+5511988887777"


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class SlowLoris:
    """One address holding as many connections as it can, each sending a
    header line every few seconds and never finishing its request."""

    def __init__(self, port, count):
        self.port, self.count = port, count
        self.socks, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        for _ in range(self.count):
            if self.stop.is_set():
                return
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                s.setblocking(False)
                s.send(b"POST /twilio/messages HTTP/1.1\r\nHost: bot\r\n")
                self.socks.append(s)
            except OSError:
                pass
        while not self.stop.wait(2.0):
            for s in list(self.socks):
                try:
                    s.send(b"X-Slow: 1\r\n")
                except OSError:
                    self.socks.remove(s)
                    s.close()

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.stop.set()
        self.thread.join(10)
        for s in self.socks:
            s.close()


class TestSlowClients(unittest.TestCase):
    def test_4200_slow_connections_from_one_address_do_not_starve_others(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < 5000:
            self.skipTest("needs a hard open-files limit of 5000 (%d)" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 5000), hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        p = Pipeline(env={"BATON_LOG_LEVEL": "info"})
        self.addCleanup(p.close)
        p.start_fakes()
        for name in ("router", "ai-worker", "egress", "flex-worker"):
            p.start(name)
        p.start("ingress", nofile=1024)   # what a systemd service gets by default
        p.wait_workers(1)
        loris = SlowLoris(p.ingress_port, 4200).start()
        self.addCleanup(loris.close)
        time.sleep(3)   # let it open what it can
        lat, statuses = [], []
        deadline = time.monotonic() + 8
        n = 0
        while time.monotonic() < deadline:
            n += 1
            c = http.client.HTTPConnection("127.0.0.1", p.ingress_port, timeout=5,
                                           source_address=("127.0.0.2", 0))
            t0 = time.monotonic()
            try:
                if n % 2:
                    c.request("GET", "/healthz")
                else:
                    params = p.webhook_params("whatsapp:+55219%07d" % n, "Hello %d" % n)
                    body = "&".join("%s=%s" % (k, http.client.parse_headers and
                                               __import__("urllib.parse").parse.quote_plus(v))
                                    for k, v in params)
                    sig = twilio_signature(AUTH_TOKEN, PUBLIC_URL + "/twilio/messages", params)
                    c.request("POST", "/twilio/messages", body,
                              {"Content-Type": "application/x-www-form-urlencoded",
                               "X-Twilio-Signature": sig})
                statuses.append(c.getresponse().status)
            except OSError as e:
                statuses.append(str(e))
            lat.append(time.monotonic() - t0)
            c.close()
            time.sleep(0.05)
        self.assertEqual(set(statuses), {200}, statuses[:20])
        self.assertLess(percentile(lat, 0.99), 0.1, "p99 %.3f s" % percentile(lat, 0.99))
        log = p.log_text("ingress")
        self.assertNotIn("Too many open files", log)
        self.assertIn("open files limit", log)


def raw_http(port, data, timeout=5):
    """Sends raw bytes; returns the status line's code (or None if closed without one)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return None
            buf += chunk
        return int(buf.split(b" ")[1])
    finally:
        s.close()


class TestHttpFraming(unittest.TestCase):
    def setUp(self):
        self.p = Pipeline(env={"BATON_HTTP_HEAD_TIMEOUT_S": "2"})
        self.addCleanup(self.p.close)
        self.p.start_all()

    def test_ambiguous_body_lengths_are_400(self):
        port = self.p.ingress_port
        body = b"a=1"
        twice = (b"POST /twilio/messages HTTP/1.1\r\nHost: bot\r\nContent-Type: "
                 b"application/x-www-form-urlencoded\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\n"
                 + body)
        self.assertEqual(raw_http(port, twice), 400)
        both = (b"POST /twilio/messages HTTP/1.1\r\nHost: bot\r\nContent-Type: "
                b"application/x-www-form-urlencoded\r\nContent-Length: 3\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n")
        self.assertEqual(raw_http(port, both), 400)
        odd = (b"POST /twilio/messages HTTP/1.1\r\nHost: bot\r\nTransfer-Encoding: gzip, chunked\r\n"
               b"\r\n3\r\na=1\r\n0\r\n\r\n")
        self.assertIn(raw_http(port, odd), (400, 501))
        self.assertIn("ambiguous body length", self.p.log_text("ingress"))

    def test_a_head_sent_a_line_at_a_time_is_cut_at_the_deadline(self):
        s = socket.create_connection(("127.0.0.1", self.p.ingress_port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n")
        t0 = time.monotonic()
        closed = None
        while time.monotonic() - t0 < 8:
            try:
                s.sendall(b"X-Slow: 1\r\n")
                s.settimeout(0.5)
                if s.recv(1) == b"":
                    closed = time.monotonic() - t0
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = time.monotonic() - t0
                break
        self.assertIsNotNone(closed, "the connection outlived its head deadline")
        self.assertLess(closed, 4.0)


class TestReplayedWebhook(unittest.TestCase):
    """A captured signed webhook with text moved across a name/value boundary
    keeps a valid signature; it must not become a second message."""

    def test_moved_boundaries_get_no_second_answer(self):
        p = Pipeline()
        self.addCleanup(p.close)
        p.start_all()
        params = p.webhook_params(ANA, "Where is the clinic?")
        st, _, _ = p.post_webhook(params)
        self.assertEqual(st, 200)
        sig = twilio_signature(AUTH_TOKEN, PUBLIC_URL + "/twilio/messages", params)
        d = dict(params)
        sid = d["MessageSid"]

        def moved(absorb):
            out = [(k, v) for k, v in params if k not in absorb]
            extra = "".join(k + d[k] for k in absorb)
            return [(k, v + extra if k == "MessageSid" else v) for k, v in out]
        for absorb in (["MessageType"], ["MessageType", "NumMedia"]):
            forged = moved(absorb)
            self.assertEqual(twilio_signature(AUTH_TOKEN, PUBLIC_URL + "/twilio/messages", forged),
                             sig, "the attack keeps the signature")
            st, _, _ = p.post_webhook(forged, signature=sig)
            self.assertEqual(st, 400)
        time.sleep(1)
        self.assertEqual(len(p.sent_messages(ANA)), 1)
        self.assertIn("MessageSid is not SM or MM", p.log_text("ingress"))
        self.assertTrue(sid)

    def test_another_accounts_webhook_is_403(self):
        p = Pipeline()
        self.addCleanup(p.close)
        p.start_all()
        params = [(k, "AC" + "7" * 32 if k == "AccountSid" else v)
                  for k, v in p.webhook_params(ANA, "hello")]
        self.assertEqual(p.post_webhook(params)[0], 403)
