"""Beyond one host: the state in PostgreSQL, routers that take over from
each other, and a database that fails over or goes away.

Every test starts its own PostgreSQL (tests/lib/pgcluster.py: initdb and
pg_ctl on a temporary directory and a free port). Two routers share one
database; each binds its own endpoints and keeps its own cache; ingress and
the workers list both and talk to whichever holds the lease.

  * failover under load: 500 messages in flight, the active router killed
    (SIGKILL): the standby is active within router.lease_ms + 1 s, every
    acknowledged message is answered once, each conversation in order;
  * fencing: the active router stopped (SIGSTOP) past its lease, the other
    takes over, the first resumes (SIGCONT): it commits nothing, says it lost
    the lease, stands by; nothing answered twice;
  * database failover: a primary and a synchronous streaming standby, the
    DSN listing both; the primary killed under load and the standby
    promoted: 503s for the gap, then everything acknowledged answered once;
  * the database down for 20 s: 503s, no crash, back without a restart.
"""

import json
import os
import re
import signal
import threading
import time
import unittest

import pgcluster
from baton_harness import Pipeline, wait_for
from test_once import Senders, llm_calls_by_customer, replies_by_customer

LEASE_MS = 2000


def customers(n, base=0):
    return ["whatsapp:+55219%07d" % (base + i) for i in range(n)]


def log_ms(line):
    """The wall-clock time of a JSON log line, in ms."""
    ts = json.loads(line)["ts"]
    t = time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")
    import calendar
    return calendar.timegm(t) * 1000 + int(ts[20:23])


def lines_with(p, name, text):
    return [l for l in p.log_text(name).splitlines() if text in l]


class PgCase(unittest.TestCase):
    def setUp(self):
        why = pgcluster.available()
        if why:
            self.fail("PostgreSQL is needed here: " + why)

    def two_routers(self, env=None, pg_dsn=None, llm_latency_ms=0):
        e = {"BATON_ROUTER_LEASE_MS": str(LEASE_MS), "BATON_LOG_LEVEL": "info",
             "BATON_HTTP_ACK_TIMEOUT_MS": "2000"}
        e.update(env or {})
        p = Pipeline(env=e, backend="postgres", pg_dsn=pg_dsn, llm_latency_ms=llm_latency_ms)
        self.addCleanup(p.close)
        p.start_fakes()
        names = p.start_routers(2)
        # The first started holds the lease; the second stands by.
        wait_for(lambda: lines_with(p, names[0], "lease taken"), 20, what="router-0 active")
        wait_for(lambda: lines_with(p, names[1], "standing by"), 10, what="router-1 standing by")
        for name in ("ai-worker", "egress", "flex-worker", "ingress"):
            p.start(name)
        wait_for(lambda: all(p.log_contains(names[0], k + " worker joined")
                             for k in ("ai", "egress", "flex")), 10, what="workers joined")
        return p, names

    def idle(self, p, timeout=60):
        """Until the database holds no job: every reply sent, nothing left that
        could send a second one (the routers' metrics live in their own caches)."""
        def done():
            rc, out, _ = p.ctl("--json", "stats")
            return rc == 0 and json.loads(out)["jobs"]["total"] == 0
        wait_for(done, timeout, interval=0.3, what="no job left in the database")

    def assert_once(self, p, plan, timeout=120):
        who = sorted({c for c, _ in plan})
        wait_for(lambda: all(replies_by_customer(p, who)[c] for c in who), timeout, interval=0.5,
                 what="every customer answered")
        self.idle(p)
        replies = replies_by_customer(p, who)
        self.assertEqual({c: len(r) for c, r in replies.items() if len(r) != 1}, {},
                         "customers not answered exactly once")
        calls = llm_calls_by_customer(p, plan)
        self.assertEqual({c: n for c, n in calls.items() if n != 1}, {},
                         "LLM called more than once for one AI turn")


class TestFailoverUnderLoad(PgCase):
    # Runs beside other tests: the takeover time is the lease's expiry and the
    # standby's next look (a tenth of the lease), not CPU-bound work.

    def test_the_standby_takes_over_within_the_lease_and_loses_nothing(self):
        p, (a, b) = self.two_routers(llm_latency_ms=100)
        p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "delay_ms": 20,
                                               "count": -1})
        who = customers(500)
        plan = [(c, "Question %d about the clinic" % i) for i, c in enumerate(who)]
        # And 20 customers who write three times, each waiting for the 200.
        ordered = customers(20, 5000)
        threes = [(c, "Turn %d of %s" % (k, c[-4:])) for c in ordered for k in range(3)]
        s = Senders(p, plan).start()
        done = threading.Event()

        def in_order():
            for c in ordered:
                for k in range(3):
                    params = p.webhook_params(c, "Turn %d of %s" % (k, c[-4:]))
                    while p.post_webhook(params)[0] != 200:
                        time.sleep(0.2)
            done.set()
        t = threading.Thread(target=in_order, daemon=True)
        t.start()
        wait_for(lambda: len(p.sent_messages()) >= 100, 60, interval=0.1, what="replies flowing")
        killed = int(time.time() * 1000)
        p.stop(a, signal.SIGKILL)
        wait_for(lambda: lines_with(p, b, "ready: active"), 20, interval=0.05,
                 what="router-1 active")
        took = log_ms(lines_with(p, b, "ready: active")[0]) - killed
        print("failover: router-1 active %d ms after the kill (router.lease_ms %d)" % (took, LEASE_MS))
        self.assertLessEqual(took, LEASE_MS + 1000)
        s.join()
        t.join(120)
        self.assertTrue(done.is_set())
        self.assertEqual(sorted(s.acked), sorted(who))
        self.assert_once(p, plan)
        # Each conversation kept its order: the customer turns as sent.
        for c in ordered:
            turns = [h["text"] for h in p.show(c)["history"] if h["role"] == "customer"]
            self.assertEqual(turns, ["Turn %d of %s" % (k, c[-4:]) for k in range(3)], c)
        # Replies went on after the kill, from the new router's jobs.
        after = [r for r in p.fake_get("twilio", "/_fake/requests?path_contains=Messages.json")
                 if r.get("status") == 201 and r["time"] * 1000 > killed]
        self.assertTrue(after, "replies after the failover")
        print("failover: first reply %d ms after the kill" % (min(r["time"] for r in after) * 1000 - killed))


class TestFencing(PgCase):
    def test_a_router_paused_past_its_lease_commits_nothing_and_stands_by(self):
        p, (a, b) = self.two_routers()
        who = customers(60, 100)
        plan = [(c, "Question %d" % i) for i, c in enumerate(who)]
        for c, text in plan[:20]:
            self.assertEqual(p.post_webhook(p.webhook_params(c, text))[0], 200)
        self.assert_once(p, plan[:20])
        p.procs[a].send_signal(signal.SIGSTOP)
        resumed = False
        try:
            wait_for(lambda: lines_with(p, b, "ready: active"), 20, interval=0.1,
                     what="router-1 takes over from the paused one")
            # Traffic while the paused router still holds its sockets: what it
            # cannot answer gets 503 and is retried, as Twilio does.
            s = Senders(p, plan[20:], threads=4).start()
            s.join()
            p.procs[a].send_signal(signal.SIGCONT)
            resumed = True
        finally:
            if not resumed:
                p.procs[a].send_signal(signal.SIGCONT)
        wait_for(lambda: lines_with(p, a, "standing by: this router no longer holds the lease"),
                 15, what="the resumed router stepping down")
        log_a = p.log_text(a)
        self.assertTrue("lease lost" in log_a or "commit refused" in log_a, log_a[-2000:])
        # It committed nothing after it resumed: the database's revisions are
        # all of the lease's new epoch from the takeover on.
        stepped = log_a.rfind("stepping down")
        self.assertNotIn("dispatched", log_a[stepped:])
        self.assert_once(p, plan)
        epoch = p.pg.psql("SELECT epoch FROM baton_lease", p.pg_db)
        self.assertEqual(epoch, "2", "one takeover, no flapping")


class TestDatabaseFailover(PgCase):
    def test_promoting_the_synchronous_standby_loses_nothing_acknowledged(self):
        primary = pgcluster.PgCluster().start()
        self.addCleanup(primary.close)
        db = primary.create_db()
        standby = pgcluster.PgCluster(primary=primary).start()
        self.addCleanup(standby.close)
        primary.require_sync()  # RPO 0: a commit returns once the standby has it
        dsn = ("host=127.0.0.1,127.0.0.1 port=%d,%d dbname=%s user=baton connect_timeout=2 "
               "target_session_attrs=read-write" % (primary.port, standby.port, db))
        p, (a, b) = self.two_routers(pg_dsn=dsn, llm_latency_ms=50)
        who = customers(300, 200)
        plan = [(c, "Question %d" % i) for i, c in enumerate(who)]
        s = Senders(p, plan[:150], threads=8).start()
        wait_for(lambda: len(p.sent_messages()) >= 50, 60, interval=0.1, what="replies flowing")
        primary.kill()
        # Customers writing while there is no database: 503 until the promotion.
        gap = Senders(p, plan[150:], threads=8).start()
        wait_for(lambda: gap.retries > 0, 30, interval=0.05, what="a 503 without the database")
        time.sleep(1.0)  # the rest of the gap: the database is gone until the standby is promoted
        standby.promote()
        s.join(180)
        gap.join(180)
        self.assertEqual(sorted(s.acked + gap.acked), sorted(who))
        self.assert_once(p, plan)
        # Both routers are still running; one of them is active.
        for name in (a, b):
            self.assertIsNone(p.procs[name].poll(), name)


class TestDatabaseDown(PgCase):
    def test_twenty_seconds_without_the_database_then_back_without_a_restart(self):
        cluster = pgcluster.PgCluster().start()
        self.addCleanup(cluster.close)
        db = cluster.create_db()
        p = Pipeline(env={"BATON_ROUTER_LEASE_MS": str(LEASE_MS), "BATON_LOG_LEVEL": "info",
                          "BATON_HTTP_ACK_TIMEOUT_MS": "1000"}, pg_dsn=cluster.dsn(db))
        self.addCleanup(p.close)
        p.start_all()
        before = customers(10, 300)
        for c in before:
            self.assertEqual(p.post_webhook(p.webhook_params(c, "Before " + c[-4:]))[0], 200)
        cluster.stop("fast")
        down_at = time.monotonic()
        answers = []
        while time.monotonic() - down_at < 20:
            answers.append(p.post_webhook(p.webhook_params(customers(1, 399)[0], "While down",
                                                           sid="SM" + "d" * 32))[0])
            time.sleep(0.5)
        self.assertGreaterEqual(len(answers), 10)
        self.assertEqual(set(answers), {503}, "nothing is acknowledged without the database")
        for name in ("router", "ingress", "ai-worker", "egress", "flex-worker"):
            self.assertIsNone(p.procs[name].poll(), "%s crashed" % name)
        cluster.start_again()
        after = customers(10, 400)
        first = p.webhook_params(after[0], "After " + after[0][-4:])
        wait_for(lambda: p.post_webhook(first)[0] == 200, 30, interval=0.5,
                 what="webhooks accepted again")
        for c in after[1:]:
            self.assertEqual(p.post_webhook(p.webhook_params(c, "After " + c[-4:]))[0], 200)
        self.assert_once(p, [(c, "Before " + c[-4:]) for c in before] +
                         [(c, "After " + c[-4:]) for c in after])
        self.assertTrue(p.log_contains("router", "connected again"))


if __name__ == "__main__":
    unittest.main()
