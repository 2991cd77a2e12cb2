"""Replay the attacks the monitoring rules are there for, against a running
Kreo, over HTTP; or a stretch of ordinary use, which must raise nothing.

    .venv/bin/python scripts/attack.py --base http://localhost:8000 \\
        --member alice@example.test --member-password '…' --project <uuid> \\
        [--admin ops@example.test --admin-password '…' --admin-totp <hex key>] \\
        [--forwarded] [--only stuffing,spray,brute,download,grant,flood] [--normal]

Scenarios (monitoring/rules.py, README "Protective monitoring"):
  stuffing  30 failed sign-ins over 6 accounts from one address
  spray     one failed sign-in for each of 20 accounts, each from another address
  brute     12 failed sign-ins of one account from one address
  download  200 file downloads by one member within a minute
  grant     an admin makes an account staff and superuser in the admin
  flood     200 requests for missing pages from one address
  --normal  a member signs in, opens the project list, a project and a few files

``--forwarded`` sends each scenario's addresses as X-Forwarded-For, for a
server that trusts one proxy in front of it (DJANGO_TRUSTED_PROXY_COUNT=1, as
behind nginx); without it every request comes from this machine's address.
The sign-in limits and CAPTCHA (there to stop exactly these) answer part of
the attempts with 429 or a CAPTCHA: the alerts still come, from what reached
the audit trail. The rules run every MONITORING_RULES_SECONDS on the beat;
alerts show in the admin (Monitoring > Alerts), by mail and by webhook.

Standalone on purpose: `requests` and the standard library only, nothing
imported from the project, so it runs from any machine against any Kreo.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import struct
import sys
import time

import requests

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
DOWNLOAD = re.compile(r'href="(/projects/[0-9a-f-]+/files/[0-9a-f-]+/download/)"')
SCENARIOS = ("stuffing", "spray", "brute", "download", "grant", "flood")


class Attack:
    def __init__(self, base: str, *, forwarded: bool, out=sys.stdout):
        self.base = base.rstrip("/")
        self.forwarded = forwarded
        self.out = out

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def session(self, ip: str | None = None) -> requests.Session:
        s = requests.Session()
        if ip and self.forwarded:
            s.headers["X-Forwarded-For"] = ip
        return s

    def _csrf(self, s: requests.Session, path: str) -> str:
        page = s.get(self.base + path, timeout=30)
        found = CSRF.search(page.text)
        return found.group(1) if found else ""

    def sign_in(self, s: requests.Session, email: str, password: str) -> int:
        token = self._csrf(s, "/accounts/login/")
        answer = s.post(
            self.base + "/accounts/login/",
            data={
                "csrfmiddlewaretoken": token,
                "username": email,
                "password": password,
            },
            headers={"Referer": self.base + "/accounts/login/"},
            allow_redirects=False,
            timeout=30,
        )
        return answer.status_code

    def fail(self, email: str, ip: str) -> int:
        return self.sign_in(self.session(ip), email, "not-the-password-1")

    # The scenarios ----------------------------------------------------------

    def stuffing(self) -> None:
        codes = [
            self.fail(f"leaked{n % 6}@example.test", "198.51.100.9") for n in range(30)
        ]
        self.say(
            f"stuffing: 30 sign-ins over 6 accounts from 198.51.100.9: {_tally(codes)}"
        )

    def spray(self) -> None:
        codes = [
            self.fail(f"staff{n}@example.test", f"192.0.2.{n + 1}") for n in range(20)
        ]
        self.say(f"spray: 20 accounts from 20 addresses: {_tally(codes)}")

    def brute(self, victim: str) -> None:
        codes = [self.fail(victim, "203.0.113.7") for _ in range(12)]
        self.say(f"brute: 12 sign-ins of {victim} from 203.0.113.7: {_tally(codes)}")

    def download(
        self, email: str, password: str, project: str, count: int = 200
    ) -> None:
        s = self.session("203.0.113.20")
        self.sign_in(s, email, password)
        page = s.get(f"{self.base}/projects/{project}/", timeout=30)
        links = sorted(set(DOWNLOAD.findall(page.text)))
        if not links:
            self.say(f"download: no files listed in project {project} for {email}")
            return
        codes = []
        for n in range(count):
            codes.append(
                s.get(self.base + links[n % len(links)], timeout=60).status_code
            )
        self.say(f"download: {count} downloads by {email}: {_tally(codes)}")

    def grant(self, email: str, password: str, totp_hex: str, target_id: str) -> None:
        s = self.session("203.0.113.30")
        self.sign_in(s, email, password)
        token = self._csrf(s, "/accounts/login/verify/")
        s.post(
            self.base + "/accounts/login/verify/",
            data={"csrfmiddlewaretoken": token, "token": totp_now(totp_hex)},
            headers={"Referer": self.base + "/accounts/login/verify/"},
            timeout=30,
        )
        path = f"/admin/accounts/user/{target_id}/change/"
        form = s.get(self.base + path, timeout=30)
        fields = dict(
            re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form.text)
        )
        data = {
            "csrfmiddlewaretoken": CSRF.search(form.text).group(1),
            "email": fields.get("email", ""),
            "full_name": fields.get("full_name", ""),
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
        }
        answer = s.post(
            self.base + path,
            data=data,
            headers={"Referer": self.base + path},
            allow_redirects=False,
            timeout=30,
        )
        self.say(
            f"grant: user {target_id} made staff and superuser: {answer.status_code}"
        )

    def flood(self, count: int = 200) -> None:
        s = self.session("198.51.100.77")
        codes = [
            s.get(f"{self.base}/wp-admin/{n}.php", timeout=30).status_code
            for n in range(count)
        ]
        self.say(f"flood: {count} missing pages from 198.51.100.77: {_tally(codes)}")

    def normal(self, email: str, password: str, project: str) -> None:
        """A member's ordinary morning: nothing here may raise an alert."""
        s = self.session("203.0.113.40")
        codes = [self.sign_in(s, email, password)]
        for path in ("/projects/", f"/projects/{project}/", "/accounts/security/"):
            codes.append(s.get(self.base + path, timeout=30).status_code)
        page = s.get(f"{self.base}/projects/{project}/", timeout=30)
        for link in sorted(set(DOWNLOAD.findall(page.text)))[:5]:
            codes.append(s.get(self.base + link, timeout=60).status_code)
        codes.append(
            s.get(self.base + "/favicon-that-is-not-there.ico", timeout=30).status_code
        )
        self.say(f"normal: {len(codes)} requests by {email}: {_tally(codes)}")


def totp_now(key_hex: str, *, step: int = 30, digits: int = 6) -> str:
    """RFC 6238 with SHA-1, as django-otp's TOTP devices compute it."""
    counter = struct.pack(">Q", int(time.time()) // step)
    digest = hmac.new(bytes.fromhex(key_hex), counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{code % 10**digits:0{digits}d}"


def _tally(codes: list[int]) -> str:
    counts: dict[int, int] = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return ", ".join(f"{n}× {code}" for code, n in sorted(counts.items()))


def main(argv: list[str] | None = None, out=sys.stdout) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--member", help="a project member, for download and --normal")
    parser.add_argument("--member-password")
    parser.add_argument("--project", help="a project of the member, with files")
    parser.add_argument("--victim", default="", help="the brute-forced account")
    parser.add_argument("--admin", help="a superuser with an authenticator app")
    parser.add_argument("--admin-password")
    parser.add_argument("--admin-totp", help="the authenticator's key, hex")
    parser.add_argument("--grant-user-id", help="the account the admin makes staff")
    parser.add_argument("--forwarded", action="store_true")
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--normal", action="store_true", help="ordinary use only")
    args = parser.parse_args(argv)
    attack = Attack(args.base, forwarded=args.forwarded, out=out)
    if args.normal:
        attack.normal(args.member, args.member_password, args.project)
        return 0
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    for name in chosen:
        if name == "brute":
            attack.brute(args.victim or args.member or "victim@example.test")
        elif name == "download":
            if not (args.member and args.member_password and args.project):
                parser.error("download needs --member, --member-password, --project")
            attack.download(args.member, args.member_password, args.project)
        elif name == "grant":
            if not (args.admin and args.admin_password and args.admin_totp):
                parser.error("grant needs --admin, --admin-password, --admin-totp")
            attack.grant(
                args.admin, args.admin_password, args.admin_totp, args.grant_user_id
            )
        else:
            getattr(attack, name)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
