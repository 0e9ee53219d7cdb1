"""scripts/baton, the supervisor: the whole pipeline started by it (two
ai-workers, two ingress processes sharing one HTTP port), answers through it,
scaling the ai-workers up and down while messages flow (every message
answered exactly once), a SIGKILLed worker restarted, and stop (every process
gone, exit 0). The fakes come from the harness; baton's processes only from
scripts/baton."""

import collections
import json
import os
import signal
import subprocess
import threading
import time
import unittest

from baton_harness import ROOT, Pipeline, free_port, wait_for

BATON = os.path.join(ROOT, "scripts", "baton")
ADDRESS = "Clínica Sol is at"


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


def customer(i):
    return "whatsapp:+5511977%06d" % i


class SupervisorCase(unittest.TestCase):
    latency = 0

    def pipeline(self):
        return Pipeline(llm_latency_ms=self.latency)

    def setUp(self):
        self.p = self.pipeline()
        self.addCleanup(self.p.close)
        self.p.start_fakes()
        # Every ingress listens on this one port (SO_REUSEPORT).
        self.p.ingress_port = free_port()
        self.env = self.p.env()
        self.env["BATON_HTTP_PORT"] = str(self.p.ingress_port)
        self.run_dir = os.path.join(self.p.dir, "state", "run")
        self.addCleanup(self.cleanup)  # before p.close (cleanups run last-in first-out)

    def baton(self, *args, timeout=120):
        r = subprocess.run([BATON] + list(args) + ["--bin", self.p.bindir], env=self.env,
                           cwd=self.p.dir, capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def status(self):
        rc, out, err = self.baton("status", "--json")
        return rc, json.loads(out)

    def kids(self, kind=None):
        rc, st = self.status()
        self.assertIn(rc, (0, 1), st)
        return [c for c in st["children"] if kind is None or c["kind"] == kind]

    def state(self):
        try:
            with open(os.path.join(self.run_dir, "baton.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def cleanup(self):
        """A test that failed half-way leaves nothing running; every log is
        checked for secrets by the harness."""
        st = self.state()
        pids = [c["pid"] for c in st.get("children", []) if c.get("pid")]
        if st.get("supervisor") and alive(st["supervisor"]["pid"]):
            self.baton("stop", timeout=90)
            pids.append(st["supervisor"]["pid"])
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if os.path.isdir(self.run_dir):
            for name in os.listdir(self.run_dir):
                if name.endswith(".log"):
                    self.p.logs["supervised " + name] = os.path.join(self.run_dir, name)

    def supervisor_log(self):
        return self.p.log_lines(os.path.join(self.run_dir, "baton.log"))

    def assert_clean_exits(self):
        """Like the harness: every process stopped by SIGTERM exits 0."""
        stops = [l["msg"] for l in self.supervisor_log() if " stopped: " in l.get("msg", "")]
        self.assertTrue(stops)
        bad = [m for m in stops if not m.endswith("stopped: exit 0")]
        self.assertEqual(bad, [], "unclean exits; logs in %s" % self.run_dir)

    def replies_by_customer(self):
        out = collections.defaultdict(list)
        for m in self.p.sent_messages():
            out[m["To"]].append((m["sid"], m["Body"]))
        return out


class TestSupervisor(SupervisorCase):
    latency = 300  # AI jobs are in flight on the workers being scaled down

    def test_start_answer_scale_restart_stop(self):
        p = self.p
        rc, out, err = self.baton("start", "--ai-workers", "2", "--ingress", "2",
                                  "--flex-workers", "1", "--egress", "1")
        self.assertEqual(rc, 0, err)
        self.assertIn("baton running", out)

        # status: everything alive, two of what we asked two of.
        rc, st = self.status()
        self.assertEqual(rc, 0, st)
        self.assertTrue(st["running"] and st["healthy"])
        counts = collections.Counter(c["kind"] for c in st["children"])
        self.assertEqual(counts, {"router": 1, "ai-worker": 2, "ingress": 2, "flex-worker": 1,
                                  "egress": 1})
        self.assertTrue(all(c["alive"] and c["state"] == "running" and c["restarts"] == 0
                            and c["rss_kb"] for c in st["children"]), st)
        url = "http://127.0.0.1:%d" % p.ingress_port
        self.assertEqual([c["info"] for c in st["children"] if c["kind"] == "ingress"], [url, url])
        rc, text, _ = self.baton("status")
        self.assertEqual(rc, 0)
        self.assertEqual(sum(1 for l in text.splitlines() if l.startswith("ai-worker")), 2)
        all_pids = [st["supervisor"]["pid"]] + [c["pid"] for c in st["children"]]

        # Customer messages through the shared port get AI replies.
        for i in range(6):
            sc, _, _ = p.send(customer(i), "Where is the clinic?")
            self.assertEqual(sc, 200)
        wait_for(lambda: len(self.replies_by_customer()) == 6, 20, what="first replies")

        # Scale ai-workers up then down while messages flow.
        total = 40
        sent, statuses = [], []

        def sender():
            for i in range(6, 6 + total):
                sc, _, _ = p.send(customer(i), "Where is the clinic? (%d)" % i)
                statuses.append(sc)
                sent.append(i)
                time.sleep(0.05)    # the traffic's pace, not a wait for anything
        t = threading.Thread(target=sender)
        t.start()
        try:
            wait_for(lambda: len(sent) >= 8, 20, what="traffic")
            rc, out, err = self.baton("scale", "ai-worker", "3")
            self.assertEqual(rc, 0, err)
            ai = self.kids("ai-worker")
            self.assertEqual(len(ai), 3)
            self.assertTrue(all(c["alive"] for c in ai))
            wait_for(lambda: len(sent) >= 20, 20, what="more traffic")
            rc, out, err = self.baton("scale", "ai-worker", "1")
            self.assertEqual(rc, 0, err)
            ai = self.kids("ai-worker")
            self.assertEqual(len(ai), 1, ai)
            self.assertTrue(ai[0]["alive"])
        finally:
            t.join(60)
        self.assertEqual(statuses, [200] * total)
        self.assertEqual(sum(1 for l in self.supervisor_log()
                             if "SIGTERM (scaling ai-worker down to 1)" in l.get("msg", "")), 2)

        # Every message answered exactly once (the workers that left finished
        # or gave back their jobs; nothing re-sent).
        n = 6 + total
        wait_for(lambda: len(self.replies_by_customer()) == n, 30, what="a reply to everyone")
        # Every job finished, those of the workers that left included (their
        # silence noticed, what they held run elsewhere): a late duplicate
        # would be sent by now.
        p.wait_idle(20)
        replies = self.replies_by_customer()
        self.assertEqual(sorted(replies), sorted(customer(i) for i in range(n)))
        for to, rs in replies.items():
            self.assertEqual(len(rs), 1, "%s got %r" % (to, rs))
            self.assertTrue(rs[0][1].startswith(ADDRESS), rs)
        self.assertEqual(len({sid for rs in replies.values() for sid, _ in rs}), n)

        # SIGKILL the ai-worker: the supervisor restarts it.
        victim = self.kids("ai-worker")[0]
        os.kill(victim["pid"], signal.SIGKILL)

        def restarted():
            rc, st = self.status()
            ai = [c for c in st["children"] if c["kind"] == "ai-worker"]
            return (rc == 0 and len(ai) == 1 and ai[0]["restarts"] == 1 and ai[0]["alive"]
                    and ai[0]["state"] == "running" and ai[0]["pid"] != victim["pid"] and ai[0])
        again = wait_for(restarted, 20, what="ai-worker restarted")
        self.assertEqual(again["index"], victim["index"])
        self.assertTrue(any("died unexpectedly" in l.get("msg", "") and
                            "signal 9" in l.get("msg", "") for l in self.supervisor_log()))
        rc, text, _ = self.baton("status")
        row = [l.split() for l in text.splitlines() if l.startswith("ai-worker")][0]
        self.assertEqual(row[2:4] + [row[7]], [str(again["pid"]), "yes", "1"], text)
        # and the pipeline still answers, once
        p.send(customer(999), "Where is the clinic?")
        wait_for(lambda: len(self.replies_by_customer()[customer(999)]) == 1, 20,
                 what="reply after the restart")

        # stop: every process gone, exit 0.
        st = self.state()
        all_pids += [c["pid"] for c in st["children"]]
        rc, out, err = self.baton("stop")
        self.assertEqual(rc, 0, err)
        self.assertEqual([pid for pid in all_pids if alive(pid)], [])
        rc, _ = self.status()
        self.assertEqual(rc, 3)
        self.assertEqual(self.state()["status"], "stopped")
        self.assert_clean_exits()
        # Stop order: ingress first, router last.
        msgs = [l.get("msg", "") for l in self.supervisor_log()]
        order = [m.split(" ")[0] for m in msgs[msgs.index("stopping everything"):]
                 if " stopped: " in m]
        self.assertEqual(sorted(order[:2]), ["ingress-1", "ingress-2"], order)
        self.assertEqual(order[-1], "router-1", order)
        self.assertEqual(len(order), 6, order)
        self.assertEqual(len(replies) + 1, len(self.replies_by_customer()))


class TestSupervisorCommands(SupervisorCase):
    def test_not_running_running_twice_and_bad_requests(self):
        rc, st = self.status()
        self.assertEqual((rc, st["running"]), (3, False))
        self.assertEqual(self.baton("scale", "ai-worker", "2")[0], 3)
        rc, out, _ = self.baton("stop")
        self.assertEqual(rc, 0)
        self.assertIn("not running", out)

        rc, _, err = self.baton("start", "--flex-workers", "0")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.baton("start")[0], 4, "already running")
        self.assertEqual(self.baton("scale", "router", "2")[0], 2)
        self.assertEqual(self.baton("scale", "ai-worker", "-1")[0], 2)
        # A kind can go to zero and come back.
        self.assertEqual(self.baton("scale", "flex-worker", "1")[0], 0)
        self.assertEqual(len(self.kids("flex-worker")), 1)
        rc, _, err = self.baton("scale", "egress", "0")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.kids("egress"), [])
        self.assertEqual(self.baton("scale", "egress", "1")[0], 0)
        self.assertEqual(self.baton("stop")[0], 0)
        self.assertEqual(self.status()[0], 3)
        self.assert_clean_exits()

    def test_bad_config_exits_2_and_help_documents_exit_codes(self):
        self.env["BATON_LLM_PROVIDER"] = "bogus"
        rc, _, err = self.baton("start")
        self.assertEqual(rc, 2)
        self.assertIn("llm.provider", err)
        self.assertEqual(self.status()[0], 3)
        for cmd in ("start", "status", "scale", "stop"):
            rc, out, _ = self.baton(cmd, "--help")
            self.assertEqual(rc, 0)
            self.assertIn("exit codes", out)


if __name__ == "__main__":
    unittest.main()


class TestSupervisorStandbyRouter(SupervisorCase):
    """start --routers 2 with the state in PostgreSQL: the first router is
    active, the second stands by; SIGKILL the active one and the standby takes
    over (the supervisor restarts the killed one, which stands by)."""

    def pipeline(self):
        import pgcluster
        why = pgcluster.available()
        if why:
            self.fail("PostgreSQL is needed here: " + why)
        return Pipeline(backend="postgres", env={"BATON_ROUTER_LEASE_MS": "1500",
                                                 "BATON_LOG_LEVEL": "info"})

    def router_log(self, index):
        with open(os.path.join(self.run_dir, "router-%d.log" % index), errors="replace") as f:
            return f.read()

    def test_routers_2_runs_a_standby_that_takes_over(self):
        p = self.p
        rc, out, err = self.baton("start", "--routers", "2")
        self.assertEqual(rc, 0, err)
        routers = self.kids("router")
        self.assertEqual(sorted(c["index"] for c in routers), [1, 2])
        self.assertIn("ready: active", self.router_log(1))
        self.assertIn("ready: standing by", self.router_log(2))
        # router 2 keeps its cache apart from router 1's
        self.assertTrue(os.path.isdir(os.path.join(p.dir, "state", "router-2")))

        p.send(customer(1), "Where is the clinic?")
        wait_for(lambda: len(self.replies_by_customer()[customer(1)]) == 1, 20, what="first reply")

        active = [c for c in routers if c["index"] == 1][0]
        os.kill(active["pid"], signal.SIGKILL)
        # Whichever stands by first when the lease expires takes it: router 2,
        # or router 1 restarted by the supervisor (its backoff is short).
        def taken():
            return [i for i in (1, 2) if "lease taken: epoch 2" in self.router_log(i)]
        winner = wait_for(taken, 15, what="a router active with epoch 2")
        self.assertEqual(len(winner), 1, "one takeover")

        def restarted():
            r1 = [c for c in self.kids("router") if c["index"] == 1][0]
            return r1["restarts"] == 1 and r1["alive"] and r1["state"] == "running"
        wait_for(restarted, 20, what="router-1 restarted by the supervisor")

        # Webhooks refused during the takeover are retried, as Twilio would.
        def answered():
            sc, _, _ = p.send(customer(2), "Where is the clinic?") if not sent else (200, 0, 0)
            if sc == 200:
                sent.append(1)
            return len(self.replies_by_customer()[customer(2)]) == 1
        sent = []
        wait_for(answered, 30, interval=0.3, what="an answer through router-2")
        p.wait_idle(20)
        self.assertEqual(len(self.replies_by_customer()[customer(1)]), 1)

        rc, out, err = self.baton("stop", timeout=90)
        self.assertEqual(rc, 0, err)

    def test_more_than_one_router_needs_postgres(self):
        self.env["BATON_STATE_BACKEND"] = "lmdb"
        self.env.pop("BATON_POSTGRES_DSN", None)
        rc, out, err = self.baton("start", "--routers", "2")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("needs state.backend = postgres", err)
