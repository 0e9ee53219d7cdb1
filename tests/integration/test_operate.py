"""The operator's views against a pipeline fed by a replayed stream.

A streamgen stream (many conversations, Zipf activity, escalations and
operator hand-backs) is replayed into ingress with the simulated Flex agent
accepting; then batonctl conversations / stats / export, GET /metrics and
the console API must describe the same state, and a purge must make the
conversation disappear from all of them.
"""

import json
import os
import re
import subprocess
import tempfile
import shutil
import unittest
import urllib.request

from baton_harness import ADMIN_TOKEN, BUSINESS, Pipeline, http, wait_for

CONSOLE_TOKEN = "console-operate-token-5e1d"
CONVERSATIONS = 40


def metric_sum(text, name, **labels):
    """Sum of the samples of one metric whose labels include the given ones."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        m = re.match(r'^[a-z_]+\{(.*)\} (\S+)$', line)
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


class TestOperateOnAReplayedStream(unittest.TestCase):
    def setUp(self):
        self.p = Pipeline(env={"BATON_CONSOLE_TOKEN": CONSOLE_TOKEN,
                               "BATON_METRICS_INTERVAL_MS": "200"})
        self.addCleanup(self.p.close)
        self.p.start_all()
        self.p.agent(enabled=True)
        self.tmp = tempfile.mkdtemp(prefix="baton-operate-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def replay_stream(self):
        tool = os.path.join(os.path.dirname(self.p.bindir), "tools", "streamgen")
        cap = os.path.join(self.tmp, "cap")
        r = subprocess.run([tool, "--out", cap, "--messages", "300", "--conversations",
                            str(CONVERSATIONS), "--rate", "2000", "--escalate", "0.25",
                            "--handback", "0.5", "--seed", "42", "--business", BUSINESS],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        env = self.p.env()
        env["BATON_HTTP_PORT"] = str(self.p.ingress_port)
        r = subprocess.run([os.path.join(self.p.bindir, "baton-replay"), "--json", "--speed", "max",
                            "--concurrency", "8", cap], env=env, capture_output=True, text=True,
                           timeout=180)
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        # A hand-back can arrive before its escalation's handoff exists: 404 from
        # the admin endpoint is then the right answer, so only messages must all pass.
        self.assertGreater(summary["acknowledged"], 0, summary)
        return summary

    def ctl_json(self, *args):
        rc, out, err = self.p.ctl("--json", *args)
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def metrics(self):
        st, body, _ = http("GET", "http://127.0.0.1:%d/metrics" % self.p.ingress_port)
        self.assertEqual(st, 200)
        return body

    def console(self, path):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.p.console_port, path),
                                     headers={"Authorization": "Bearer " + CONSOLE_TOKEN})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def settled(self):
        """No job queued or in flight: every reply sent, every handoff done."""
        s = self.ctl_json("stats")
        return s["jobs"]["total"] == 0 and s

    def test_every_view_agrees_and_purge_removes_the_conversation_everywhere(self):
        self.replay_stream()
        stats = wait_for(self.settled, 60, interval=0.2, what="the pipeline to settle")

        convs = self.ctl_json("conversations")
        rows = convs if isinstance(convs, list) else convs["conversations"]
        self.assertEqual(len(rows), stats["conversations"]["total"])
        self.assertGreater(len(rows), 5)
        by_mode = {}
        for row in rows:
            by_mode[row["mode"]] = by_mode.get(row["mode"], 0) + 1
        self.assertEqual(by_mode, {k: v for k, v in stats["conversations"]["by_mode"].items() if v})
        self.assertGreater(stats["escalations"]["total"], 0, "the stream escalated some")

        # /metrics counts what the timelines say happened, and no job left,
        # once the router's file is fresh (a file written before the last
        # send finished can show the final counts and still a job queued).
        def metrics_agree():
            m = self.metrics()
            esc = metric_sum(m, "baton_router_escalations_total")
            back = metric_sum(m, "baton_router_handbacks_total")
            return (esc == stats["escalations"]["total"] and
                    back == stats["handbacks"]["total"] and
                    metric_sum(m, "baton_router_jobs_queued") == 0 and
                    metric_sum(m, "baton_router_jobs_in_flight") == 0) and m
        wait_for(metrics_agree, 10, what="metrics matching batonctl stats, no job queued")

        # The console lists the same conversations with the same modes.
        api = self.console("/console/api/conversations?mode=all&limit=1000")
        items = api["conversations"] if isinstance(api, dict) else api
        self.assertEqual(len(items), len(rows))
        self.assertEqual(sorted(i["mode"] for i in items), sorted(r["mode"] for r in rows))
        # One schema (state/convview.h): batonctl and the console print the same records.
        self.assertEqual({r["key"]: r for r in rows}, {i["key"]: i for i in items})

        # Export of one escalated conversation: roles in order, an escalation in its timeline.
        # Export of an escalated conversation: roles in order, the escalation in its timeline.
        doc = key = None
        for item in sorted(items, key=lambda i: i["mode"] == "ai"):
            rc, out, err = self.p.ctl("export", item["key"], "--format", "json")
            self.assertEqual(rc, 0, err)
            d = json.loads(out)
            if "escalated" in [e["event"] for e in d["timeline"]]:
                doc, key = d, item["key"]
                break
        self.assertIsNotNone(doc, "an escalated conversation to export")
        address = key.split("|")[0]
        self.assertEqual(doc["history"][0]["role"], "customer")
        self.assertTrue(set(t["role"] for t in doc["history"]) <= {"customer", "ai", "agent", "system"})
        # The export is the same record, with the customer in clear.
        record = dict(next(r for r in rows if r["key"] == key))
        self.assertEqual(doc["conversation"]["customer"], address)
        record["customer"] = address
        self.assertEqual(doc["conversation"], record)
        self.assertEqual(self.ctl_json("show", key)["history"], doc["history"])

        # Purge: gone from batonctl, the console and the stats.
        rc, out, err = self.p.ctl("purge", key, "--yes", "--reason", "test erasure")
        if rc == 1 and "in progress" in (out + err):
            wait_for(lambda: self.p.ctl("purge", key, "--yes")[0] == 0, 15, what="purge")
        else:
            self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.p.ctl("show", key)[0], 3)
        self.assertEqual(self.p.ctl("export", key)[0], 3)
        after = self.ctl_json("stats")
        self.assertEqual(after["conversations"]["total"], stats["conversations"]["total"] - 1)
        api = self.console("/console/api/conversations?mode=all&limit=1000")
        items = api["conversations"] if isinstance(api, dict) else api
        self.assertNotIn(key, [i.get("key") for i in items])
        self.assertFalse(self.p.log_contains("router", address), "the purged number in clear")
        for proc in ("router", "ingress", "ai-worker", "egress", "flex-worker", "console"):
            text = self.p.log_text(proc)
            for secret in (CONSOLE_TOKEN, ADMIN_TOKEN):
                self.assertNotIn(secret, text, proc)
