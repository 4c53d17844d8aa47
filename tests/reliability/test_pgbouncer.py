"""PgBouncer in transaction mode (scenario 10 of the reliability issue).

The test starts Debian's ``pgbouncer`` (installed by ``.ci/run``) in front of
the test server, ``pool_mode = transaction`` with fewer server connections
than the clients open, so consecutive transactions of one client really land
on different server sessions. With the documented poll-only setting,
``WerkConfig(use_listen_notify=False, prepare_threshold=None)`` -- no LISTEN,
no server-side prepared statements; the migrations and the sweeper take only
transaction-level advisory locks -- the core of the integration suite passes
through it: enqueue, claim, complete, retry with back-off, timeouts,
``wait_for`` by polling, the sweeper's rescue of a killed worker process.

PgBouncer refuses to run as root. The embedded test server listens only on a
Unix socket in a directory its own (non-root) system user owns, so pgbouncer
runs as that directory's owner and connects to that socket; against a TCP
server (``WERK_TEST_DSN``) it runs as ``nobody``.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests._support import wait_registered
from tests.proctools import child_env, describe, spawn, worker_argv
from tests.reliability import infra_bodies
from tests.reliability.checker import check
from tests.reliability.relapp import create_history
from werk_trio import (
    AsyncWorker,
    EnqueueParams,
    JobStatus,
    Retry,
    WaitTimeout,
    Werk,
    WerkConfig,
)

POLL_ONLY = WerkConfig(use_listen_notify=False, prepare_threshold=None)
PORT = 6432


def _run_as(server_host: str | None) -> pwd.struct_passwd | None:
    """The non-root user pgbouncer runs as (None: the current user, not root)."""
    if os.geteuid() != 0:
        return None
    if server_host and server_host.startswith("/"):
        owner = os.stat(server_host).st_uid
        if owner != 0:
            return pwd.getpwuid(owner)
    return pwd.getpwnam("nobody")


class Bouncer:
    def __init__(self, server_dsn: str) -> None:
        self.server = conninfo_to_dict(server_dsn)
        self.dir = Path(tempfile.mkdtemp(prefix="werk-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.dbname = str(self.server.get("dbname") or self.server.get("user") or "postgres")
        self.user = str(self.server.get("user") or pwd.getpwuid(os.geteuid()).pw_name)

    @property
    def dsn(self) -> str:
        return make_conninfo(host=str(self.dir), port=str(PORT), dbname=self.dbname, user=self.user)

    def start(self) -> Bouncer:
        target = {k: v for k, v in self.server.items() if k in ("host", "port", "dbname", "user", "password")}
        target.setdefault("dbname", self.dbname)
        target.setdefault("user", self.user)
        conn = " ".join(f"{k}={v}" for k, v in target.items())
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{self.dbname} = {conn}\n"
            "[pgbouncer]\n"
            "listen_addr =\n"
            f"listen_port = {PORT}\n"
            f"unix_socket_dir = {self.dir}\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            # fewer server sessions than werk opens: transactions share them
            "default_pool_size = 4\n"
            "max_client_conn = 400\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        user = _run_as(str(self.server.get("host") or ""))
        kwargs: dict[str, Any] = {}
        if user is not None:
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            for f in self.dir.iterdir():
                os.chown(f, user.pw_uid, user.pw_gid)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        with open(self.dir / "stdout.log", "wb") as out:
            self.proc = subprocess.Popen(
                [exe, str(self.dir / "pgbouncer.ini")],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                **kwargs,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2, prepare_threshold=None) as c:
                    c.execute("SELECT 1")
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"pgbouncer did not start:\n{self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "pgbouncer.log"):
            try:
                parts.append((self.dir / name).read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)[-5000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # immediate shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def bouncer(dsn: str) -> Iterator[Bouncer]:
    b = Bouncer(dsn).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def papp(bouncer: Bouncer, schema: str) -> AsyncIterator[Werk]:
    """A poll-only Werk connected through pgbouncer (migrations ran through it)."""
    werk = Werk(bouncer.dsn, config=POLL_ONLY, schema=schema, task_modules=["tests"])
    async with werk:
        yield werk


def test_poll_only_setting_as_keywords_too() -> None:
    """``prepare_threshold=None`` as a keyword is the setting, not "the default"."""
    app = Werk("postgresql://u@/db?host=/tmp", use_listen_notify=False, prepare_threshold=None)
    assert (app.config.use_listen_notify, app.config.prepare_threshold) == (False, None)


def test_pgbouncer_runs_as_a_non_root_user(bouncer: Bouncer) -> None:
    assert bouncer.proc is not None
    status = Path(f"/proc/{bouncer.proc.pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid != 0, "pgbouncer must not run as root"


async def test_it_really_is_transaction_pooling(papp: Werk, bouncer: Bouncer) -> None:
    """Consecutive transactions of one client connection run on different server
    sessions -- what makes session state (LISTEN, prepared statements,
    session advisory locks) unusable, and what the suite runs through."""
    with trio.fail_after(30):
        seen: set[int] = set()

        async def hold(n: int) -> None:
            async with papp.connection() as conn, conn.transaction():
                cur = await conn.execute("SELECT pg_backend_pid(), pg_sleep(0.2)")
                row = await cur.fetchone()
                assert row is not None
                seen.add(int(row[0]))

        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(hold, n)

        # A client's session is not its own: while another client holds a
        # transaction, the server session the first one used serves the other,
        # or the first one moves (in session mode neither would happen).
        async def backend(conn: Any) -> int:
            cur = await conn.execute("SELECT pg_backend_pid()")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        async with papp.connection() as a, papp.connection() as b:
            first = await backend(a)
            async with b.transaction():
                other = await backend(b)
                second = await backend(a)
        assert other == first or second != first, (first, other, second)
        assert len(seen) <= 4, f"more server sessions than default_pool_size: {seen}"


async def test_enqueue_and_manage_through_pgbouncer(papp: Werk) -> None:
    with trio.fail_after(60):
        jobs = []
        for i in range(30):  # well past psycopg's prepare threshold, on shared server sessions
            job = await papp.enqueue(infra_bodies.echo, i, _queue="core", _key=f"k{i}")
            assert job is not None
            jobs.append(job)
        assert await papp.enqueue(infra_bodies.echo, 0, _queue="core", _key="k0") is None
        many = await papp.enqueue_many(
            [EnqueueParams(infra_bodies.echo, args=(i,), queue="core") for i in range(500)]
        )
        assert all(j is not None for j in many)
        assert (await papp.get_job(jobs[3].id)).payload == {"args": [3], "kwargs": {}}
        assert len(await papp.list_jobs(queue="core", limit=1000)) == 530
        # enqueue inside the caller's transaction, rolled back with it
        with pytest.raises(RuntimeError):
            async with papp.connection() as conn, conn.transaction():
                await papp.enqueue(infra_bodies.echo, "gone", _queue="core", _conn=conn)
                raise RuntimeError("roll back")
        assert (await papp.counts())["core"] == {"queued": 530}
        assert await papp.cancel_job(jobs[0].id) is True
        assert (await papp.get_job(jobs[0].id)).status is JobStatus.ABORTED
        delayed = await papp.enqueue(infra_bodies.echo, 1, _queue="later", _delay=60)
        assert delayed is not None and delayed.status is JobStatus.SCHEDULED


async def test_claim_complete_retry_timeout_and_wait_for_by_polling(papp: Werk) -> None:
    with trio.fail_after(60):
        plain = await papp.enqueue_many(
            [EnqueueParams(infra_bodies.echo, args=(i,), queue="core") for i in range(200)]
        )
        retried = await papp.enqueue(infra_bodies.fails_before, 3, _queue="core", _retry=Retry(3, [0.5]))
        timed_out = await papp.enqueue(infra_bodies.nap, 30, _queue="core", _timeout=0.5)
        assert retried is not None and timed_out is not None
        worker = AsyncWorker(
            papp,
            queues=["core"],
            concurrency=10,
            poll_interval=0.2,
            heartbeat_interval=0.5,
            sweep_interval=0.5,
            abort_interval=0.2,
            handle_signals=False,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            assert worker.listener.listener is None, "poll-only: the worker must not LISTEN"
            # wait_for without LISTEN: the once-a-second re-check finds the end
            first = plain[0]
            assert first is not None
            done = await papp.wait_for(first.id, timeout=20)
            assert done.status is JobStatus.COMPLETE and done.result == 0
            late = await papp.enqueue(infra_bodies.nap, 0.3, _queue="core")
            assert late is not None
            with pytest.raises(WaitTimeout):
                await papp.wait_for(late.id, timeout=0.1)
            started = trio.current_time()
            late_done = await papp.wait_for(late.id, timeout=20)
            waited = trio.current_time() - started
            assert late_done.status is JobStatus.COMPLETE
            assert waited < 0.3 + 0.2 + 1.0 + 1.0, f"wait_for by polling took {waited:.2f}s"
            results = await papp.map(
                infra_bodies.echo, [{"value": i} for i in range(20)], timeout=20, _queue="core"
            )
            assert results == list(range(20))
            final = await papp.wait_for(retried.id, timeout=20)
            stopped = await papp.wait_for(timed_out.id, timeout=20)
            for job in plain:
                assert job is not None
            ends = await papp.get_jobs([j.id for j in plain if j is not None])
            nursery.cancel_scope.cancel()
        assert all(j.status is JobStatus.COMPLETE for j in ends.values()), {j.status for j in ends.values()}
        assert sorted(j.result for j in ends.values()) == list(range(200))
        assert final.status is JobStatus.COMPLETE and final.attempts == 3 and final.result == 3
        executions = await papp.get_executions(retried.id)
        assert [e.status.value for e in executions] == ["failed", "failed", "complete"]
        for before, after in itertools.pairwise(executions):
            assert before.finished_at is not None
            assert (after.started_at - before.finished_at).total_seconds() >= 0.5
        assert stopped.status is JobStatus.FAILED and "JobTimeout" in (stopped.error or ""), stopped.error
        assert [w["status"] for w in await papp.list_workers()] == ["stopped"]


async def test_worker_processes_drain_and_rescue_through_pgbouncer(
    papp: Werk, bouncer: Bouncer, dsn: str, schema: str, tmp_path: Path
) -> None:
    """Three poll-only worker processes through pgbouncer; one is SIGKILLed
    mid-drain and a live one's sweeper (a transaction-level advisory lock)
    rescues its jobs; the checker finds nothing lost."""
    n_jobs = 600
    with trio.fail_after(120):
        await trio.to_thread.run_sync(create_history, dsn, schema)
        ids = [
            j.id
            for j in await papp.enqueue_many(
                [
                    EnqueueParams(infra_bodies.steady, args=(20,), queue="drain", retry=3)
                    for _ in range(n_jobs)
                ]
            )
            if j is not None
        ]
        env = child_env(bouncer.dsn, schema)
        argv = [
            worker_argv(
                "--queues",
                "drain",
                "--worker-type",
                wtype,
                "--concurrency",
                "5",
                "--heartbeat-interval",
                "0.5",
                "--sweep-interval",
                "0.5",
                "--poll-interval",
                "0.2",
                app="tests.reliability.bouncerapp:app",
            )
            for wtype in ("async", "thread", "fork")
        ]
        async with (
            spawn(argv[0], env=env, log_path=tmp_path / "async.log") as w1,
            spawn(argv[1], env=env, log_path=tmp_path / "thread.log") as w2,
            spawn(argv[2], env=env, log_path=tmp_path / "fork.log") as w3,
        ):
            workers = [w1, w2, w3]
            await wait_registered(papp, workers)
            while ((await papp.counts()).get("drain", {}).get("complete", 0)) < n_jobs // 4:
                await trio.sleep(0.05)
            w2.send_signal(signal.SIGKILL)
            await w2.wait()
            while ((await papp.counts()).get("drain", {}).get("complete", 0)) < n_jobs:
                for w in (w1, w3):
                    assert w.returncode is None, describe(workers)
                await trio.sleep(0.05)
            for w in (w1, w3):
                w.send_signal(signal.SIGTERM)
            codes = [await w1.wait(), await w3.wait()]
        assert codes == [0, 0], describe(workers)
        report = await check(papp, dsn, schema, ids, killed_pids={w2.pid})
        print(f"\nFIGURES pgbouncer: jobs={n_jobs} workers=3 kills=1 {report.summary()}")
        report.assert_ok()
        logs = w1.output() + w3.output()
        assert "rescued" in logs, "the killed worker's jobs were not rescued by a sweeper"
        for needle in ("prepared statement", "LISTEN", "Traceback"):
            assert needle not in logs, f"{needle!r} in the worker logs:\n{logs[-3000:]}"
        async with papp.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE status <> 'complete'").format(papp.sql.idents["jobs"])
            )
            row = await cur.fetchone()
        assert row is not None and row[0] == 0
