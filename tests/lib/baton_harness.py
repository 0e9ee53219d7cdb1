"""Starts baton's real processes and the fakes on loopback, for tests and the demo.

A Pipeline owns one temp state directory, the fake Twilio and fake LLM
servers, and any of ingress/router/ai-worker/egress. Every process logs to
its own file under the state directory; readiness is the process's own
"ready" log line, never a sleep. Everything started is killed on close().

A check that something did NOT happen waits first for the system to have
finished the work the wrong thing would come from (p.wait_idle(): every job
queue empty and nothing in flight in each process's metrics, stable across
two fresh writes), then asserts; it never sleeps a fixed time.
"""

import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pgcluster

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKES = os.path.join(ROOT, "tests", "fakes")

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test_token_5f2b9c"
LLM_KEY = "sk-test-key-8d1e"
ADMIN_TOKEN = "admin-test-token-31c7"
PUBLIC_URL = "https://bot.example.com"
BUSINESS = "whatsapp:+14155238886"
WORKSPACE_SID = "WS" + "1" * 32
WORKFLOW_SID = "WW" + "2" * 32
# Twilio's OpenAPI specs (tests/specs/twilio, with their licence): the fake
# checks every Conversations, Flex and TaskRouter request against them.
SPECS = os.path.join(ROOT, "tests", "specs", "twilio")

# Media (issue 16): the fixtures, and the MediaSids the fake Twilio preloads
# (tests/fakes/twilio_media.py, which documents each). A MediaUrl for one is
# Pipeline.media_url(sid).
MEDIA_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "media")
MEDIA_JPEG = "ME" + "0" * 31 + "1"          # rash.jpg, image/jpeg
MEDIA_OGG = "ME" + "0" * 31 + "2"           # voice.ogg, audio/ogg (Ogg/Opus)
MEDIA_PDF = "ME" + "0" * 31 + "3"           # exam.pdf, application/pdf
MEDIA_MISSING = "ME" + "0" * 31 + "4"       # 404
MEDIA_SLOW = "ME" + "0" * 31 + "5"          # rash.jpg after media_config slow_ms (10 s)
MEDIA_OVERSIZED = "ME" + "0" * 31 + "6"     # image/jpeg, 6 MiB
MEDIA_LYING = "ME" + "0" * 31 + "7"         # Content-Type image/jpeg, bytes an HTML page
MEDIA_CORRUPT_OGG = "ME" + "0" * 31 + "8"   # Content-Type audio/ogg, garbage bytes
MEDIA_REDIRECT = "ME" + "0" * 31 + "9"      # 307 to /cdn/{sid} (no auth), then rash.jpg
# The Content-Type Twilio puts in MediaContentTypeN for each.
MEDIA_TYPES = {MEDIA_JPEG: "image/jpeg", MEDIA_OGG: "audio/ogg", MEDIA_PDF: "application/pdf",
               MEDIA_MISSING: "image/jpeg", MEDIA_SLOW: "image/jpeg",
               MEDIA_OVERSIZED: "image/jpeg", MEDIA_LYING: "image/jpeg",
               MEDIA_CORRUPT_OGG: "audio/ogg", MEDIA_REDIRECT: "image/jpeg"}


def media_fixture(name):
    """The bytes of tests/fixtures/media/NAME (rash.jpg, voice.ogg, exam.pdf)."""
    with open(os.path.join(MEDIA_FIXTURES, name), "rb") as f:
        return f.read()


def message_type_of(content_type):
    """WhatsApp's MessageType for a media Content-Type, as Twilio reports it."""
    major = content_type.split("/")[0]
    return major if major in ("image", "audio", "video") else "document"


PROCS = {
    "ingress": "baton-ingress",
    "console": "baton-console",
    "router": "baton-router",
    "ai-worker": "baton-ai-worker",
    "egress": "baton-egress",
    "flex-worker": "baton-flex-worker",
}


def twilio_signature(token, url, params):
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + sorted name+value))."""
    data = url
    for name in sorted(set(k for k, _ in params)):
        for value in sorted(set(v for k, v in params if k == name)):
            data += name + value
    mac = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def masked(addr):
    """How batonctl, the console and the logs show an address: all digits but the last 4 hidden."""
    digits = sum(ch.isdigit() for ch in addr)
    out, seen = "", 0
    for ch in addr:
        if ch.isdigit():
            seen += 1
            if seen <= digits - 4:
                ch = "*"
        out += ch
    return out


free_port = pgcluster.free_port


# The runner sets this above 1 when tests share the machine (parallel jobs,
# sanitizer builds): a deadline for something to happen stretches with it.
SLOW = float(os.environ.get("BATON_TEST_SLOW", "1") or 1)


# Polls start at the caller's interval and slow down to WAIT_MAX_INTERVAL_S:
# a short wait still answers within a few tens of milliseconds, while a long
# one stops asking the fakes and batonctl fifty times a second, work that
# starved the processes under test when the tests run side by side.
WAIT_MAX_INTERVAL_S = 0.1


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout * SLOW
    pause = interval
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(pause)
        pause = min(pause * 1.5, max(interval, WAIT_MAX_INTERVAL_S))


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), value))
    return out


def _proc_state(pid):
    """The state letter of a baton process (R, S, T...), None when it is not one."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    comm = stat[stat.find("(") + 1:stat.rfind(")")]
    if not comm.startswith("baton-"):
        return None     # gone, and its number taken by something else
    return stat[stat.rfind(")") + 2:][:1]


class Metrics:
    """What the live baton processes of one state directory last wrote to
    STATE_DIR/metrics (README "Metrics"): one entry a process, with the
    file's mtime. Files of dead processes are left out, and so are those of
    stopped (SIGSTOP) ones, which can do nothing until they are resumed."""

    def __init__(self, metrics_dir):
        self.files = {}     # "router-123" -> (process, pid, mtime, samples)
        self.stopped = []
        try:
            names = os.listdir(metrics_dir)
        except OSError:
            names = []
        for name in names:
            m = re.match(r"^([a-z-]+)-(\d+)\.prom$", name)
            if not m:
                continue
            proc, pid = m.group(1), int(m.group(2))
            state = _proc_state(pid)
            if state in (None, "Z", "X"):
                continue
            if state in ("T", "t"):
                self.stopped.append(name)
                continue
            try:
                with open(os.path.join(metrics_dir, name)) as f:
                    mtime = os.fstat(f.fileno()).st_mtime
                    text = f.read()
            except OSError:
                continue    # removed at a clean exit meanwhile
            self.files[name[:-5]] = (proc, pid, mtime, parse_metrics(text))

    def processes(self, proc=None):
        return [k for k, v in self.files.items() if proc is None or v[0] == proc]

    def oldest(self, proc=None):
        """The oldest write among the processes of that kind (0 when none)."""
        t = [v[2] for v in self.files.values() if proc is None or v[0] == proc]
        return min(t) if t else 0

    def sum(self, name, proc=None, **labels):
        total = 0.0
        for p, _, _, samples in self.files.values():
            if proc is not None and p != proc:
                continue
            for n, lab, v in samples:
                if n == name and all(lab.get(k) == w for k, w in labels.items()):
                    total += v
        return total

    def counters(self):
        """Every event counter of every process: equal twice means nothing happened between."""
        out = {}
        for key, (_, _, _, samples) in self.files.items():
            for n, lab, v in samples:
                if n.endswith("_total") and not n.startswith("process_"):
                    out[(key, n, tuple(sorted(lab.items())))] = v
        return out

    def busy(self, queued=None):
        """What is not idle, as text ('' when idle). queued: {kind: n}, at most that
        many jobs of a kind may stay queued (held back on purpose, as a handoff
        waiting for business hours); no other job may be queued or in flight."""
        queued = queued or {}
        out = []
        if not self.processes("router"):
            out.append("no router")
        for kind in ("ai", "send", "flex"):
            q = self.sum("baton_router_jobs_queued", "router", kind=kind)
            if q > queued.get(kind, 0):
                out.append("%d %s jobs queued" % (q, kind))
            f = self.sum("baton_router_jobs_in_flight", "router", kind=kind)
            if f:
                out.append("%d %s jobs in flight" % (f, kind))
        for key, (_, _, _, samples) in sorted(self.files.items()):
            for n, _, v in samples:
                if v and n in ("baton_worker_jobs_in_flight", "baton_worker_results_unacked",
                               "baton_worker_http_pending", "baton_ingress_requests_in_flight"):
                    out.append("%s: %s %g" % (key, n, v))
        return ", ".join(out)


def http(method, url, body=None, headers=None, timeout=10):
    """Returns (status, body text, headers). Never raises for HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), dict(e.headers)


_shared_pg = None


class ForkedFake:
    """A fake forked by the fork server, driven like a subprocess.Popen: the
    kernel reaps it, so poll() says only whether it is still there."""

    def __init__(self, pid, args):
        self.pid, self.args = pid, args
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0
            except PermissionError:
                pass
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode


_zygote = None
_zygote_lock = threading.Lock()


def fork_fake(name, args, out, log, cwd):
    """Starts fake NAME (tests/fakes/NAME.py) with args, forked from this
    process's fork server (started on first use; it has the fakes imported
    and the specs parsed, so a fake costs a fork, not an interpreter)."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote.poll() is not None:
            _zygote = subprocess.Popen(["python3", os.path.join(FAKES, "zygote.py"), SPECS],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        req = {"module": name, "args": list(args), "stdout": out, "stderr": log, "cwd": cwd,
               "env": dict(os.environ)}
        _zygote.stdin.write(json.dumps(req) + "\n")
        _zygote.stdin.flush()
        line = _zygote.stdout.readline()
    if not line:
        raise RuntimeError("the fakes' fork server (tests/fakes/zygote.py) died")
    return ForkedFake(json.loads(line)["pid"], ["python3", os.path.join(FAKES, name + ".py")] + args)


def shared_pg():
    """The PostgreSQL cluster of this test process: the run's (tests/run.py
    starts one and says where in BATON_TEST_PG_PORT), else one of its own."""
    global _shared_pg
    if _shared_pg is None:
        port = os.environ.get("BATON_TEST_PG_PORT")
        if port:
            _shared_pg = pgcluster.PgCluster.attach(int(port))
        else:
            import atexit
            _shared_pg = pgcluster.PgCluster().start()
            atexit.register(_shared_pg.close)
    return _shared_pg


def test_backend():
    """lmdb, or postgres when the run asks for it (BATON_TEST_BACKEND)."""
    return os.environ.get("BATON_TEST_BACKEND", "lmdb")


class Pipeline:
    def __init__(self, bindir=None, env=None, script=None, provider="anthropic",
                 llm_latency_ms=0, keep=False, sid_seed=None, twilio_api_key=None,
                 backend=None, pg_dsn=None, twilio_port=0):
        self.bindir = bindir or os.environ.get("BATON_BIN", os.path.join(ROOT, "build", "bin"))
        # tmpfs when there is one: every process rewrites its metrics file ten
        # times a second here, and each rewrite is a new inode.
        self.dir = tempfile.mkdtemp(prefix="baton-", dir=pgcluster.scratch_dir())
        self.keep = keep
        self.procs = {}
        self.logs = {}
        self.fakes = {}
        self.extra_env = dict(env or {})
        self.script = script or os.path.join(FAKES, "clinic_script.json")
        self.provider = provider
        self.llm_latency_ms = llm_latency_ms
        self.ingress_port = None
        self.console_port = None
        # MessageSids: senders on many threads each get their own (next() on a
        # count is one step under the GIL; += then a read was two, and two
        # customers once shared a SID, the second acknowledged as a duplicate).
        self._sids = itertools.count(1)
        self._sent_cache = {}   # sent_messages(): what the fake Twilio returned so far
        # Deterministic SIDs in the fake Twilio (fake_twilio.py --sid-seed); None
        # leaves it to $FAKE_TWILIO_SID_SEED, random when that is unset.
        self.sid_seed = sid_seed
        # (SK..., secret): an API key the fake Twilio accepts beside the token.
        self.twilio_api_key = twilio_api_key
        # The fake Twilio's port, 0 = any: a replayed capture's MediaUrls name
        # the port of the run that made it.
        self.twilio_fixed_port = twilio_port
        # The state's backend: with postgres, a database of its own in the
        # process's cluster (dropped by close).
        self.backend = "postgres" if pg_dsn else (backend or test_backend())
        self.pg, self.pg_db, self.pg_dsn = None, None, pg_dsn
        if self.backend == "postgres" and not pg_dsn:
            self.pg = shared_pg()
            self.pg_db = self.pg.create_db()
            self.pg_dsn = self.pg.dsn(self.pg_db)

    # --- fakes ---
    def _start_fake(self, name, args):
        """Forked from this test process's fork server (tests/fakes/zygote.py);
        the ready line, {"port": N}, comes through NAME.out."""
        log = os.path.join(self.dir, name + ".log")
        out = os.path.join(self.dir, name + ".out")
        p = fork_fake(name, args, out, log, self.dir)
        deadline = time.monotonic() + 20 * SLOW
        line = ""
        while True:
            try:
                with open(out) as f:
                    line = f.readline()
            except OSError:
                line = ""
            if line.endswith("\n"):
                break
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(name + " did not start; see " + log)
            time.sleep(0.005)
        port = json.loads(line)["port"]
        self.fakes[name] = (p, port)
        return port

    def start_fakes(self):
        self._sent_cache.clear()
        if not os.path.isfile(os.path.join(SPECS, "twilio_conversations_v1.json")):
            raise RuntimeError("Twilio's OpenAPI specs are missing from %s" % SPECS)
        specs = ["--specs", SPECS]
        seed = ["--sid-seed", str(self.sid_seed)] if self.sid_seed is not None else []
        key = ["--api-key", "%s:%s" % self.twilio_api_key] if self.twilio_api_key else []
        self.twilio_port = self._start_fake("fake_twilio", [
            "--port", str(self.twilio_fixed_port), "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN]
            + specs + seed + key)
        self.llm_port = self._start_fake("fake_llm", [
            "--port", "0", "--script", self.script, "--api-key", LLM_KEY,
            "--latency-ms", str(self.llm_latency_ms)])

    @property
    def twilio_url(self):
        return "http://127.0.0.1:%d" % self.twilio_port

    @property
    def llm_url(self):
        return "http://127.0.0.1:%d" % self.llm_port

    # --- baton processes ---
    def env(self):
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("BATON_"):
                del e[k]
        e.update({
            # The fakes: placeholder SIDs and test tokens are fine here.
            "BATON_SANDBOX": "true",
            "BATON_STATE_DIR": os.path.join(self.dir, "state"),
            "BATON_HTTP_PORT": "0",
            "BATON_CONSOLE_PORT": "0",
            "BATON_HTTP_PUBLIC_URL": PUBLIC_URL,
            "BATON_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "BATON_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "BATON_TWILIO_API_BASE": self.twilio_url,
            "BATON_TWILIO_CONVERSATIONS_BASE": self.twilio_url,
            "BATON_TWILIO_FLEX_BASE": self.twilio_url,
            "BATON_TWILIO_TASKROUTER_BASE": self.twilio_url,
            # Customers' media, the Media Content Service and transcription:
            # the fakes on loopback (the sandbox's fixed ports are not theirs).
            "BATON_TWILIO_MCS_BASE": self.twilio_url,
            "BATON_MEDIA_ALLOW_HOSTS": "127.0.0.1",
            "BATON_TRANSCRIBE_BASE_URL": self.llm_url,
            "BATON_TRANSCRIBE_API_KEY": LLM_KEY,
            "BATON_FLEX_WORKSPACE_SID": WORKSPACE_SID,
            "BATON_FLEX_WORKFLOW_SID": WORKFLOW_SID,
            "BATON_LLM_PROVIDER": self.provider,
            "BATON_LLM_BASE_URL": self.llm_url,
            "BATON_LLM_API_KEY": LLM_KEY,
            "BATON_LLM_RETRIES": "1",
            "BATON_WORKER_HEARTBEAT_MS": "200",
            "BATON_WORKER_TIMEOUT_MS": "1000",
            "BATON_LMDB_SYNC": "false",
            "BATON_ADMIN_TOKEN": ADMIN_TOKEN,
            "BATON_HANDOFF_RETRY_BASE_MS": "100",
            "BATON_LOG_LEVEL": "debug",
            # Fresh metrics files (README "Metrics") are what wait_idle() watches.
            "BATON_METRICS_INTERVAL_MS": "100",
        })
        if self.pg_dsn:
            e.update({"BATON_STATE_BACKEND": "postgres",
                      "BATON_POSTGRES_DSN": self.pg_dsn,
                      "BATON_ROUTER_LEASE_MS": "2000"})
        e.update(self.extra_env)
        return e

    def start(self, name, wait=True, as_name=None, env=None, nofile=None):
        """Start one process of kind name; as_name lets a second instance run beside it;
        nofile starts it with that soft open-files limit (systemd's default is 1024)."""
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        tag = as_name or name
        path = os.path.join(self.dir, tag + ".log")
        log = open(path, "a")
        start_at = os.path.getsize(path)
        penv = self.env()
        penv.update(env or {})
        def limit():
            import resource
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
        p = subprocess.Popen([os.path.join(self.bindir, PROCS[name])], env=penv,
                             stdout=log, stderr=log, preexec_fn=limit if nofile else None)
        self.procs[tag] = p
        self.logs[tag] = path
        if wait:
            line = wait_for(lambda: self._ready_line(path, start_at, p), 10,
                            what=name + " ready")
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self.ingress_port = int(m.group(1))
                self._point_webhooks()
            m = re.search(r"console on http://[^:]+:(\d+)", line)
            if m:
                self.console_port = int(m.group(1))
        return p

    def _point_webhooks(self):
        """Tell the fake Twilio where baton's webhooks are (a new port after each start)."""
        if "fake_twilio" in self.fakes:
            self.fake_post("twilio", "/_fake/webhooks/config", {
                "deliver_to": "http://127.0.0.1:%d" % self.ingress_port,
                "public_url": PUBLIC_URL, "auth_token": AUTH_TOKEN})

    def _ready_line(self, path, start_at, p):
        if p.poll() is not None:
            raise AssertionError("process exited with %s; log:\n%s" % (p.returncode, self.log_text(path)))
        with open(path) as f:
            f.seek(start_at)
            for line in f:
                if '"msg":"ready:' in line:
                    return line
        return None

    def start_routers(self, n):
        """n routers of one active/standby set (state.backend = postgres): each
        binds its own endpoints and keeps its cache in DIR/router-i; every
        other process lists them all. The first started takes the lease."""
        ingress = ["ipc://%s/r%d-in.ipc" % (self.dir, i) for i in range(n)]
        work = ["ipc://%s/r%d-wk.ipc" % (self.dir, i) for i in range(n)]
        self.extra_env.update({"BATON_ROUTER_INGRESS_ENDPOINT": ",".join(ingress),
                               "BATON_ROUTER_WORK_ENDPOINT": ",".join(work)})
        for i in range(n):
            self.start_router(i)
        return ["router-%d" % i for i in range(n)]

    def start_router(self, i):
        """Router i of start_routers (again, after a kill)."""
        cache = os.path.join(self.dir, "router-%d" % i)
        return self.start("router", as_name="router-%d" % i, env={
            "BATON_ROUTER_CACHE_DIR": cache,
            "BATON_ROUTER_INGRESS_BIND": "ipc://%s/r%d-in.ipc" % (self.dir, i),
            "BATON_ROUTER_WORK_BIND": "ipc://%s/r%d-wk.ipc" % (self.dir, i)})

    def start_all(self):
        self.start_fakes()
        for name in ("router", "ai-worker", "egress", "flex-worker", "ingress"):
            self.start(name)
        # The operator console runs when it has a token to serve with.
        if self.env().get("BATON_CONSOLE_TOKEN"):
            self.start("console")
        # Workers join the router on their first heartbeat.
        self.wait_workers(1)
        return self

    def wait_workers(self, n):
        """Until each worker kind has joined the router n times (restarts count)."""
        def joined():
            t = self.log_text("router")
            return all(t.count(k + " worker joined") >= n for k in ("ai", "egress", "flex"))
        wait_for(joined, 10, what="workers joined")

    # --- metrics: what the processes say they are doing ---
    def metrics(self):
        """The metrics files of the live processes of this state directory (Metrics)."""
        return Metrics(os.path.join(self.dir, "state", "metrics"))

    def wait_metrics(self, pred, timeout=10, proc=None, what="metrics"):
        """Until pred(Metrics) holds in files written after this call began (those
        of proc's kind, or of every live process): a stale file never answers."""
        since = time.time()

        def fresh():
            m = self.metrics()
            keys = m.processes(proc)
            if not keys or m.oldest(proc) < since:
                return None
            return pred(m) and m
        return wait_for(fresh, timeout, interval=0.05, what=what)

    def wait_idle(self, timeout=10, queued=None, what="the pipeline to be idle"):
        """Until baton has finished all the work it has: no job queued at the
        router (but at most queued[kind] held back on purpose) or in
        flight, no worker running a job, holding an unacknowledged result or an
        HTTP call, no ingress request open; seen in two rounds of metrics files
        written after this call began (the router's and every worker's file
        rewritten between them), with no counter of any process moved between
        them; and
        the store's jobs table agreeing (batonctl stats). Returns the last
        Metrics. A check that something did not happen comes after this."""
        since = time.time()
        last = {"m": None, "busy": "no metrics yet"}

        def settled():
            m = self.metrics()
            prev, last["m"] = last["m"], None
            # ingress writes its file about once a second: it is not waited for
            # (a webhook it holds is the router's to commit), but any counter
            # of it that moves still counts.
            loop = [k for k, v in m.files.items() if v[0] != "ingress"]
            if not loop or min(m.files[k][2] for k in loop) < since:
                last["busy"] = "metrics files older than the wait"
                return False
            busy = m.busy(queued)
            if busy:
                last["busy"] = busy
                return False
            last["m"] = m
            if prev is None or set(prev.files) != set(m.files):
                return False
            if any(m.files[k][2] <= prev.files[k][2] for k in loop):
                last["m"] = prev    # not every file rewritten yet: compare with the older round
                return False
            if m.counters() != prev.counters():
                last["busy"] = "counters moved"
                return False
            jobs = self.stored_jobs()
            if any(n > (queued or {}).get(k, 0) for k, n in jobs.items()):
                last["busy"] = "jobs in the store: %s" % jobs
                return False
            return m
        try:
            return wait_for(settled, timeout, interval=0.05, what=what)
        except AssertionError as e:
            raise AssertionError("%s (last seen: %s)" % (e, last["busy"]))

    def stored_jobs(self):
        """{kind: n} of the unfinished jobs in LMDB (batonctl stats)."""
        p = subprocess.run([os.path.join(self.bindir, "batonctl"), "--json", "stats"],
                           env=self.env(), capture_output=True, text=True, timeout=20)
        if p.returncode != 0:
            return {"batonctl": p.returncode}
        kinds = json.loads(p.stdout)["jobs"]["by_kind"]
        return {k: v for k, v in kinds.items() if v}

    def stop(self, name, sig=signal.SIGTERM, timeout=10):
        p = self.procs.pop(name, None)
        if not p:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def log_text(self, path_or_name):
        path = self.logs.get(path_or_name, path_or_name)
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    def log_contains(self, name, text):
        return text in self.log_text(name)

    def log_lines(self, name):
        out = []
        for line in self.log_text(name).splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def close(self):
        """Stops everything. A baton process that does not exit 0 on SIGTERM
        (crash, sanitizer report, leak) fails the test that owned it."""
        unclean = []
        # Router last: a worker stopping after it would linger on its goodbye.
        for name in sorted(self.procs, key=lambda n: n == "router"):
            rc = self.stop(name, signal.SIGTERM, 10)
            if rc != 0:
                unclean.append("%s exited %s:\n%s" % (name, rc, self.log_text(name)[-3000:]))
        for p, _ in self.fakes.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.fakes = {}
        # No secret ever reaches a log line (tokens, keys, Authorization).
        for name in list(self.logs):
            text = self.log_text(name)
            for secret in (AUTH_TOKEN, LLM_KEY, ADMIN_TOKEN):
                if secret in text:
                    unclean.append("%s: a secret appears in the log" % name)
        if self.pg and self.pg_db:
            self.pg.drop_db(self.pg_db)
            self.pg_db = None
        if unclean:
            self.keep = True
        if not self.keep and not os.environ.get("BATON_KEEP"):
            subprocess.call(["rm", "-rf", self.dir])
        if unclean:
            raise AssertionError("unclean exit (state kept in %s): %s" % (self.dir, "\n".join(unclean)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- traffic ---
    def new_sid(self, prefix):
        """A SID no other message of this run has: the time (ms) and a count."""
        return "%s%016x%016x" % (prefix, int(time.time() * 1000), next(self._sids))

    def webhook_params(self, customer, body, sid=None, to=BUSINESS, name="Ana", extra=None):
        if sid is None:
            sid = self.new_sid("SM")
        params = [
            ("SmsMessageSid", sid), ("NumMedia", "0"), ("ProfileName", name),
            ("MessageType", "text"), ("SmsSid", sid), ("WaId", customer.split("+")[-1]),
            ("SmsStatus", "received"), ("Body", body), ("To", to), ("NumSegments", "1"),
            ("ReferralNumMedia", "0"), ("MessageSid", sid), ("AccountSid", ACCOUNT_SID),
            ("From", customer), ("ApiVersion", "2010-04-01"),
        ]
        if extra:
            params += list(extra)
        return params

    def media_url(self, media_sid, message_sid=None):
        """The MediaUrlN Twilio gives for a media of an inbound message, on the fake
        (GET needs basic auth with ACCOUNT_SID:AUTH_TOKEN)."""
        message_sid = message_sid or "MM" + "0" * 32
        return "%s/2010-04-01/Accounts/%s/Messages/%s/Media/%s" % (
            self.twilio_url, ACCOUNT_SID, message_sid, media_sid)

    def rich_webhook_params(self, customer, message_type, body="", media=(), sid=None,
                            to=BUSINESS, name="Ana", location=None, button=None, extra=None):
        """An inbound WhatsApp webhook as Twilio sends it for a non-text message.

        message_type: Twilio's MessageType (image, audio, video, document, sticker,
        location, button, interactive, text...). media: up to 10 items, each a
        preloaded or added MediaSid (its URL from media_url, its type from
        MEDIA_TYPES, else image/jpeg) or a (url_or_sid, content_type) pair; they
        become NumMedia, MediaContentTypeN and MediaUrlN. location: {"Latitude",
        "Longitude", "Address"?, "Label"?} or (lat, lon[, address[, label]]).
        button: (ButtonText, ButtonPayload) of a quick-reply tap. A message with
        media gets an MM SID, as on Twilio."""
        media = list(media)
        if len(media) > 10:
            raise ValueError("Twilio sends at most 10 media")
        if sid is None and media:
            sid = self.new_sid("MM")
        params = self.webhook_params(customer, body, sid=sid, to=to, name=name)
        msid = dict(params)["MessageSid"]
        params = [(k, str(len(media)) if k == "NumMedia" else
                   message_type if k == "MessageType" else v) for k, v in params]
        for i, item in enumerate(media):
            ref, ctype = (item, None) if isinstance(item, str) else item
            url = ref if ref.startswith("http") else self.media_url(ref, msid)
            ctype = ctype or MEDIA_TYPES.get(ref, "image/jpeg")
            params += [("MediaContentType%d" % i, ctype), ("MediaUrl%d" % i, url)]
        if location is not None:
            if not isinstance(location, dict):
                keys = ("Latitude", "Longitude", "Address", "Label")
                location = dict(zip(keys, location))
            params += [(k, str(location[k])) for k in ("Latitude", "Longitude", "Address", "Label")
                       if location.get(k) is not None]
        if button is not None:
            params += [("ButtonText", button[0]), ("ButtonPayload", button[1])]
        if extra:
            params += list(extra)
        return params

    def send_rich(self, customer, message_type, body="", **kw):
        """Signed rich inbound WhatsApp message (rich_webhook_params); returns
        (status, body, params)."""
        params = self.rich_webhook_params(customer, message_type, body, **kw)
        st, text, _ = self.post_webhook(params)
        return st, text, params

    def send_media(self, customer, media_sid, body="", content_type=None, **kw):
        """A customer's photo / voice note / document (one media, MessageType from
        its type), with an optional caption; returns (status, body, params)."""
        ctype = content_type or MEDIA_TYPES.get(media_sid, "image/jpeg")
        return self.send_rich(customer, message_type_of(ctype), body,
                              media=[(media_sid, ctype)], **kw)

    def post_webhook(self, params, signature=True, token=AUTH_TOKEN, url=None, path="/twilio/messages",
                     headers=None, raw_body=None):
        body = raw_body if raw_body is not None else urllib.parse.urlencode(params).encode()
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is True:
            h["X-Twilio-Signature"] = twilio_signature(token, (url or PUBLIC_URL) + path, params)
        elif signature:
            h["X-Twilio-Signature"] = signature
        h.update(headers or {})
        return http("POST", "http://127.0.0.1:%d%s" % (self.ingress_port, path), body, h)

    def send(self, customer, body, **kw):
        """Signed inbound WhatsApp message; returns (status, body, params)."""
        params = self.webhook_params(customer, body, **kw)
        st, text, _ = self.post_webhook(params)
        return st, text, params

    def fake_get(self, fake, path):
        port = self.twilio_port if fake == "twilio" else self.llm_port
        st, text, _ = http("GET", "http://127.0.0.1:%d%s" % (port, path))
        assert st == 200, (st, text)
        return json.loads(text)

    def fake_post(self, fake, path, obj):
        port = self.twilio_port if fake == "twilio" else self.llm_port
        if fake == "twilio" and path.startswith("/_fake/reset"):
            self._sent_cache.clear()
        st, text, _ = http("POST", "http://127.0.0.1:%d%s" % (port, path),
                           json.dumps(obj).encode(), {"Content-Type": "application/json"})
        assert st == 200, (st, text)
        return json.loads(text) if text else None

    def sent_messages(self, to=None):
        """Messages the fake Twilio accepted (201), in arrival order."""
        # The fake's records never change once numbered, so only the ones
        # after the last seen are fetched (tests poll this in loops); a reset
        # or another fake Twilio starts the list again.
        cache = self._sent_cache
        if cache.get("port") != self.twilio_port:
            cache.clear()
            cache.update(port=self.twilio_port, seq=0, recs=[])
        for r in self.fake_get("twilio", "/_fake/requests?path_contains=Messages.json&since=%d"
                               % cache["seq"]):
            cache["seq"] = max(cache["seq"], r["seq"])
            if r.get("status") != 201:
                continue
            form = r.get("form") or {}
            rec = {k: v[0] for k, v in form.items()}
            rec["sid"] = (r.get("response") or {}).get("sid")
            cache["recs"].append(rec)
        return [dict(rec) for rec in cache["recs"] if to is None or rec.get("To") == to]

    def llm_requests(self):
        return self.fake_get("llm", "/_fake/requests")

    # --- media (issue 16) ---
    def llm_media_blocks(self, kind=None):
        """Every image / document block the fake LLM received, in order: {"type",
        "media_type", "bytes" (decoded size), "source", "message", "block", "role",
        "seq", "path", "status"}; kind "image" or "document" keeps those."""
        out = []
        for r in self.fake_get("llm", "/_fake/media_blocks"):
            for b in r["blocks"]:
                if kind is None or b["type"] == kind:
                    out.append(dict(b, seq=r["seq"], path=r["path"], status=r["status"]))
        return out

    def transcriptions(self):
        """Calls of the fake LLM's /v1/audio/transcriptions: {"model", "filename",
        "content_type", "bytes", "language", "prompt", "response_format", "seq",
        "path", "status", "authorization"}."""
        return self.fake_get("llm", "/_fake/transcriptions")

    def set_transcription(self, **conf):
        """text=, fail_status= (None clears), delay_ms=: what transcription answers."""
        return self.fake_post("llm", "/_fake/transcription", conf)

    def mcs_uploads(self, content=False):
        """Media baton uploaded to the fake MCS: {"sid", "service_sid", "content_type",
        "filename", "size", "sha256", "message_sid", "channel_sid", "date_created",
        "content_b64" (content=True)}."""
        return self.fake_get("twilio", "/_fake/mcs" + ("?content=1" if content else ""))

    def conversation_media(self, conversation_sid=None):
        """Conversations messages that carry media: {"conversation_sid", "sid",
        "index", "author", "body", "media": [{"sid", "content_type", "filename",
        "size"}]}, in order."""
        out = []
        for c in self.fake_get("twilio", "/_fake/state")["conversations"]:
            if conversation_sid is not None and c["sid"] != conversation_sid:
                continue
            for m in c["messages"]:
                if m.get("media"):
                    out.append({"conversation_sid": c["sid"], "sid": m["sid"],
                                "index": m["index"], "author": m["author"],
                                "body": m["body"], "media": m["media"]})
        return out

    def media_fetches(self, media_sid=None):
        """Records of GETs of Messaging media URLs (and /cdn/ after a redirect), in
        order: each has "media_sid", "status", "auth_user" (None without basic
        auth), "media_bytes" when bytes were served."""
        out = []
        for r in self.fake_get("twilio", "/_fake/requests"):
            if "media_sid" not in r or r["path"].startswith("/v1/"):
                continue
            if media_sid is None or r["media_sid"] == media_sid:
                out.append(r)
        return out

    def add_media(self, content_type, data, sid=None, status=200, delay_ms=0, filename=None,
                  redirect=False):
        """Messaging media served by the fake Twilio from now on; returns its SID.
        redirect: True (307 to the fake's own /cdn/) or "host:port" to redirect to."""
        obj = {"content_type": content_type, "data_b64": base64.b64encode(data).decode(),
               "status": status, "delay_ms": delay_ms, "redirect": redirect}
        if sid:
            obj["sid"] = sid
        if filename:
            obj["filename"] = filename
        return self.fake_post("twilio", "/_fake/media", obj)["sid"]

    def media_config(self, **cfg):
        """slow_ms= (the slow media's wait), redirect= (every media GET 307s)."""
        return self.fake_post("twilio", "/_fake/media_config", cfg)

    # --- through the fake Twilio, as a real customer and agent would ---
    def customer(self, customer, body, to=BUSINESS, name="Ana", media=None, message_type=None,
                 params=None):
        """A WhatsApp message as Twilio routes it: into the Flex conversation the
        customer is bound to, or to baton's Messaging webhook. media: MediaSids
        of the fake (MEDIA_JPEG...), message_type: Twilio's MessageType (default
        from the first media), params: more webhook parameters (Latitude...);
        a rich message goes to the Messaging webhook only."""
        obj = {"from": customer, "to": to, "body": body, "profile_name": name}
        if media:
            obj["media"] = list(media)
        if message_type:
            obj["message_type"] = message_type
        if params:
            obj["params"] = dict(params)
        r = self.fake_post("twilio", "/_fake/inbound", obj)
        assert r["status"] in (200, 204), r
        return r

    def whatsapp(self, to):
        """Everything the customer received on WhatsApp, in order."""
        q = urllib.parse.urlencode({"to": to})
        return self.fake_get("twilio", "/_fake/whatsapp?" + q)

    def agent(self, **cfg):
        cfg.setdefault("enabled", True)
        return self.fake_post("twilio", "/_fake/agent", cfg)

    def ctl(self, *args):
        """batonctl with this pipeline's settings; returns (exit code, stdout, stderr)."""
        env = self.env()
        env["BATON_HTTP_PORT"] = str(self.ingress_port)  # the port ingress really got
        p = subprocess.run([os.path.join(self.bindir, "batonctl")] + list(args), env=env,
                           capture_output=True, text=True, timeout=20)
        return p.returncode, p.stdout, p.stderr

    def show(self, customer):
        rc, out, err = self.ctl("--json", "show", customer)
        assert rc == 0, (rc, err)
        return json.loads(out)

    def signed(self, path, params):
        """A webhook signed as Twilio would sign it, straight to ingress."""
        return self.post_webhook(params, path=path)
