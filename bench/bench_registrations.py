"""Authenticated registrations at scale: our registrant vs Kamailio's ``uac``.

Both register N records on the same SIPp registrar on loopback
(``sipp_registrar.xml``: 401 with an MD5 qop=auth challenge, then 200 on the
retry; the digest is not verified).  For each peer and N the script measures,
from launch until every record is registered:

* wall time (and for ours the time until all N records are loaded);
* CPU seconds (utime + stime from ``/proc/PID/stat``, summed over every
  process of the service), net of a baseline run with one record measured
  over the same duration, per 1,000 authenticated registrations;
* memory: PSS (``/proc/PID/smaps_rollup``, summed) for both, and for ours
  also VmRSS and VmHWM; per record against the baseline;
* retransmissions and transaction timeouts (ours, from ``/metrics``, read once at the end) and
  UDP receive drops on the registrant's and the registrar's sockets.

SIPp's own CPU is not measured.  Run as root from the repository::

    python bench/bench_registrations.py --n 1000 10000 --peer both

Every process started is stopped by its PID at the end, on failure and on
Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.service import OPENSIPS_SQLITE  # noqa: E402  (the OpenSIPS table, as deployed)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
POLL_S = 0.05
EXPIRY = 3600
PASSWORD = "secret"
SOCKET_BUFFER = 8 * 1024 * 1024
KAMAILIO_SCHEMA = Path("/usr/share/kamailio/db_sqlite")


@dataclass(frozen=True, slots=True)
class Sample:
    """What one run measured at the moment all its records were registered."""

    peer: str
    records: int
    wall_s: float
    loaded_s: float | None
    cpu_s: float
    pss_kib: int
    rss_kib: int
    hwm_kib: int | None
    retransmissions: int | None
    timeouts: int | None
    registrant_drops: int
    registrar_drops: int
    # Ours: PSS again once finished transactions (Timer K) and batched
    # writes are done, which is what a record costs while it stays registered.
    steady_pss_kib: int | None = None
    # Ours, in that steady state: the share of one core spent (bucket sweeps,
    # with no refresh due) and the time a full reg_list takes over HTTP.
    steady_core_share: float | None = None
    reg_list_s: float | None = None


@dataclass(frozen=True, slots=True)
class Figures:
    """A run net of its baseline."""

    run: Sample
    baseline: Sample

    @property
    def cpu_per_1000(self) -> float:
        return (self.run.cpu_s - self.baseline.cpu_s) * 1000 / self._extra

    @property
    def pss_per_record_kib(self) -> float:
        return (self.run.pss_kib - self.baseline.pss_kib) / self._extra

    @property
    def rss_per_record_kib(self) -> float:
        return (self.run.rss_kib - self.baseline.rss_kib) / self._extra

    @property
    def _extra(self) -> int:
        return self.run.records - self.baseline.records


# -- processes --------------------------------------------------------------------


class Child:
    """A process we started, in its own session (Ctrl-C reaches only us); stop() ends it by PID."""

    def __init__(self, name: str, command: Sequence[str], log: Path, **popen) -> None:
        self.name = name
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                list(command), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, **popen,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        # Children (Kamailio's workers) are collected first: they must not outlive the parent.
        family = [pid for pid in process_tree(self.pid) if pid != self.pid]
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@contextmanager
def started(name: str, command: Sequence[str], log: Path, **popen) -> Iterator[Child]:
    child = Child(name, command, log, **popen)
    try:
        yield child
    finally:
        child.stop()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the ppid field of /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat_fields(int(entry))
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _stat_fields(pid: int) -> list[str]:
    # Fields after the command name, which may hold spaces: state is [0], ppid [1].
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def _kib(path: str, key: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in {path}")


def pss_kib(pids: Sequence[int]) -> int:
    return sum(_kib(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids)


def rss_kib(pids: Sequence[int]) -> int:
    return sum(_kib(f"/proc/{pid}/status", "VmRSS") for pid in pids)


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on the loopback UDP socket bound to ``port``."""
    drops = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            drops += int(fields[-1])
    return drops


def free_port() -> int:
    """A loopback port free for both UDP and TCP (the MI port is TCP)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_for(check: Callable[[], object], timeout: float, what: str, alive: Callable[[], None]) -> object:
    deadline = time.monotonic() + timeout
    while True:
        alive()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


# -- the registrar ---------------------------------------------------------------------


@contextmanager
def registrar(workdir: Path) -> Iterator[int]:
    """The SIPp registrar on a free loopback port; yields the port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        _binary("sipp"), "-sf", str(BENCH / "sipp_registrar.xml"), "-i", "127.0.0.1", "-p", str(port),
        "-t", "u1", "-nostdin", "-nd", "-trace_err", "-buff_size", str(SOCKET_BUFFER),
        # Answer every datagram of a burst before looking at timers again.
        "-max_recv_loops", "100000", "-max_sched_loops", "100000",
        # The scenario loops, so calls never end; this is belt and braces for a restarted one.
        "-deadcall_wait", "0",
    ]
    with started("sipp", command, workdir / "sipp.log", cwd=workdir) as sipp:
        wait_for(lambda: not _udp_free(port), 5, "sipp to bind its port", sipp.check_alive)
        yield port


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise SystemExit(f"{name} is not installed")
    return path


# -- our registrant ------------------------------------------------------------------------


def make_opensips_table(path: Path, records: int, registrar_port: int, contact_port: int) -> None:
    rows = (
        (f"sip:127.0.0.1:{registrar_port}", f"sip:user{i:06d}@127.0.0.1", f"user{i:06d}", PASSWORD,
         f"sip:user{i:06d}@127.0.0.1:{contact_port}", EXPIRY)
        for i in range(1, records + 1)
    )
    with sqlite3.connect(path) as db:
        db.executescript(OPENSIPS_SQLITE)
        db.executemany(
            "INSERT INTO registrant (registrar, aor, username, password, binding_URI, expiry)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def records_by_state(mi_port: int) -> dict[str, int]:
    """``/health``'s records by state; {} while the server is not up.

    Polled every 50 ms until all are registered: unlike a ``/metrics`` scrape,
    whose per-record gauges walk every record, it costs the same at any N, so
    the polling stays what the baseline run cancels out.
    """
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{mi_port}/health", timeout=10) as reply:
            body = reply.read()
    except urllib.error.HTTPError as error:  # 503 until the table is loaded
        body = error.read()
    except OSError:
        return {}
    try:
        return json.loads(body).get("records", {})
    except ValueError:
        return {}


def scrape(mi_port: int) -> dict[str, float]:
    """``/metrics`` as {series: value}; {} while the server is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{mi_port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def run_ours(records: int, registrar_port: int, workdir: Path, args: argparse.Namespace,
             hold_s: float = 0.0, profile: Path | None = None) -> Sample:
    """One run of twistd from this tree; ``hold_s`` keeps a baseline up as long as a real run.

    With ``profile``, py-spy samples the service from launch until all are
    registered and writes collapsed stacks there (its figures are then not
    comparable: sampling costs the service CPU).
    """
    sip_port, mi_port = free_port(), free_port()
    db = workdir / f"ours-{records}.sqlite"
    make_opensips_table(db, records, registrar_port, sip_port)
    command = [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "uac-registrant",
        "--db-url", f"sqlite:///{db}",
        "--listen", f"udp:127.0.0.1:{sip_port}",
        "--mi-listen", f"tcp:{mi_port}:interface=127.0.0.1",
        "--hash-size", str(args.hash_size), "--timer-interval", str(args.timer_interval),
        "--max-register-rate", str(args.max_register_rate), "--unregister-on-shutdown", "0",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.monotonic()
    with ExitStack() as stack:
        service = stack.enter_context(started("twistd", command, workdir / f"ours-{records}.log", cwd=workdir, env=env))
        sampler = None if profile is None else stack.enter_context(started(
            "py-spy",
            [_binary("py-spy"), "record", "--pid", str(service.pid), "--format", "raw", "--rate", "200",
             "--nonblocking", "--output", str(profile)],
            workdir / "py-spy.log",
        ))
        loaded_at: float | None = None

        def all_registered() -> dict[str, int] | None:
            nonlocal loaded_at
            counts = records_by_state(mi_port)
            if loaded_at is None and sum(counts.values()) >= records:
                loaded_at = time.monotonic() - start
            done = counts.get("REGISTERED_STATE", 0) >= records and time.monotonic() - start >= hold_s
            return counts if done else None

        wait_for(all_registered, args.timeout, f"{records} records REGISTERED", service.check_alive)
        wall = time.monotonic() - start
        pids = process_tree(service.pid)
        cpu = cpu_seconds(pids)
        pss, rss = pss_kib(pids), rss_kib(pids)
        hwm = _kib(f"/proc/{service.pid}/status", "VmHWM")
        drops = udp_drops(sip_port), udp_drops(registrar_port)
        # Once, after the CPU is read: retransmissions and timeouts.
        metrics = scrape(mi_port)
        steady = share = listing = None
        if args.settle > 0 and profile is None:
            time.sleep(args.settle)
            steady = pss_kib(process_tree(service.pid))
            before, clock = cpu_seconds(pids), time.monotonic()
            time.sleep(args.settle)
            share = (cpu_seconds(pids) - before) / (time.monotonic() - clock)
            listing = time_reg_list(mi_port)
        if sampler is not None:
            sampler.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            sampler.process.wait(60)
    return Sample(
        peer="ours", records=records, wall_s=wall, loaded_s=loaded_at, cpu_s=cpu, pss_kib=pss,
        rss_kib=rss, hwm_kib=hwm,
        retransmissions=int(metrics.get("uac_registrant_retransmissions_total", 0)),
        timeouts=int(metrics.get("uac_registrant_transaction_timeouts_total", 0)),
        registrant_drops=drops[0], registrar_drops=drops[1], steady_pss_kib=steady,
        steady_core_share=share, reg_list_s=listing,
    )


def time_reg_list(mi_port: int) -> float:
    """Seconds until the whole reg_list reply has arrived (read, not parsed)."""
    body = json.dumps({"jsonrpc": "2.0", "id": "1", "method": "reg_list", "params": {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{mi_port}/mi", data=body, headers={"Content-Type": "application/json"}
    )
    start = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as reply:
        while reply.read(1 << 20):
            pass
    return time.monotonic() - start


# -- Kamailio's uac module ----------------------------------------------------------------------


def make_uacreg_table(path: Path, records: int, registrar_port: int) -> None:
    with sqlite3.connect(path) as db:
        for script in ("standard-create.sql", "uac-create.sql"):
            db.executescript((KAMAILIO_SCHEMA / script).read_text())
        db.executemany(
            "INSERT INTO uacreg (l_uuid, l_username, l_domain, r_username, r_domain, realm,"
            " auth_username, auth_password, auth_proxy, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (f"u{i:06d}", f"user{i:06d}", "127.0.0.1", f"user{i:06d}", "127.0.0.1", "bench.test",
                 f"user{i:06d}", PASSWORD, f"sip:127.0.0.1:{registrar_port}", EXPIRY)
                for i in range(1, records + 1)
            ),
        )


def render(template: Path, values: dict[str, object]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m.group(1)]), template.read_text())


def tm_2xx(kamcmd: str, ctl: Path) -> int:
    """Transactions tm completed with a 2xx: one per registered record (0 until the control socket is up).

    uac's own ``regactive`` counter stays 0 in 5.6, and ``uac.reg_dump`` is
    over kamcmd's 128 KB reply limit beyond a few hundred records.
    """
    result = subprocess.run([kamcmd, "-s", f"unix:{ctl}", "tm.stats"], capture_output=True, text=True, timeout=10)
    match = re.search(r"^\s*2xx: (\d+)$", result.stdout, re.MULTILINE)
    return int(match.group(1)) if result.returncode == 0 and match else 0


def run_kamailio(records: int, registrar_port: int, workdir: Path, args: argparse.Namespace,
                 hold_s: float = 0.0) -> Sample:
    sip_port = free_port()
    rundir = workdir / f"kamailio-{records}"
    rundir.mkdir()
    db = rundir / "uacreg.sqlite"
    make_uacreg_table(db, records, registrar_port)
    config = rundir / "kamailio.cfg"
    config.write_text(render(BENCH / "kamailio_uac.cfg.in", {"port": sip_port, "rundir": rundir, "db": db}))
    kamailio, kamcmd = _binary("kamailio"), _binary("kamcmd")
    ctl = rundir / "kamailio_ctl"
    check = subprocess.run([kamailio, "-c", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"kamailio -c rejected {config}:\n{check.stderr[-3000:]}")
    command = [kamailio, "-DD", "-E", "-f", str(config), "-Y", str(rundir), "-m", "512", "-M", "64"]
    start = time.monotonic()
    with started("kamailio", command, rundir / "kamailio.log", cwd=rundir) as service:
        wait_for(
            lambda: tm_2xx(kamcmd, ctl) >= records and time.monotonic() - start >= hold_s,
            args.timeout, f"{records} Kamailio registrations", service.check_alive,
        )
        wall = time.monotonic() - start
        pids = process_tree(service.pid)
        cpu = cpu_seconds(pids)
        pss, rss = pss_kib(pids), rss_kib(pids)
        drops = udp_drops(sip_port), udp_drops(registrar_port)
    return Sample(
        peer="kamailio", records=records, wall_s=wall, loaded_s=None, cpu_s=cpu, pss_kib=pss,
        rss_kib=rss, hwm_kib=None, retransmissions=None, timeouts=None,
        registrant_drops=drops[0], registrar_drops=drops[1],
    )


RUNNERS = {"ours": run_ours, "kamailio": run_kamailio}


# -- reporting --------------------------------------------------------------------------------------


def measure(peer: str, records: int, workdir: Path, args: argparse.Namespace) -> Figures:
    """The run, then a one-record baseline held up as long, each against a fresh registrar."""
    runner = RUNNERS[peer]
    with registrar(workdir / f"sipp-{peer}-{records}") as port:
        run = runner(records, port, workdir, args)
    with registrar(workdir / f"sipp-{peer}-{records}-base") as port:
        baseline = runner(1, port, workdir / f"base-{peer}-{records}", args, hold_s=run.wall_s)
    return Figures(run, baseline)


def report(figures: Figures) -> None:
    run, base = figures.run, figures.baseline
    print(f"{run.peer} N={run.records}")
    loaded = f", loaded after {run.loaded_s:.2f} s" if run.loaded_s is not None else ""
    print(f"  all registered after {run.wall_s:.2f} s{loaded}")
    print(f"  CPU {run.cpu_s:.2f} s (baseline {base.cpu_s:.2f} s over {base.wall_s:.2f} s):"
          f" {figures.cpu_per_1000:.3f} s per 1,000 authenticated registrations")
    print(f"  PSS {run.pss_kib / 1024:.1f} MiB (baseline {base.pss_kib / 1024:.1f} MiB):"
          f" {figures.pss_per_record_kib:.2f} KiB per record")
    print(f"  RSS {run.rss_kib / 1024:.1f} MiB summed over processes: {figures.rss_per_record_kib:.2f} KiB per record")
    if run.steady_pss_kib is not None and base.pss_kib:
        per_record = (run.steady_pss_kib - base.pss_kib) / max(1, run.records - base.records)
        print(f"  steady-state PSS {run.steady_pss_kib / 1024:.1f} MiB: {per_record:.2f} KiB per record")
    if run.steady_core_share is not None:
        print(f"  steady state: {100 * run.steady_core_share:.2f} % of one core"
              f" (baseline {100 * (base.steady_core_share or 0):.2f} %); reg_list of all in {run.reg_list_s:.2f} s")
    if run.hwm_kib is not None:
        print(f"  peak RSS (VmHWM) {run.hwm_kib / 1024:.1f} MiB")
    if run.retransmissions is not None:
        print(f"  retransmissions {run.retransmissions}, transaction timeouts {run.timeouts}")
    print(f"  UDP receive drops: registrant socket {run.registrant_drops}, registrar socket {run.registrar_drops}")


def report_spread(runs: list[Figures]) -> None:
    """Several runs of one peer and N: the spread of each figure (other load on the machine moves them)."""
    def spread(values: list[float], unit: str) -> str:
        values = sorted(values)
        return f"{values[0]:.3f}–{values[-1]:.3f} {unit} (median {values[len(values) // 2]:.3f})"

    print(f"{runs[0].run.peer} N={runs[0].run.records}, {len(runs)} runs:")
    print(f"  CPU per 1,000 authenticated registrations {spread([r.cpu_per_1000 for r in runs], 's')}")
    print(f"  PSS per record {spread([r.pss_per_record_kib for r in runs], 'KiB')}")
    print(f"  all registered after {spread([r.run.wall_s for r in runs], 's')}")


def hot_spots(profile: Path, top: int = 15) -> list[tuple[str, float, float]]:
    """(function, % of samples where it runs itself, % where it is on the stack) from py-spy's raw output."""
    own: dict[str, int] = {}
    on_stack: dict[str, int] = {}
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        # "function (path/file.py:line)": the line number would split one function into many rows.
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + samples
        for frame in set(frames):
            on_stack[frame] = on_stack.get(frame, 0) + samples
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    return [(name, 100 * samples / total, 100 * on_stack[name] / total) for name, samples in ranked]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="record counts to run")
    parser.add_argument("--peer", choices=("ours", "kamailio", "both"), default="both")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for all registered")
    parser.add_argument("--hash-size", type=int, default=1, help="ours: --hash-size")
    parser.add_argument("--timer-interval", type=int, default=2, help="ours: --timer-interval")
    parser.add_argument("--max-register-rate", type=float, default=2000,
                        help="ours: --max-register-rate (0: no limit; 2000 keeps every burst within the socket buffers)")
    parser.add_argument("--settle", type=float, default=10,
                        help="ours: seconds to wait after all are registered before the steady-state PSS")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="instead of measuring: one run of ours per N under py-spy, collapsed stacks to FILE")
    parser.add_argument("--repeat", type=int, default=1, metavar="R",
                        help="measure each peer and N R times and print the spread (the ratio uses the median run)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, tables)")
    args = parser.parse_args(argv)
    # A SIGTERM (timeout(1), a CI runner) unwinds like Ctrl-C, so every child is stopped by PID.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    peers = ("ours", "kamailio") if args.peer == "both" else (args.peer,)
    if "ours" in peers:
        # The service runs from this tree with this environment: the same build as here.
        from uacregistrant import compiled

        print(f"ours: {compiled.variant()} hot modules")
    workdir = Path(tempfile.mkdtemp(prefix="bench-registrations-"))
    try:
        if args.profile is not None:
            for records in args.n:
                with registrar(workdir / f"sipp-profile-{records}") as port:
                    run_ours(records, port, workdir, args, profile=args.profile)
                print(f"ours N={records}: own % / on-stack % of py-spy samples")
                for name, own, total in hot_spots(args.profile):
                    print(f"  {own:5.1f} {total:5.1f}  {name}")
            return 0
        for records in args.n:
            results = {}
            for peer in peers:
                runs = []
                for attempt in range(args.repeat):
                    rundir = workdir / f"{peer}-{records}-{attempt}"
                    (rundir / f"base-{peer}-{records}").mkdir(parents=True)
                    runs.append(measure(peer, records, rundir, args))
                    report(runs[-1])
                if len(runs) > 1:
                    report_spread(runs)
                # The ratio is taken from the median run of each peer.
                results[peer] = sorted(runs, key=lambda figures: figures.cpu_per_1000)[len(runs) // 2]
            if len(results) == 2:
                ours, theirs = results["ours"], results["kamailio"]
                print(f"ours/Kamailio N={records}: CPU per registration"
                      f" {ours.cpu_per_1000 / theirs.cpu_per_1000:.2f}x,"
                      f" memory (PSS) per record {ours.pss_per_record_kib / theirs.pss_per_record_kib:.2f}x")
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted; every process started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
