"""Set up and run the whole system on the embedded default.

Migrates the SQLite database, prints a demo login, then runs the web server
(gunicorn), a Celery worker and Celery beat until interrupted. Everything
lives under var/; no server needs installing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = os.environ.get("KREO_HOST", "127.0.0.1")
PORT = os.environ.get("KREO_PORT", "8000")
GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn" / "gunicorn.conf.py"


def _browser_host(host: str) -> str:
    """The name to open: a loopback address as ``localhost`` (passkeys need a
    domain name; an IP address is no relying party for WebAuthn)."""
    return "localhost" if host in ("127.0.0.1", "::1") else host


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def web_command(host: str, port: str) -> list[str]:
    """gunicorn as `make run` starts it: threaded workers sized for slow
    clients (deploy/gunicorn/gunicorn.conf.py, README "Slow clients"); the
    access log names the worker's pid (which process answered)."""
    return [
        str(BIN / "gunicorn"),
        "-c",
        str(GUNICORN_CONFIG),
        "--bind",
        f"{host}:{port}",
    ]


def process_commands(host: str, port: str) -> dict[str, list[str]]:
    """The processes of the embedded default: web (gunicorn), worker, beat.

    The multi-process tests start the same ``web`` command.
    """
    return {
        "web": web_command(host, port),
        "worker": [
            str(BIN / "celery"),
            "-A",
            "kreo",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
        ],
        "beat": [str(BIN / "celery"), "-A", "kreo", "beat", "--loglevel", "INFO"],
    }


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kreo.settings.local")
    manage("migrate", "--noinput", "-v", "0")
    manage("demo_seed")
    commands = process_commands(HOST, PORT)
    processes = {
        name: subprocess.Popen(cmd, cwd=ROOT) for name, cmd in commands.items()
    }
    sys.stdout.write(
        f"\nKreo is running at http://{_browser_host(HOST)}:{PORT}/ "
        "(web, worker, beat). "
        "Sign in with the demo login above. Ctrl-C stops everything.\n\n"
    )
    sys.stdout.flush()
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    sys.stderr.write(f"kreo: {name} exited ({process.returncode})\n")
                    stopping = True
            time.sleep(0.5)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
