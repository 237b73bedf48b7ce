#!/usr/bin/env python3
"""Token checks while logins burst: /api/auth/verify latency through the gateway, alone and
during a burst of wrong-password logins, on the default local stack.

Every other service asks auth-service to verify a token, so a login burst that stalled its
event loop (argon2 on the loop) stalled the whole stack. The burst comes from LOGIN_CLIENTS
threads, each logging in as its own throwaway username with a wrong password, for
BURST_SECONDS: the gateway answers most of them 429 (its per-address limit, here one address)
and auth-service locks each username out after its fifth attempt, so the burst also shows how
much argon2 work gets past both limits. Prints p50/p95/p99 of verify and the burst's answers;
writes benchmarks/results/<date>-login-burst.md and login-burst.json.

    .venv/bin/python benchmarks/run_login_burst.py
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import run_benchmarks as bench  # noqa: E402
from benchmarks.loadgen import register_and_login, tls_context  # noqa: E402
from stackdeploy.model import read_settings  # noqa: E402

VERIFY_SAMPLES = 300  # per phase, one after another
LOGIN_CLIENTS = 8
BURST_SECONDS = 20.0
USERNAMES_PER_CLIENT = 40  # each locked out after five attempts: the next one takes over


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100)
    return {"p50_ms": round(cuts[49] * 1000, 1), "p95_ms": round(cuts[94] * 1000, 1),
            "p99_ms": round(cuts[98] * 1000, 1)}


def verify_latencies(client: httpx.Client, token: str) -> list[float]:
    seconds = []
    for _ in range(VERIFY_SAMPLES):
        started = time.perf_counter()
        answer = client.get("/api/auth/verify", headers={"Authorization": f"Bearer {token}"})
        seconds.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise SystemExit(f"verify answered {answer.status_code}: {answer.text[:200]}")
    return seconds


def burst(base_url: str, ca_file: str, until: float, answers: Counter, lock: threading.Lock) -> None:
    with httpx.Client(base_url=base_url, verify=tls_context(ca_file), timeout=30, trust_env=False) as client:
        names = [f"burst-{uuid.uuid4().hex[:10]}" for _ in range(USERNAMES_PER_CLIENT)]
        sent = 0
        while time.monotonic() < until:
            body = {"username": names[(sent // 6) % len(names)], "password": "a-wrong-guess-1"}
            status = client.post("/api/auth/login", json=body).status_code
            sent += 1
            with lock:
                answers[status] += 1


def main() -> None:
    settings = read_settings(ROOT / "group_data" / "all.py")
    base_url = f"https://127.0.0.1:{settings['tls']['port']}"
    ca_file = str(ROOT / ".deploy" / "tls" / f"{settings['stack_name']}-{settings['environment']}" / "ca.pem")
    token = register_and_login(base_url, ca_file=ca_file)
    with httpx.Client(base_url=base_url, verify=tls_context(ca_file), timeout=30, trust_env=False) as client:
        verify_latencies(client, token)  # warm-up
        idle = verify_latencies(client, token)
        answers: Counter = Counter()
        lock = threading.Lock()
        until = time.monotonic() + BURST_SECONDS
        threads = [threading.Thread(target=burst, args=(base_url, ca_file, until, answers, lock))
                   for _ in range(LOGIN_CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the burst under way
        during = verify_latencies(client, token)
        for thread in threads:
            thread.join(timeout=BURST_SECONDS + 60)
    results = {"machine": bench.machine(), "login_clients": LOGIN_CLIENTS, "burst_seconds": BURST_SECONDS,
               "verify_idle": percentiles(idle), "verify_during_burst": percentiles(during),
               "burst_answers": {str(status): count for status, count in sorted(answers.items())}}
    summary = (f"/api/auth/verify alone            p50 {results['verify_idle']['p50_ms']:6.1f} ms   "
               f"p99 {results['verify_idle']['p99_ms']:6.1f} ms\n"
               f"/api/auth/verify, logins bursting p50 {results['verify_during_burst']['p50_ms']:6.1f} ms   "
               f"p99 {results['verify_during_burst']['p99_ms']:6.1f} ms\n"
               f"burst answers ({LOGIN_CLIENTS} clients, {BURST_SECONDS:.0f} s)  {results['burst_answers']}")
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    (bench.RESULTS / "login-burst.json").write_text(json.dumps(results, indent=2) + "\n")
    (bench.RESULTS / f"{day}-login-burst.md").write_text(
        f"# Token checks during a login burst ({results['machine']['date']})\n\n"
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['memory']}, Docker "
        f"{results['machine']['docker']}. The default stack, offline images, through the gateway (HTTPS); "
        f"{VERIFY_SAMPLES} verify calls one after another in each phase; 401 wrong password, 429 refused "
        f"by the gateway's per-address limit or auth-service's per-username lockout.\n\n```\n{summary}\n```\n")
    print(summary)


if __name__ == "__main__":
    main()
