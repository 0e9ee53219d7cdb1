"""PostgreSQL clusters for the tests: initdb and pg_ctl on a temporary
directory and a free port, as the current user, or as the postgres user
when the tests run as root (PostgreSQL refuses to run as root).

    c = PgCluster().start()
    dsn = c.create_db()          # a fresh database, baton's user, trust auth
    c.stop()

A streaming standby of a cluster: PgCluster(primary=c).start(); then
c.require_sync() makes it synchronous (a commit returns once the standby
has it: with no standby attached, commits wait). Binaries come from /usr/lib/postgresql/<version>/bin
(Debian's postgresql package; scripts/install-deps installs it)."""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

USER = "baton"


def bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    return None


def available():
    """None when clusters can be made here, else why not."""
    if not bindir():
        return "PostgreSQL's server binaries are not installed (scripts/install-deps)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user to run PostgreSQL as"
    return None


def free_port():
    """A loopback TCP port free right now (for a process that must be told its port)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scratch_dir():
    """/dev/shm when it has room, else the default temporary directory (None).
    A cluster creates and drops a few hundred files a database, each test a
    database: on tmpfs that costs little, on ext4 it kept a core busy
    searching inode bitmaps while the tests ran side by side."""
    try:
        st = os.statvfs("/dev/shm")
        if os.access("/dev/shm", os.W_OK) and st.f_bavail * st.f_frsize >= (2 << 30):
            return "/dev/shm"
    except OSError:
        pass
    return None


class PgCluster:
    def __init__(self, primary=None, fsync=False):
        self.primary = primary
        self.fsync = fsync
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="baton-pg-", dir=scratch_dir())
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.bin = bindir()
        self.owner = None
        if os.geteuid() == 0:
            self.owner = pwd.getpwnam("postgres")
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        self.running = False

    @classmethod
    def attach(cls, port):
        """A cluster someone else started and stops (tests/run.py's)."""
        c = cls.__new__(cls)
        c.primary, c.fsync, c.port, c.bin = None, False, port, bindir()
        c.dir = c.data = c.log = None
        c.owner, c.running = None, False
        return c

    def run(self, prog, *args, check=True, timeout=60):
        cmd = [os.path.join(self.bin, prog)] + [str(a) for a in args]
        if self.owner:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s\n%s" % (prog, p.returncode, p.stdout, p.stderr,
                                                             self.log_tail()))
        return p

    def log_tail(self, n=30):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def start(self):
        if self.primary:
            # A copy of the primary that streams its WAL (-R writes standby.signal
            # and primary_conninfo).
            self.run("pg_basebackup", "-h", "127.0.0.1", "-p", self.primary.port, "-U", USER,
                     "-D", self.data, "-X", "stream", "-R", "--no-sync", "--checkpoint=fast")
        else:
            self.run("initdb", "-D", self.data, "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8")
        conf = [
            "port = %d" % self.port,
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = '%s'" % self.dir,
            "fsync = %s" % ("on" if self.fsync else "off"),
            "synchronous_commit = on",
            "max_connections = 200",
            "shared_buffers = 32MB",
            # Segments in the data directory: a killed cluster leaves none in /dev/shm.
            "dynamic_shared_memory_type = mmap",
            "wal_level = replica",
            "max_wal_senders = 5",
            "hot_standby = on",
            "log_min_messages = warning",
        ]
        if self.primary:
            conf.append("primary_conninfo = 'host=127.0.0.1 port=%d user=%s application_name=standby'"
                        % (self.primary.port, USER))
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write("\n".join(conf) + "\n")
        for attempt in range(5):
            try:
                self.run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")
                break
            except RuntimeError:
                # The free port was taken before the postmaster bound it (the
                # tests run in parallel): another one; the last line wins.
                if attempt == 4 or "Address already in use" not in self.log_tail():
                    raise
                self.port = free_port()
                with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
                    f.write("port = %d\n" % self.port)
        self.running = True
        return self

    def dsn(self, db="postgres"):
        return "host=127.0.0.1 port=%d dbname=%s user=%s connect_timeout=5" % (self.port, db, USER)

    def psql(self, sql, db="postgres"):
        """Runs sql with psql (as the baton user over TCP): its output."""
        p = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-A", "-t", "-q", "-v",
                            "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
                            "-d", db, "-c", sql], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("psql failed: %s" % p.stderr)
        return p.stdout.strip()

    def create_db(self):
        name = "baton_" + uuid.uuid4().hex[:12]
        self.psql("CREATE DATABASE %s" % name)
        return name

    def drop_db(self, name):
        try:
            self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass

    def require_sync(self):
        """Commits wait for a standby from now on (RPO 0)."""
        self.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.psql("SELECT pg_reload_conf()")
        # Until a standby streams as the synchronous one every commit hangs;
        # on a loaded machine it can still be catching up when this is called.
        deadline = time.monotonic() + 60
        while self.psql("SELECT count(*) FROM pg_stat_replication "
                        "WHERE state = 'streaming' AND sync_state = 'sync'") == "0":
            if time.monotonic() > deadline:
                raise RuntimeError("no synchronous standby streaming after 60 s")
            time.sleep(0.1)

    def start_again(self):
        """After stop: the same data directory and port."""
        self.run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")
        self.running = True
        return self

    def promote(self):
        self.run("pg_ctl", "-D", self.data, "-w", "promote")

    def pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def stop(self, mode="fast"):
        if self.running:
            self.run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)
            self.running = False

    def kill(self):
        """The database vanishes at once (SIGKILL of the postmaster and its children)."""
        pid = self.pid()
        if pid:
            subprocess.run(["pkill", "-KILL", "-P", str(pid)], capture_output=True)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.running = False

    def close(self):
        if self.dir:
            self.stop("immediate")
            shutil.rmtree(self.dir, ignore_errors=True)
