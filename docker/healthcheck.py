"""Container health check for the web service: GET /healthz must answer 200.

/healthz reports the database, a broker round trip through a Celery worker, the OpenCode
binary, the sandbox, the servers' bounds and whether the encryption keys open the stored
secrets; it answers 503 when any of them is down, and this script then exits 1 and prints the report
(`docker inspect` shows it under State.Health). The probe is anonymous, so the report says
only which parts are down (`{"status": "error", "broker": {"ok": false}, ...}`); a staff
user logged in to doce sees why at /healthz.

The request is sent with a Host header taken from ALLOWED_HOSTS, so the check passes
whatever host names the operator allows (Django rejects an unknown Host with 400).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000/healthz"  # uvicorn binds 0.0.0.0:8000 in the container
TIMEOUT_SECONDS = 20


def host_header(allowed_hosts: str) -> str:
    for entry in (part.strip() for part in allowed_hosts.split(",")):
        if entry and entry != "*":
            # ".example.com" allows example.com and its subdomains.
            return entry.lstrip(".")
    return "localhost"


def main() -> int:
    request = urllib.request.Request(
        URL, headers={"Host": host_header(os.environ.get("ALLOWED_HOSTS", ""))}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            body = response.read(4096).decode(errors="replace")
            status = response.status
    except urllib.error.HTTPError as exc:
        body = exc.read(4096).decode(errors="replace")
        status = exc.code
    except OSError as exc:
        print(f"healthz unreachable: {exc}")
        return 1
    print(f"{status} {body}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
