"""GET /metrics: Prometheus text format 0.0.4 from every process, through ingress.

Each process writes its registry to STATE_DIR/metrics every
metrics.interval_ms; ingress serves its own registry merged with the fresh
files. A strict little parser checks the format (each family's TYPE once,
every sample under its family, histogram buckets cumulative and ending in
+Inf equal to _count, no duplicate series); the counters must match the
traffic the test made; secrets never appear; metrics.token guards it.
"""

import os
import re
import signal
import unittest

from baton_harness import ADMIN_TOKEN, AUTH_TOKEN, LLM_KEY, Pipeline, http, wait_for

ANA = "whatsapp:+5511988887777"
BRUNO = "whatsapp:+5511977776666"
PROCESSES = {"ingress", "router", "ai-worker", "egress", "flex-worker"}
METRICS_TOKEN = "metrics-token-6e0d2a"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(\{(.*)\})? (\S+)( -?\d+)?$" % NAME)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse_value(v):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    return float(v)


def parse_labels(text):
    out, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise AssertionError("bad labels {%s}" % text)
        name = m.group(1)
        if name in out:
            raise AssertionError("label %s twice in {%s}" % (name, text))
        value = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(2))
        out[name] = value
        pos = m.end()
        if m.group(3) == "" and pos != len(text):
            raise AssertionError("bad labels {%s}" % text)
    return out


def parse_exposition(text):
    """Strict 0.0.4 parser: {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    fams, current, seen = {}, None, set()
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        where = "line %d: %r" % (n, line)
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            fam = fams.setdefault(name, {"type": None, "help": None, "samples": []})
            if fam["help"] is not None:
                raise AssertionError("second HELP for %s at %s" % (name, where))
            fam["help"] = help_
            continue
        if line.startswith("# TYPE "):
            parts = line[7:].split(" ")
            if len(parts) != 2 or parts[1] not in ("counter", "gauge", "histogram", "summary",
                                                   "untyped"):
                raise AssertionError("bad TYPE at " + where)
            name = parts[0]
            fam = fams.setdefault(name, {"type": None, "help": None, "samples": []})
            if fam["type"] is not None or fam["samples"]:
                raise AssertionError("second TYPE (or TYPE after samples) for %s at %s" % (name, where))
            fam["type"] = parts[1]
            current = name
            continue
        if line.startswith("#"):
            raise AssertionError("unexpected comment at " + where)
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample at " + where)
        name, labels, value = m.group(1), parse_labels(m.group(3) or ""), parse_value(m.group(4))
        if current is None:
            raise AssertionError("sample before any TYPE at " + where)
        ftype = fams[current]["type"]
        ok = name == current or (ftype == "histogram" and name in (
            current + "_bucket", current + "_sum", current + "_count"))
        if not ok:
            raise AssertionError("sample %s is not of family %s (%s)" % (name, current, where))
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise AssertionError("duplicate series at " + where)
        seen.add(key)
        if name.endswith("_bucket") and ftype == "histogram" and "le" not in labels:
            raise AssertionError("bucket without le at " + where)
        if ftype == "counter" and value < 0:
            raise AssertionError("negative counter at " + where)
        fams[current]["samples"].append((name, labels, value))
    for name, fam in fams.items():
        if fam["samples"] and fam["type"] is None:
            raise AssertionError("family %s has samples but no TYPE" % name)
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return fams


def check_histogram(name, samples):
    series = {}
    for sname, labels, value in samples:
        base = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(base, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            s["buckets"].append((parse_value(labels["le"]), value))
        elif sname == name + "_sum":
            s["sum"] = value
        else:
            s["count"] = value
    for base, s in series.items():
        b = s["buckets"]
        if not b or b[-1][0] != float("inf"):
            raise AssertionError("%s%s: buckets do not end in +Inf" % (name, base))
        les = [le for le, _ in b]
        if les != sorted(les) or len(set(les)) != len(les):
            raise AssertionError("%s%s: le not increasing" % (name, base))
        counts = [c for _, c in b]
        if any(x > y for x, y in zip(counts, counts[1:])):
            raise AssertionError("%s%s: buckets not cumulative: %s" % (name, base, counts))
        if s["count"] is None or s["sum"] is None:
            raise AssertionError("%s%s: _sum or _count missing" % (name, base))
        if counts[-1] != s["count"]:
            raise AssertionError("%s%s: +Inf %s != _count %s" % (name, base, counts[-1], s["count"]))


def value(fams, name, sample=None, **labels):
    """Sum of the samples of a family (or sample name) whose labels include labels."""
    fam = fams.get(name)
    if fam is None and sample is None:
        for suffix in ("_count", "_sum", "_bucket"):
            if name.endswith(suffix) and name[:-len(suffix)] in fams:
                return value(fams, name[:-len(suffix)], sample=name, **labels)
        return None
    total, found = 0.0, False
    for sname, slabels, v in fam["samples"]:
        if sname == (sample or name) and all(slabels.get(k) == w for k, w in labels.items()):
            total += v
            found = True
    return total if found else None


class MetricsCase(unittest.TestCase):
    env = {"BATON_METRICS_INTERVAL_MS": "200"}

    def setUp(self):
        self.p = Pipeline(env=dict(self.env))
        self.addCleanup(self.p.close)
        self.p.start_all()

    def url(self):
        return "http://127.0.0.1:%d/metrics" % self.p.ingress_port

    def scrape(self, headers=None):
        st, text, h = http("GET", self.url(), headers=headers)
        self.assertEqual(st, 200, text)
        self.assertTrue(h.get("Content-Type", "").startswith("text/plain; version=0.0.4"), h)
        return text, parse_exposition(text)

    def files(self):
        d = os.path.join(self.p.dir, "state", "metrics")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


class TestMetrics(MetricsCase):
    def test_every_process_and_the_counts_of_the_traffic(self):
        p = self.p
        self.assertEqual(p.send(ANA, "Where is the clinic located?")[0], 200)
        self.assertEqual(p.send(BRUNO, "Where is the clinic located?")[0], 200)
        wait_for(lambda: len(p.sent_messages(ANA)) == 1 and len(p.sent_messages(BRUNO)) == 1, 10,
                 what="two AI replies")
        # A duplicate delivery, and two webhooks with a bad signature.
        params = p.webhook_params(ANA, "What are your opening hours?")
        self.assertEqual(p.post_webhook(params)[0], 200)
        self.assertEqual(p.post_webhook(params)[0], 200)
        wait_for(lambda: len(p.sent_messages(ANA)) == 2, 10, what="third AI reply")
        self.assertEqual(p.post_webhook(p.webhook_params(ANA, "x"), signature=False)[0], 403)
        self.assertEqual(p.post_webhook(p.webhook_params(ANA, "y"), signature="forged")[0], 403)
        self.assertEqual(http("GET", "http://127.0.0.1:%d/wp-login.php" % p.ingress_port)[0], 404)
        # The escalation rule, the Flex handoff, then the operator's hand-back.
        self.assertEqual(p.send(BRUNO, "quiero hablar con una persona")[0], 200)
        wait_for(lambda: p.show(BRUNO)["mode"] == "human", 15, what="human mode")
        rc, _, err = p.ctl("handback", BRUNO)
        self.assertEqual(rc, 0, err)
        wait_for(lambda: p.show(BRUNO)["mode"] == "ai", 10, what="hand-back")
        wait_for(lambda: p.log_contains("flex-worker", "Flex side closed"), 10, what="close")

        want = {
            ("baton_router_escalations_total", ("trigger", "rule")): 1,
            ("baton_router_escalations_total", ("trigger", "tool")): 0,
            ("baton_router_escalations_total", ("trigger", "operator")): 0,
            ("baton_router_handbacks_total", ("path", "operator")): 1,
            ("baton_router_handbacks_total", ("path", "agent_closed")): 0,
            ("baton_router_customer_messages_total", ("mode", "ai")): 4,
            ("baton_router_customer_messages_total", ("mode", "human")): 0,
            ("baton_router_duplicate_webhooks_total", None): 1,
            ("baton_ingress_signature_failures_total", ("path", "/twilio/messages")): 2,
            ("baton_ingress_requests_total", ("code", "403")): 2,
            ("baton_ai_results_total", ("outcome", "ok")): 3,
            ("baton_ai_results_total", ("outcome", "escalate")): 0,
            ("baton_ai_llm_requests_total", ("status", "200")): 3,
            ("baton_ai_llm_request_duration_seconds_count", None): 3,
            ("baton_egress_sends_total", ("outcome", "ok")): 4,  # 3 AI replies, the holding message
            ("baton_egress_twilio_request_duration_seconds_count", None): 4,
            ("baton_flex_jobs_total", ("op", "handoff")): 1,
            ("baton_flex_jobs_total", ("op", "close")): 1,
            ("baton_router_jobs_in_flight", None): 0,
            ("baton_router_outbox_backlog", None): 0,
        }

        def matches():
            _, fams = self.scrape()
            got = {}
            for (name, lab), _ in want.items():
                got[(name, lab)] = value(fams, name, **(dict([lab]) if lab else {}))
            self.last = (fams, got)
            return got == want

        try:
            wait_for(matches, 10, what="the counters to match the traffic")
        except AssertionError:
            self.fail("counters differ: %s" % {k: v for k, v in self.last[1].items() if want[k] != v})
        text, fams = self.scrape()

        # Series from all five processes, told apart by process and pid.
        procs = {labels.get("process") for f in fams.values() for _, labels, _ in f["samples"]}
        self.assertEqual(procs, PROCESSES)
        for proc in PROCESSES:
            rss = value(fams, "process_resident_memory_bytes", process=proc)
            self.assertTrue(rss and rss > 1e6, (proc, rss))
            self.assertTrue(value(fams, "process_start_time_seconds", process=proc) > 1.6e9)
        self.assertEqual(len({labels["pid"] for _, labels, _ in
                              fams["process_resident_memory_bytes"]["samples"]}), 5)
        # Exactly what ingress answered on the webhook path, and where the junk went.
        self.assertEqual(value(fams, "baton_ingress_requests_total", path="/twilio/messages",
                               code="200"), 5)
        self.assertEqual(value(fams, "baton_ingress_requests_total", path="/admin/handback",
                               code="200"), 1)
        self.assertEqual(value(fams, "baton_ingress_requests_total", path="other", code="404"), 1)
        self.assertEqual(value(fams, "baton_ingress_request_duration_seconds_count",
                               path="/twilio/messages"), 7)
        for kind in ("ai", "send", "flex"):
            self.assertEqual(value(fams, "baton_router_workers", kind=kind), 1)
            self.assertEqual(value(fams, "baton_router_jobs_queued", kind=kind), 0)
        self.assertEqual(value(fams, "baton_router_lmdb_map_bytes"), 1024 * 1024 * 1024)
        self.assertGreater(value(fams, "baton_router_lmdb_file_bytes"), 0)
        self.assertEqual(value(fams, "baton_router_conversations"), 2)
        self.assertGreaterEqual(value(fams, "baton_router_commits_total"), 5)
        self.assertGreaterEqual(value(fams, "baton_router_inbound_work_seconds_count"), 4)
        self.assertEqual(value(fams, "baton_ingress_metrics_files", state="fresh"), 4)
        # Each family's HELP and TYPE once, for all five processes' copies.
        self.assertEqual(text.count("# TYPE process_resident_memory_bytes "), 1)
        self.assertEqual(text.count("# TYPE baton_worker_jobs_total "), 1)
        for secret in (AUTH_TOKEN, LLM_KEY, ADMIN_TOKEN):
            self.assertNotIn(secret, text)

        # HEAD answers the headers only; other methods are refused.
        st, body, h = http("HEAD", self.url())
        self.assertEqual((st, body), (200, ""))
        self.assertTrue(h["Content-Type"].startswith("text/plain; version=0.0.4"))
        st, _, h = http("POST", self.url(), b"x", {"Content-Type": "text/plain"})
        self.assertEqual(st, 405)
        self.assertIn("GET", h.get("Allow", ""))

        # A clean exit removes the process's file; a crashed one's is left
        # out (its pid is gone) and removed once stale.
        egress_pid, flex_pid = p.procs["egress"].pid, p.procs["flex-worker"].pid
        self.assertIn("egress-%d.prom" % egress_pid, self.files())
        self.assertEqual(p.stop("egress"), 0)
        self.assertNotIn("egress-%d.prom" % egress_pid, self.files())
        p.stop("flex-worker", signal.SIGKILL)
        self.assertIn("flex-worker-%d.prom" % flex_pid, self.files())
        _, fams = self.scrape()
        procs = {labels.get("process") for f in fams.values() for _, labels, _ in f["samples"]}
        self.assertEqual(procs, PROCESSES - {"egress", "flex-worker"})
        wait_for(lambda: self.scrape() and "flex-worker-%d.prom" % flex_pid not in self.files(),
                 5, what="the crashed worker's file to go")


class TestMetricsToken(MetricsCase):
    env = {"BATON_METRICS_INTERVAL_MS": "200", "BATON_METRICS_TOKEN": METRICS_TOKEN}

    def test_token_required(self):
        st, body, h = http("GET", self.url())
        self.assertEqual(st, 401)
        self.assertIn("Bearer", h.get("WWW-Authenticate", ""))
        self.assertNotIn("baton_", body)
        st, _, _ = http("GET", self.url(), headers={"Authorization": "Bearer wrong"})
        self.assertEqual(st, 401)
        st, _, _ = http("GET", self.url(), headers={"Authorization": "Bearer " + METRICS_TOKEN + "x"})
        self.assertEqual(st, 401)
        auth = {"Authorization": "Bearer " + METRICS_TOKEN}
        wait_for(lambda: len(self.files()) >= 4, 5, what="the workers' files")

        def all_there():
            _, fams = self.scrape(auth)
            return {l.get("process") for f in fams.values() for _, l, _ in f["samples"]} == PROCESSES
        wait_for(all_there, 5, what="all five processes")
        text, fams = self.scrape(auth)
        self.assertEqual(value(fams, "baton_ingress_requests_total", path="/metrics", code="401"), 3)
        for secret in (AUTH_TOKEN, LLM_KEY, ADMIN_TOKEN, METRICS_TOKEN):
            self.assertNotIn(secret, text)
        for name in self.p.logs:
            self.assertNotIn(METRICS_TOKEN, self.p.log_text(name))


class TestMetricsOff(MetricsCase):
    env = {"BATON_METRICS_INTERVAL_MS": "0"}

    def test_interval_zero_writes_no_files(self):
        self.assertEqual(self.p.send(ANA, "Where is the clinic located?")[0], 200)
        wait_for(lambda: len(self.p.sent_messages(ANA)) == 1, 10, what="AI reply")
        text, fams = self.scrape()
        self.assertEqual(self.files(), [])
        procs = {l.get("process") for f in fams.values() for _, l, _ in f["samples"]}
        self.assertEqual(procs, {"ingress"})
        self.assertEqual(value(fams, "baton_ingress_requests_total", path="/twilio/messages",
                               code="200"), 1)



class TestDashboard(unittest.TestCase):
    """scripts/grafana-dashboard.json asks only for metrics baton exports."""

    def test_dashboard_names_exist(self):
        import glob
        import json
        root = os.path.join(os.path.dirname(__file__), "..", "..")
        dash = json.load(open(os.path.join(root, "scripts", "grafana-dashboard.json")))
        self.assertEqual(dash["schemaVersion"], 38)
        self.assertIn("datasource", [v["name"] for v in dash["templating"]["list"]
                                     if v["type"] == "datasource"])
        source = ""
        for d in ("common", "ingress", "router", "ai-worker", "egress", "flex-worker"):
            for path in glob.glob(os.path.join(root, d, "*.c")):
                source += open(path).read()
        exprs = [t["expr"] for panel in dash["panels"] for t in panel.get("targets", [])]
        self.assertGreater(len(exprs), 20)
        names = set()
        for e in exprs:
            names |= set(re.findall(r"\b((?:baton|process)_[a-z_]+)\b", e))
        for name in sorted(names):
            base = re.sub(r"_bucket$", "", name)
            self.assertIn('"%s"' % base, source, "dashboard uses %s, which baton does not export" % name)


if __name__ == "__main__":
    unittest.main()
