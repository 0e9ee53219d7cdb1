"""Exactly once: every acknowledged customer message is answered once, and
the LLM is called once per AI turn, across router restarts on a loaded
machine, a full LMDB map and a full disk.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import unittest

from baton_harness import Pipeline, wait_for


def customers(n, base=0):
    return ["whatsapp:+55218%07d" % (base + i) for i in range(n)]


class CpuHogs:
    """Busy processes beside baton: a loaded machine makes every race wider."""

    def __init__(self, n=2):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                      for _ in range(n)]

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


class Senders:
    """Threads posting signed webhooks as Twilio does: each message re-sent
    with the same MessageSid until ingress answers 200."""

    def __init__(self, p, plan, threads=16):
        self.p = p
        self.plan = list(plan)  # [(customer, text)]
        self.acked = []
        self.retries = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i, threads), daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, k, n):
        for customer, text in self.plan[k::n]:
            params = self.p.webhook_params(customer, text)
            while True:
                try:
                    st = self.p.post_webhook(params)[0]
                except OSError:
                    st = None
                if st == 200:
                    break
                with self.lock:
                    self.retries += 1
                time.sleep(0.2)     # the pace of Twilio's retries, not a wait for anything
            with self.lock:
                self.acked.append(customer)

    def join(self, timeout=120):
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "a sender is stuck"


def replies_by_customer(p, who):
    out = {c: [] for c in who}
    for m in p.sent_messages():
        if m["To"] in out:
            out[m["To"]].append(m["Body"])
    return out


def llm_calls_by_customer(p, plan):
    """LLM requests whose last user text is one customer's message."""
    text_of = {text: c for c, text in plan}
    calls = {}
    for r in p.llm_requests():
        msgs = (r.get("json") or {}).get("messages") or []
        users = [m for m in msgs if m.get("role") == "user"]
        if not users:
            continue
        content = users[-1].get("content")
        if isinstance(content, list):
            content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
        for line in reversed(str(content).splitlines()):
            if line in text_of:
                calls[text_of[line]] = calls.get(text_of[line], 0) + 1
                break
    return calls


class TestRouterRestarts(unittest.TestCase):
    def test_three_router_kills_under_load_answer_each_message_once(self):
        hogs = CpuHogs(2)
        self.addCleanup(hogs.stop)
        # A slow LLM and a slow Twilio: when the router dies, AI calls and
        # sends are in flight and results are on their way to it.
        p = Pipeline(env={"BATON_AI_WORKER_CREDIT": "64", "BATON_EGRESS_CREDIT": "16",
                          "BATON_LOG_LEVEL": "info", "BATON_HTTP_ACK_TIMEOUT_MS": "2000"},
                     llm_latency_ms=300)
        self.addCleanup(p.close)
        p.start_all()
        p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json",
                                               "delay_ms": 40, "count": -1})
        who = customers(500)
        plan = [(c, "Question %d about the clinic" % i) for i, c in enumerate(who)]
        s = Senders(p, plan).start()
        for kill in range(3):
            # Kill while messages flow and replies are being written and sent.
            wait_for(lambda: len(p.sent_messages()) >= 60 * (kill + 1), 90, interval=0.1,
                     what="replies flowing before kill %d" % (kill + 1))
            p.stop("router", signal.SIGKILL)
            # How long the router stays dead is part of the fault injected (as
            # the chaos test's 0.05-0.4 s); nothing is waited for: work may or
            # may not be in flight at that moment.
            time.sleep(0.2)
            p.start("router")
        s.join()
        self.assertEqual(sorted(s.acked), sorted(who))

        def all_answered():
            r = replies_by_customer(p, who)
            return all(r[c] for c in who)
        wait_for(all_answered, 120, interval=0.5, what="every customer answered")
        # Every job finished, recovered ones included: a doubled reply would be sent by now.
        p.wait_idle(60)
        replies = replies_by_customer(p, who)
        doubled = {c: len(r) for c, r in replies.items() if len(r) != 1}
        self.maxDiff = 2000
        self.assertEqual(doubled, {}, "customers not answered exactly once")
        log = p.log_text("router")
        self.assertNotIn("unknown peer", log)
        self.assertNotIn("for a job in flight elsewhere", log)
        calls = llm_calls_by_customer(p, plan)
        repeated = {c: n for c, n in calls.items() if n != 1}
        self.assertEqual(repeated, {}, "LLM called more than once for one AI turn")
        self.assertEqual(len(calls), len(who))


if __name__ == "__main__":
    unittest.main()


def flood(p, plan):
    """Each message once; returns (customers acknowledged, count of 503s)."""
    acked, busy = [], 0
    for c, text in plan:
        st = p.post_webhook(p.webhook_params(c, text))[0]
        if st == 200:
            acked.append(c)
        elif st == 503:
            busy += 1
        else:
            raise AssertionError("unexpected status %s" % st)
    return acked, busy


def assert_answered_once(test, p, acked, timeout=60):
    wait_for(lambda: all(replies_by_customer(p, acked)[c] for c in acked), timeout,
             interval=0.3, what="every acknowledged message answered")
    p.wait_idle(timeout)  # every job finished: a second answer would be sent by now
    replies = replies_by_customer(p, acked)
    test.assertEqual({c: len(r) for c, r in replies.items() if len(r) != 1}, {},
                     "acknowledged messages not answered exactly once")


def health(p):
    import json
    with open(os.path.join(p.dir, "state", "router.health")) as f:
        return json.loads(f.read())


class TestFullMap(unittest.TestCase):
    """A 1 MiB map: 503 before the store is full, never a loop of sends."""

    def flood_plan(self, n, base=0):
        pad = " ".join(["padding"] * 190)   # about 1,500 bytes a message
        return [(c, "Question %d %s" % (i, pad)) for i, c in enumerate(customers(n, base))]

    def test_full_map_answers_each_acknowledged_message_once_and_purge_frees_it(self):
        p = Pipeline(env={"BATON_LMDB_MAP_SIZE_MB": "1", "BATON_LMDB_MAX_MAP_SIZE_MB": "1",
                          "BATON_LOG_LEVEL": "info"}, llm_latency_ms=50)
        self.addCleanup(p.close)
        p.start_all()
        plan = self.flood_plan(400)
        acked, busy = flood(p, plan)
        self.assertGreater(busy, 0, "a 1 MiB map cannot take 400 messages of 1.5 KB")
        self.assertGreater(len(acked), 50)
        assert_answered_once(self, p, acked)
        calls = llm_calls_by_customer(p, plan)
        self.assertEqual({c: n for c, n in calls.items() if n != 1}, {})
        self.assertEqual(sorted(calls), sorted(acked))
        self.assertIn(health(p)["store"], ("high_water", "critical"))
        # Purge works while full, and frees room without a restart.
        for c in acked[:len(acked) // 2]:
            rc, out, err = p.ctl("purge", c, "--yes", "--reason", "space")
            self.assertEqual(rc, 0, err)
        rc, out, _ = p.ctl("stats")
        self.assertEqual(rc, 0)
        more = self.flood_plan(20, base=1000)
        wait_for(lambda: p.post_webhook(p.webhook_params(more[0][0], more[0][1]))[0] == 200, 10,
                 interval=0.3, what="the store takes messages again after the purges")
        acked2, _ = flood(p, more[1:])
        assert_answered_once(self, p, [more[0][0]] + acked2)
        log = p.log_text("router")
        self.assertNotIn("cannot commit", log, "the reserve kept every commit working")
        self.assertLessEqual(log.count("above its high-water mark"), 2, "warned once per episode")

    def test_a_growing_map_takes_the_flood_without_a_single_503(self):
        p = Pipeline(env={"BATON_LMDB_MAP_SIZE_MB": "1", "BATON_LMDB_MAX_MAP_SIZE_MB": "64",
                          "BATON_LOG_LEVEL": "info"})
        self.addCleanup(p.close)
        p.start_all()
        plan = self.flood_plan(400)
        acked, busy = flood(p, plan)
        self.assertEqual(busy, 0)
        assert_answered_once(self, p, acked)
        self.assertIn("LMDB map grown from 1 to 2 MiB", p.log_text("router"))
        rc, out, _ = p.ctl("stats")
        self.assertRegex(out, r"of [0-9.]+ MiB map")


def can_mount():
    if os.geteuid() != 0:
        return False
    return subprocess.call(["mount", "--version"], stdout=subprocess.DEVNULL) == 0


class TestFullDisk(unittest.TestCase):
    """The state directory on a small filesystem that fills up."""

    def setUp(self):
        if not can_mount():
            self.skipTest("mounting a small tmpfs needs root")

    def pipeline(self, size_mb, env, latency):
        # The metrics files live on the small disk too: rewritten every 100 ms
        # (the harness's pace) they free and take pages often enough for a
        # commit to slip through a full disk. Here they keep the default pace.
        env = dict({"BATON_LOG_LEVEL": "info", "BATON_METRICS_INTERVAL_MS": "2000"}, **env)
        p = Pipeline(env=env, llm_latency_ms=latency)
        state = os.path.join(p.dir, "state")
        os.makedirs(state)
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mb, "tmpfs", state])

        def close():
            # Stop everything, then unmount, then remove what is left.
            keep, p.keep = p.keep, True
            try:
                p.close()
            finally:
                subprocess.call(["umount", "-l", state])
                if not keep and not os.environ.get("BATON_KEEP"):
                    subprocess.call(["rm", "-rf", p.dir])
        self.addCleanup(close)
        p.start_all()
        return p, state

    def test_a_disk_filled_by_someone_else_holds_results_and_recovers_without_restart(self):
        # min_free_mb = 0: only the disk's own errors (ENOSPC) stop commits.
        p, state = self.pipeline(8, {"BATON_LMDB_MIN_FREE_MB": "0"}, 1500)
        who = customers(20)
        plan = [(c, "Question %d" % i) for i, c in enumerate(who)]
        for c, text in plan:
            self.assertEqual(p.send(c, text)[0], 200)
        filler = os.path.join(state, "filler")
        with open(filler, "wb") as f:   # the disk fills while the AI is writing
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        # The router's health file says when a commit failed (the log's "No
        # space left on device" can be a metrics file's; those files cannot
        # be written on this disk now).
        wait_for(lambda: health(p)["store"] == "failing", 10,
                 what="a commit failing for lack of space")
        # A commit may still fit in pages LMDB freed earlier, and then the
        # store takes a message (durably: it is answered below like the
        # others) and is "ok" again for a moment; a new message is refused
        # once a commit has failed again. A 503 counts when the store says
        # failing (under load one can also be ingress's ack timeout).
        extra = iter(customers(50, 900))
        accepted = []

        def refused():
            c = next(extra)
            code = p.send(c, "hello")[0]
            if code == 200:
                accepted.append(c)
            return code == 503 and health(p)["store"] == "failing"
        wait_for(refused, 10, interval=0.2, what="a new message refused while the disk is full")
        who = who + accepted
        # The disk stays full until every AI answer is back from the LLM: the
        # router holds them (retried, never re-dispatched). Metrics files
        # cannot be written now; the fake LLM's record can be read.
        wait_for(lambda: len(p.llm_requests()) >= len(who), 20, interval=0.1,
                 what="every AI answer back while the disk is full")
        os.unlink(filler)
        assert_answered_once(self, p, who)
        self.assertEqual(p.send(customers(1, 901)[0], "hello")[0], 200)
        calls = llm_calls_by_customer(p, plan)
        self.assertEqual({c: n for c, n in calls.items() if n != 1}, {})
        # The episode ends after a second of good health (it said so).
        wait_for(lambda: p.log_contains("router", "store takes new messages again"), 10,
                 what="the end of the full-disk episode")
        log = p.log_text("router")
        self.assertEqual(log.count("cannot commit a batch"), 1, "warned once, not per retry")

    def test_baton_filling_the_disk_gets_503_before_it_is_full_and_purge_recovers(self):
        p, state = self.pipeline(8, {"BATON_LMDB_MIN_FREE_MB": "1"}, 50)
        # Most of the disk is taken already: about 1.5 MiB is left for baton.
        with open(os.path.join(state, "other-data"), "wb") as f:
            f.write(b"\0" * (5 * 1024 * 1024 + 512 * 1024))
        pad = " ".join(["padding"] * 190)
        plan = [(c, "Question %d %s" % (i, pad)) for i, c in enumerate(customers(1000))]
        acked, busy = flood(p, plan)
        self.assertGreater(busy, 0)
        assert_answered_once(self, p, acked)
        self.assertIn(health(p)["store"], ("high_water", "critical"))
        for c in acked[:len(acked) // 2]:
            rc, _, err = p.ctl("purge", c, "--yes")
            self.assertEqual(rc, 0, err)
        c = customers(1, 5000)[0]
        wait_for(lambda: p.post_webhook(p.webhook_params(c, "hello again"))[0] == 200, 10,
                 interval=0.3, what="the store takes messages again after the purges")
        assert_answered_once(self, p, [c])
        self.assertNotIn("cannot commit", p.log_text("router"))


class TestSendWindow(unittest.TestCase):
    """The moment between Twilio accepting a message and the router recording
    it: egress reconciles with Twilio's list before sending again."""

    def pipeline(self, **env):
        e = {"BATON_EGRESS_RECONCILE_SETTLE_MS": "500", "BATON_LOG_LEVEL": "info"}
        e.update(env)
        p = Pipeline(env=e)
        self.addCleanup(p.close)
        p.start_all()
        return p

    def listed(self, p, to):
        import base64
        import json
        import urllib.parse
        from baton_harness import ACCOUNT_SID, AUTH_TOKEN, http
        q = urllib.parse.urlencode({"To": to})
        auth = base64.b64encode(("%s:%s" % (ACCOUNT_SID, AUTH_TOKEN)).encode()).decode()
        st, text, _ = http("GET", "%s/2010-04-01/Accounts/%s/Messages.json?%s"
                           % (p.twilio_url, ACCOUNT_SID, q), headers={"Authorization": "Basic " + auth})
        assert st == 200, (st, text)
        return json.loads(text)["messages"]

    def created(self, p, to):
        """Every message Twilio created for that customer, without the list's lag."""
        import urllib.parse
        return p.fake_get("twilio", "/_fake/messages?" + urllib.parse.urlencode({"to": to}))

    def kill_egress_after_twilio_accepted(self, p, who):
        p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "method": "POST",
                                               "answer_delay_ms": 4000, "count": 1})
        self.assertEqual(p.send(who, "Where is the clinic?")[0], 200)
        wait_for(lambda: self.listed(p, who), 10, what="Twilio to have the message")
        p.stop("egress", signal.SIGKILL)
        p.start("egress")

    def test_egress_killed_after_twilio_accepted_does_not_send_twice(self):
        p = self.pipeline()
        who = customers(1, 700)[0]
        self.kill_egress_after_twilio_accepted(p, who)
        wait_for(lambda: p.log_contains("egress", "Twilio already has this message"), 15,
                 what="the new egress to find the message")
        p.wait_idle()  # a second send would have been made by now
        self.assertEqual(len(self.created(p, who)), 1)
        sent = p.show(who)["history"][-1].get("sent_sids")
        self.assertEqual(sent, self.created(p, who)[0]["sid"], "the SID Twilio has is recorded")

    def test_a_list_refused_after_a_long_settle_wait_is_read_again_not_skipped(self):
        # The settle wait is longer than the retry deadline (the chaos test's
        # settings on a loaded machine): the list's own retries still get
        # their whole deadline, counted from the first look.
        p = self.pipeline(BATON_EGRESS_RECONCILE_SETTLE_MS="3000",
                          BATON_EGRESS_RETRY_DEADLINE_MS="2000")
        who = customers(1, 704)[0]
        self.kill_egress_after_twilio_accepted(p, who)
        p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "method": "GET",
                                               "status": 429, "code": 20429, "count": 1})
        wait_for(lambda: p.log_contains("egress", "Twilio already has this message"), 20,
                 what="the new egress to find the message after the 429")
        self.assertIn("cannot read what Twilio sent", p.log_text("egress"), "the 429 was met")
        p.wait_idle()  # a second send would have been made by now
        self.assertEqual(len(self.created(p, who)), 1)

    def test_without_reconciliation_the_same_kill_sends_twice(self):
        p = self.pipeline(BATON_EGRESS_RECONCILE="false")
        who = customers(1, 701)[0]
        self.kill_egress_after_twilio_accepted(p, who)
        wait_for(lambda: len(self.listed(p, who)) == 2, 15, what="the second copy")

    def test_a_lost_answer_is_looked_up_not_resent(self):
        p = self.pipeline()
        who = customers(1, 702)[0]
        p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "method": "POST",
                                               "lose_answer": True, "count": 1})
        self.assertEqual(p.send(who, "Where is the clinic?")[0], 200)
        wait_for(lambda: p.log_contains("egress", "Twilio already has this message"), 15,
                 what="egress to find the message it sent")
        p.wait_idle()  # a second send would have been made by now
        self.assertEqual(len(self.created(p, who)), 1)

    def test_the_same_words_sent_earlier_are_not_taken_for_this_reply(self):
        p = self.pipeline()
        who = customers(1, 703)[0]
        self.assertEqual(p.send(who, "Where is the clinic?")[0], 200)
        wait_for(lambda: len(self.listed(p, who)) == 1, 10, what="the first reply")
        # The second, identical reply fails with a 500 (nothing created, but
        # egress cannot know): it must not mistake the first one for it.
        p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "method": "POST",
                                               "status": 500, "count": 1})
        self.assertEqual(p.send(who, "Where is the clinic?")[0], 200)
        wait_for(lambda: len(self.listed(p, who)) == 2, 15, what="the second reply")
        self.assertIn("Twilio has no earlier copy of this message", p.log_text("egress"))
        bodies = [m["body"] for m in self.listed(p, who)]
        self.assertEqual(bodies[0], bodies[1])


class TestBoundedOutput(unittest.TestCase):
    def test_a_runaway_answer_becomes_at_most_five_messages(self):
        p = Pipeline(env={"BATON_LOG_LEVEL": "info"})
        self.addCleanup(p.close)
        p.start_all()
        sentence = "This sentence repeats because the model is looping. "
        p.fake_post("llm", "/_fake/script", {"rules": [], "default": sentence * 4808})
        who = customers(1, 800)[0]
        self.assertEqual(p.send(who, "Tell me everything")[0], 200)
        wait_for(lambda: len(replies_by_customer(p, [who])[who]) >= 5, 10, what="the parts")
        p.wait_idle()  # a sixth part would have been sent by now
        parts = replies_by_customer(p, [who])[who]
        self.assertEqual(len(parts), 5)
        self.assertTrue(all(len(x) <= 1600 for x in parts))
        self.assertTrue(parts[-1].endswith("looping.\u2026"), parts[-1][-60:])
        self.assertIn("reply cut at 5 WhatsApp messages", p.log_text("router"))


class TestLlmErrorBody(unittest.TestCase):
    def test_anthropic_200_with_an_overloaded_error_is_retried(self):
        p = Pipeline(env={"BATON_LOG_LEVEL": "info", "BATON_LLM_RETRIES": "2"})
        self.addCleanup(p.close)
        p.start_all()
        body = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
        p.fake_post("llm", "/_fake/fail", {"path_contains": "/v1/", "status": 200, "body": body,
                                            "content_type": "application/json", "count": 1})
        who = customers(1, 801)[0]
        self.assertEqual(p.send(who, "Where is the clinic?")[0], 200)
        wait_for(lambda: replies_by_customer(p, [who])[who], 10, what="the answer")
        self.assertIn("Av. Paulista", replies_by_customer(p, [who])[who][0])
        self.assertEqual(len(p.llm_requests()), 2)
        self.assertIn("HTTP 200 with an error: overloaded_error", p.log_text("ai-worker"))


class TestFrozenEgress(unittest.TestCase):
    def test_an_egress_stopped_during_its_backoff_does_not_send_after_another_did(self):
        p = Pipeline(env={"BATON_EGRESS_RECONCILE_SETTLE_MS": "500", "BATON_LOG_LEVEL": "info"})
        self.addCleanup(p.close)
        p.start_all()
        who = customers(1, 710)[0]
        # Twilio says "later" once: the first egress waits 2 s to retry...
        p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "method": "POST",
                                               "status": 429, "retry_after": 2, "count": 1})
        self.assertEqual(p.send(who, "Where is the clinic?")[0], 200)
        wait_for(lambda: p.log_contains("egress", "retry 1 in"), 10, what="the first egress backing off")
        frozen = p.procs.pop("egress")
        frozen.send_signal(signal.SIGSTOP)
        try:
            # ...and is stopped meanwhile: the router gives the job to another.
            p.start("egress", as_name="egress-2")
            wait_for(lambda: len(replies_by_customer(p, [who])[who]) == 1, 15,
                     what="the second egress to send it")
        finally:
            frozen.send_signal(signal.SIGCONT)
            p.procs["egress"] = frozen
        wait_for(lambda: p.log_contains("egress", "was stalled past worker.timeout_ms"), 10,
                 what="the resumed egress to give the send up")
        p.wait_idle()  # both egresses done: a late second send would have been made by now
        self.assertEqual(len(replies_by_customer(p, [who])[who]), 1)
