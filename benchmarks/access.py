"""What access control and the audit trail cost: reads and searches with and without them.

The same app is measured three ways in one run, over real HTTP (uvicorn on loopback, one
keep-alive client, one request at a time):

- baseline: the app without its access-control middleware (no token check, no audit record);
- audit: access control off (``FHIR_BRIDGE_AUTH=none``), every request still recorded;
- auth+audit: a bearer token from the built-in token endpoint verified on every request, recorded.

Ratios are requests/s against the baseline. Also printed: the cost of verifying a token the
server has not seen before (the verifier caches a verified token until it expires).

    python -m benchmarks.access                         # SQLite and PostgreSQL
    python -m benchmarks.access --databases sqlite --requests 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.dicom_ingest import postgres_schema
from fhir_bridge import Settings, create_app
from fhir_bridge.api.access import AccessControl
from fhir_bridge.security.clients import ClientRegistry
from tests.conftest import serving
from tests.security_helpers import ec_key, token_request

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KEY = "benchmark-site-secret-0123456789"
PATIENTS = 200


@contextmanager
def database(kind: str, postgres_url: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'store.db'}"
        return
    with postgres_schema(postgres_url) as url:
        yield url


@contextmanager
def served(database_url: str, variant: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The app of one variant under uvicorn; yields its base URL and the headers to send."""
    settings = Settings(
        database_url=database_url,
        pseudonym_key=KEY,
        auth="none" if variant != "auth+audit" else "smart",
        token_key_file=Path(tempfile.gettempdir()) / f"fhir-bridge-bench-{os.getpid()}.token-keys.json",
    )
    app = create_app(settings)
    if variant == "baseline":
        app.user_middleware = [m for m in app.user_middleware if m.cls is not AccessControl]
    headers: dict[str, str] = {}
    if variant == "auth+audit":
        key = ec_key("bench-1")
        ClientRegistry(app.state.services.engines).add("bench", "system/*.rs", jwks=key.jwks(), jwks_url=None)
        from fastapi.testclient import TestClient

        with TestClient(app, base_url="http://testserver") as local:
            answer = token_request(local, "bench", key, "system/*.rs")
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}/fhir", headers
    app.state.services.close()


def seed(database_url: str) -> list[str]:
    app = create_app(Settings(database_url=database_url, pseudonym_key=KEY, auth="none"))
    from fastapi.testclient import TestClient

    ids = []
    with TestClient(app, base_url="http://testserver") as client:
        for n in range(PATIENTS):
            body = {"resourceType": "Patient", "gender": "female" if n % 2 else "male", "birthDate": "1960"}
            ids.append(client.post("/fhir/Patient", json=body).json()["id"])
    app.state.services.close()
    return ids


def measure(send: Callable[[int], httpx.Response], requests: int) -> tuple[float, float]:
    """Requests/s and p50 latency (ms) of ``requests`` sequential calls (after a warm-up)."""
    for n in range(20):
        send(n).raise_for_status()
    latencies = []
    started = time.perf_counter()
    for n in range(requests):
        begin = time.perf_counter()
        send(n).raise_for_status()
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    return requests / elapsed, statistics.median(latencies) * 1000


def run(kind: str, postgres_url: str, requests: int) -> None:
    with database(kind, postgres_url) as url:
        ids = seed(url)
        results: dict[str, dict[str, tuple[float, float]]] = {}
        for variant in ("baseline", "audit", "auth+audit"):
            with served(url, variant) as (base, headers), httpx.Client(headers=headers) as client:
                results[variant] = {
                    "read": measure(lambda n, c=client, b=base: c.get(f"{b}/Patient/{ids[n % len(ids)]}"), requests),
                    "search": measure(
                        lambda n, c=client, b=base: c.get(f"{b}/Patient?gender=female&_count=10"), requests // 2
                    ),
                }
        print(f"== {kind}: {PATIENTS} Patients, {requests} reads and {requests // 2} searches per variant")
        print(f"{'':24}{'req/s':>10}{'p50 ms':>10}{'ratio':>8}")
        for interaction in ("read", "search"):
            base_rate = results["baseline"][interaction][0]
            for variant, figures in results.items():
                rate, p50 = figures[interaction]
                print(f"{interaction + ' ' + variant:24}{rate:10.0f}{p50:10.2f}{rate / base_rate:8.2f}")
    verify_cost()


def verify_cost(rounds: int = 200) -> None:
    """Time of verifying a token never seen before (signature check), against a cached one."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(Settings(database_url=f"sqlite:///{folder}/v.db", pseudonym_key=KEY, auth="smart"))
        signing = app.state.services.token_keys.signing()
        issuer, verifier = app.state.services.token_issuer, app.state.services.token_verifier
        key = ec_key("v-1")
        ClientRegistry(app.state.services.engines).add("v", "system/*.rs", jwks=key.jwks(), jwks_url=None)
        import jwt

        tokens = [
            jwt.encode(
                {"iss": issuer.issuer, "aud": issuer.issuer, "client_id": "v", "scope": "system/*.rs",
                 "iat": int(time.time()), "exp": int(time.time()) + 300, "jti": str(n)},
                signing.private_key, algorithm="ES256", headers={"kid": signing.kid},
            )
            for n in range(rounds)
        ]  # fmt: skip
        started = time.perf_counter()
        for token in tokens:
            verifier.verify(token, "")
        fresh = (time.perf_counter() - started) / rounds * 1e6
        started = time.perf_counter()
        for token in tokens:
            verifier.verify(token, "")
        cached = (time.perf_counter() - started) / rounds * 1e6
        app.state.services.close()
    print(f"token verification: new token {fresh:.0f} us, cached {cached:.1f} us (ratio {fresh / cached:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("FHIR_BRIDGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--requests", type=int, default=1000)
    arguments = parser.parse_args()
    for kind in arguments.databases.split(","):
        run(kind.strip(), arguments.postgres_url, arguments.requests)


if __name__ == "__main__":
    main()
