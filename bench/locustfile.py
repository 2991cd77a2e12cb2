"""Locust's simulated members for bench_instances: sign in, list projects,
upload and download, against one web instance or round-robin over several.

Run as a child (locust patches the process with gevent, so never import it
into the benchmark or a test process):

    python -m bench.locustfile CONFIG_JSON

CONFIG_JSON names the instances (``hosts``), the accounts (``emails`` and
one ``password``), the project (``project`` path and ``project_name``), the
files to download (``files``: path -> bytes), the number of ``users``, and
the ``warmup`` and ``seconds`` to run. Statistics are reset after the
warm-up; the last line printed is one JSON object: per request type the
requests, failures, p50/p95 in ms and throughput, the total, and the errors.

Each member takes the instances in turn, one request each, as a
round-robin load balancer would send them: a session made on one instance
is used on the other (the cookie jar is per user; ports do not separate
cookies). Members start at different instances so that each gets half.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import sys
import time

import gevent
from locust import HttpUser, between, task
from locust.env import Environment

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SIGN_IN = "/accounts/login/"
UPLOAD_BYTES = 32 * 1024
TIMEOUT = 60
CONFIG: dict = {}


def status(response) -> str:
    """The status, or for no response at all the error that stood for one."""
    if response.status_code == 0:
        return f"no response: {response.error!r}"
    return f"status {response.status_code}"


def pdf(size: int, tag: str) -> bytes:
    """A PDF as the upload checks sniff it, padded to ``size``, unique by tag."""
    head = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n% " + tag.encode()
    tail = b"\ntrailer\n<<>>\n%%EOF\n"
    return head + b"x" * (size - len(head) - len(tail)) + tail


class Member(HttpUser):
    """A project member working in the project: mostly reading, some writing."""

    # A member clicks every one to three seconds: busy, but a person. Less
    # think time than that with 50 members only measures a queue (closed
    # loop: the latency grows with the users, the throughput does not).
    wait_time = between(1.0, 3.0)
    host = "http://127.0.0.1"  # every request names its instance in full
    _numbers = itertools.count()

    def on_start(self) -> None:
        number = next(Member._numbers)
        hosts = CONFIG["hosts"]
        start = number % len(hosts)
        self.hosts = itertools.cycle(hosts[start:] + hosts[:start])
        # A connection per request. Kept alive, a member's connection to one
        # instance idles while it uses the other, and gunicorn (keepalive 5 s)
        # closes it as the next request arrives: a reset that a browser or
        # nginx retries and requests does not (seen with two instances only).
        self.client.headers["Connection"] = "close"
        self.email = CONFIG["emails"][number % len(CONFIG["emails"])]
        self.csrf = ""
        self.uploads = 0
        # One of each request first (in the warm-up, unless it is zero), so
        # that even a short run sees every type.
        self.sign_in()
        self.project_list()
        self.download()
        self.upload()

    def url(self, path: str) -> str:
        return f"{next(self.hosts)}{path}"

    @task(1)
    def sign_in(self) -> None:
        """A fresh sign-in through the login form, CSRF token and all."""
        self.client.cookies.clear()
        self.csrf = ""
        with self.client.get(
            self.url(SIGN_IN), name="sign-in form", timeout=TIMEOUT, catch_response=True
        ) as page:
            found = CSRF_INPUT.search(page.text)
            if page.status_code != 200 or found is None:
                page.failure(f"no login form ({status(page)})")
                return
        with self.client.post(
            self.url(SIGN_IN),
            data={
                "csrfmiddlewaretoken": found.group(1),
                "username": self.email,
                "password": CONFIG["password"],
            },
            name="sign-in",
            allow_redirects=False,
            timeout=TIMEOUT,
            catch_response=True,
        ) as response:
            location = response.headers.get("Location", "")
            if response.status_code != 302 or SIGN_IN in location:
                response.failure(f"refused ({status(response)} {location})")

    @task(8)
    def project_list(self) -> None:
        with self.client.get(
            self.url("/projects/"),
            name="project list",
            allow_redirects=False,
            timeout=TIMEOUT,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(status(response))
            elif CONFIG["project_name"] not in response.text:
                response.failure("the member's project is not listed")

    @task(4)
    def download(self) -> None:
        path, size = random.choice(list(CONFIG["files"].items()))  # noqa: S311 - a load mix  # nosec B311
        with self.client.get(
            self.url(path),
            name="download",
            allow_redirects=False,
            timeout=TIMEOUT,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(status(response))
            elif len(response.content) != size:
                response.failure(f"{len(response.content)} bytes, not {size}")

    @task(2)
    def upload(self) -> None:
        """Upload a small PDF through the project page's form."""
        project = CONFIG["project"]
        if not self.csrf:
            with self.client.get(
                self.url(project),
                name="project page",
                allow_redirects=False,
                timeout=TIMEOUT,
                catch_response=True,
            ) as page:
                found = CSRF_INPUT.search(page.text)
                if page.status_code != 200 or found is None:
                    page.failure(f"no upload form ({status(page)})")
                    return
                self.csrf = found.group(1)
        self.uploads += 1
        name = f"load-{self.email.split('@')[0]}-{self.uploads}.pdf"
        with self.client.post(
            self.url(f"{project}files/"),
            data={"csrfmiddlewaretoken": self.csrf, "name": ""},
            files={"file": (name, pdf(UPLOAD_BYTES, name), "application/pdf")},
            name="upload",
            allow_redirects=False,
            timeout=TIMEOUT,
            catch_response=True,
        ) as response:
            location = response.headers.get("Location", "")
            if response.status_code != 302 or not location.endswith(project):
                response.failure(f"refused ({status(response)} {location})")


def _figures(entry, seconds: float) -> dict:
    done = entry.num_requests
    return {
        "requests": done,
        "failures": entry.num_failures,
        "rps": round(done / seconds, 2),
        "p50_ms": entry.get_response_time_percentile(0.5) if done else 0,
        "p95_ms": entry.get_response_time_percentile(0.95) if done else 0,
    }


def run(config: dict) -> dict:
    """Run the members for warm-up plus ``seconds``; the measured figures."""
    CONFIG.update(config)
    env = Environment(user_classes=[Member])
    runner = env.create_local_runner()
    runner.start(config["users"], spawn_rate=config["spawn_rate"])
    gevent.sleep(config["warmup"])
    env.stats.reset_all()
    started = time.monotonic()
    gevent.sleep(config["seconds"])
    # A smoke run may ask to go on (up to ``require_within`` seconds more)
    # until every request type in ``require`` has been answered once.
    deadline = time.monotonic() + config.get("require_within", 0)
    while time.monotonic() < deadline and any(
        env.stats.entries.get((name, method)) is None
        or not env.stats.entries[(name, method)].num_requests
        for name, method in config.get("require", [])
    ):
        gevent.sleep(0.2)
    seconds = time.monotonic() - started
    # Figures first: requests cut short by the stop below are not the load's.
    by_type = {
        name: _figures(entry, seconds)
        for (name, _method), entry in sorted(env.stats.entries.items())
    }
    errors = [
        {"request": e.name, "error": str(e.error), "count": e.occurrences}
        for e in env.stats.errors.values()
    ]
    errors += [
        {"request": "(user code)", "error": e["msg"], "count": e["count"]}
        for e in runner.exceptions.values()
    ]
    result = {
        "seconds": round(seconds, 2),
        "users": config["users"],
        "types": by_type,
        "total": _figures(env.stats.total, seconds),
        "errors": errors,
    }
    runner.quit()
    return result


def main(argv: list[str]) -> int:
    result = run(json.loads(argv[0]))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
