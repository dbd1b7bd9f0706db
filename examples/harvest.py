"""Harvest everything that changed on a fhir-bridge node since the last run; resumable.

    python examples/harvest.py http://127.0.0.1:8080/fhir --state harvest.json --out harvest.ndjson

Each run appends one JSON line per new version (creates, updates and deletes) to ``--out`` and
saves its position in ``--state``. How it works (see docs/fhir-api.md, "Incremental harvesting"):

- A run reads ``GET [base]/_history?_since=<position>``, newest first, following ``next`` links.
  Pages are cut on the store's commit sequence, so a write that commits while the run pages is
  simply left for the next run, never half-seen.
- The new position is the newest ``lastModified`` the run saw. Versions committed together share
  one lastModified, and lastModified grows with every commit, so everything at or before the
  position was seen; the next run asks ``_since=<position>`` (inclusive) and skips what is not newer.
- After every page the ``next`` link is saved: an interrupted run continues from it.

Output lines are written before the state that covers them, so a crash can repeat a page, never
lose one: key what you store by (resourceType, id, versionId).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _save(path: Path, state: dict[str, Any]) -> None:
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(state), encoding="utf-8")
    os.replace(scratch, path)  # atomic: the state file is always a whole, valid position


def harvest(base: str, state_path: Path, out_path: Path, count: int = 100, max_pages: int | None = None) -> int:
    """One run; returns the number of versions written. ``max_pages`` stops early (a resumable run)."""
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    since: str | None = state.get("since")
    newest: str | None = state.get("newest")
    url: str | None = state.get("next")
    if url is None:  # a fresh run
        params = {"_count": count, **({"_since": since} if since else {})}
        url = str(httpx.URL(f"{base.rstrip('/')}/_history", params=params))
    written = pages = 0
    with httpx.Client(headers={"Accept": "application/fhir+json"}, timeout=60) as client, out_path.open("a") as out:
        while url:
            bundle = client.get(url).raise_for_status().json()
            for entry in bundle.get("entry", []):
                modified = entry["response"]["lastModified"]
                if since and _instant(modified) <= _instant(since):
                    continue  # seen by the previous run
                if newest is None or _instant(modified) > _instant(newest):
                    newest = modified
                line = {
                    "method": entry["request"]["method"],  # POST, PUT or DELETE
                    "fullUrl": entry["fullUrl"],
                    "etag": entry["response"]["etag"],  # W/"<versionId>"
                    "lastModified": modified,
                }
                if "resource" in entry:  # absent for deletions
                    line["resource"] = entry["resource"]
                out.write(json.dumps(line) + "\n")
                written += 1
            out.flush()
            os.fsync(out.fileno())
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            pages += 1
            if url is None:
                _save(state_path, {"since": newest or since})  # the run is complete
            else:
                _save(state_path, {"since": since, "newest": newest, "next": url})
                if max_pages is not None and pages >= max_pages:
                    break
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the FHIR base URL, e.g. http://127.0.0.1:8080/fhir")
    parser.add_argument("--state", type=Path, default=Path("harvest-state.json"), help="position file")
    parser.add_argument("--out", type=Path, default=Path("harvest.ndjson"), help="NDJSON file to append to")
    parser.add_argument("--count", type=int, default=100, help="versions per page (the server caps it)")
    parser.add_argument("--max-pages", type=int, help="stop after this many pages (resume with the next run)")
    arguments = parser.parse_args()
    written = harvest(arguments.base, arguments.state, arguments.out, arguments.count, arguments.max_pages)
    print(f"{written} versions harvested")


if __name__ == "__main__":
    main()
