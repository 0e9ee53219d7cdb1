"""A minimal W3C WebDriver client (Python stdlib only) for headless Chromium.

    with Browser() as b:           # starts chromedriver on a free port, opens a session
        b.get("http://127.0.0.1:8080/console")
        b.find("#token").send_keys("secret")
        b.find("#login-button").click()
        b.wait(lambda: b.js("return !document.getElementById('app-view').hidden"))
        b.screenshot("/tmp/page.png")

available() says whether chromium and chromedriver are installed (tests skip
otherwise). Only what baton's tests use is here: navigation, finding
elements by CSS selector, click, typing, text/attributes, running a script,
the window's size, screenshots and the browser's console log.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C element reference key

CHROMEDRIVER_PATHS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

HEADLESS_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"]


class WebDriverError(Exception):
    def __init__(self, status, error, message):
        super().__init__("%s (HTTP %s): %s" % (error, status, message))
        self.status = status
        self.error = error


def _first(paths, name):
    for p in paths:
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def find_chromedriver():
    return _first(CHROMEDRIVER_PATHS, "chromedriver")


def find_chromium():
    return _first(CHROMIUM_PATHS, "chromium")


def available():
    """None when both are installed, else why not (for a unittest skip)."""
    missing = [n for n, f in (("chromium", find_chromium()), ("chromedriver", find_chromedriver())) if not f]
    if missing:
        return ("%s not installed (apt-get install chromium chromium-driver, or scripts/install-deps)"
                % " and ".join(missing))
    return None


class Element:
    """A found element. One found by a selector is found again when the page
    has redrawn it (the console redraws on every refresh): a test reading
    "#x .clock" means whatever is there now, not the node of a moment ago."""

    STALE = "stale element reference"

    def __init__(self, browser, eid, locate=None):
        self.b = browser
        self.id = eid
        self.locate = locate   # () -> a fresh element id, or None: no second look

    def _path(self, tail=""):
        return "/element/%s%s" % (self.id, tail)

    def _fresh(self, fn):
        for attempt in range(5):
            try:
                return fn()
            except WebDriverError as e:
                if e.error != self.STALE or self.locate is None or attempt == 4:
                    raise
                self.id = self.locate()

    def _el(self, method, tail, body=None):
        return self._fresh(lambda: self.b._cmd(method, self._path(tail), body))

    def click(self):
        # Centred first: WebDriver's own scroll puts it at an edge, where a
        # sticky header may cover it.
        def centred_click():
            self.b.js("arguments[0].scrollIntoView({block: 'center', inline: 'nearest'})", self.ref)
            self.b._cmd("POST", self._path("/click"), {})
        self._fresh(centred_click)
        return self

    @property
    def ref(self):
        """The element as a script argument."""
        return {ELEMENT: self.id}

    def clear(self):
        self._el("POST", "/clear", {})
        return self

    def send_keys(self, text):
        self._el("POST", "/value", {"text": text})
        return self

    @property
    def text(self):
        return self._el("GET", "/text")

    def attr(self, name):
        return self._el("GET", "/attribute/" + name)

    def prop(self, name):
        return self._el("GET", "/property/" + name)

    @property
    def displayed(self):
        # Not in the W3C spec, but chromedriver implements it (the spec's own atom).
        return self._el("GET", "/displayed")

    @property
    def enabled(self):
        return self._el("GET", "/enabled")

    def find(self, css):
        def locate():
            return self._el("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]
        return Element(self.b, locate(), locate)

    def find_all(self, css):
        vs = self._el("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self.b, v[ELEMENT]) for v in vs]


class Browser:
    def __init__(self, args=None, timeout=30):
        why = available()
        if why:
            raise RuntimeError(why)
        # Port 0: chromedriver binds a free port itself and says which. A
        # port picked here and bound later could be taken meanwhile (the
        # tests run side by side and open thousands of connections).
        self.port = None
        self.base = None
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="baton-chromium-")
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([find_chromedriver(), "--port=0"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.session = None
        try:
            self._wait_ready()
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": find_chromium(),
                    "args": HEADLESS_ARGS + ["--user-data-dir=" + os.path.join(self.profile, "profile"),
                                             "--no-first-run", "--no-default-browser-check"]
                            + list(args or []),
                },
                "goog:loggingPrefs": {"browser": "ALL"},
            }}}
            v = self._req("POST", "/session", caps)
            self.session = v["sessionId"]
        except Exception:
            self.close()
            raise

    # --- transport ---
    def _req(self, method, path, body=None, timeout=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout + 30) as r:
                payload = json.loads(r.read().decode("utf-8") or "{}")
        except urllib.error.HTTPError as e:
            try:
                v = json.loads(e.read().decode("utf-8")).get("value", {})
            except ValueError:
                v = {}
            raise WebDriverError(e.code, v.get("error", "unknown error"), v.get("message", ""))
        return payload.get("value")

    def _cmd(self, method, tail, body=None):
        return self._req(method, "/session/%s%s" % (self.session, tail), body)

    def _wait_ready(self):
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("chromedriver exited with %s" % self.proc.returncode)
            if self.port is None:
                with open(self.log_path, errors="replace") as f:
                    m = re.search(r"started successfully on port (\d+)", f.read())
                if m:
                    self.port = int(m.group(1))
                    self.base = "http://127.0.0.1:%d" % self.port
            try:
                v = self.port and self._req("GET", "/status", timeout=2)
                if v and v.get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not become ready")
            time.sleep(0.1)

    # --- commands ---
    def get(self, url):
        self._cmd("POST", "/url", {"url": url})

    @property
    def url(self):
        return self._cmd("GET", "/url")

    def find(self, css):
        def locate():
            return self._cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]
        return Element(self, locate(), locate)

    def find_all(self, css):
        vs = self._cmd("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, v[ELEMENT]) for v in vs]

    def click(self, css, timeout=None):
        """Finds and clicks css, again if the page redrew it in between (stale element)."""
        def attempt():
            self.find(css).click()
            return True
        return self.wait(attempt, timeout, what="a click on " + css)

    def js(self, script, *args):
        """Runs script (a function body: `return ...`) in the page; returns its value."""
        return self._cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, pred, timeout=None, what="condition", interval=0.1):
        """Until pred() is truthy (WebDriver errors count as not yet); returns its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last = None
        while True:
            try:
                v = pred()
                if v:
                    return v
            except WebDriverError as e:
                last = e
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s%s" % (what, " (%s)" % last if last else ""))
            time.sleep(interval)

    def resize(self, width, height):
        """Sets the window's size: a taller window, a taller screenshot."""
        return self._cmd("POST", "/window/rect", {"width": width, "height": height})

    def screenshot(self, path):
        png = base64.b64decode(self._cmd("GET", "/screenshot"))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        return path

    def console_log(self):
        """The page's console messages so far (chromedriver's log extension)."""
        try:
            return self._cmd("POST", "/se/log", {"type": "browser"}) or []
        except WebDriverError:
            return []

    def close(self):
        if self.session:
            try:
                self._req("DELETE", "/session/%s" % self.session, timeout=15)
            except (OSError, WebDriverError):
                pass
            self.session = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
