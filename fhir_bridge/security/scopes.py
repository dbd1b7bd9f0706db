"""SMART App Launch v2 scopes (``system/ImagingStudy.rs``, ``system/*.cruds``, v1 ``.read``/``.write``).

A scope names a context (``system``, ``user`` or ``patient``), a resource type (or ``*``) and
the interactions it allows: c(reate), r(ead), u(pdate), d(elete), s(earch). This server serves
backend systems, so ``system/`` and ``user/`` scopes grant type-level access; ``patient/`` scopes
need a patient context that backend tokens do not carry, and scopes narrowed by a query
(``system/Observation.rs?category=...``) are not enforced here, so neither grants anything:
ignoring the narrowing would grant more than the token says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INTERACTIONS = "cruds"
V1_ACTIONS = {"read": "rs", "write": "cud", "*": "cruds"}
AUDIT_SCOPE = "system/AuditEvent.rs"
# Erasure of a patient's compartment (``Patient/[id]/$erase``): no SMART interaction letter covers
# removing history for good, so it has a scope of its own, granted only by name (never by ``*``
# or ``cruds``): ``system/Patient.erase``. Internally its interaction is the letter ``x``.
ERASE = "x"
ERASE_SCOPE = "system/Patient.erase"
# Types a wildcard scope does not reach: the audit trail is read only by clients granted it by name.
EXPLICIT_ONLY = frozenset({"AuditEvent"})
_SCOPE = re.compile(r"^(?P<context>system|user|patient)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<actions>[a-z*]+)$")


@dataclass(frozen=True)
class Permission:
    """One interaction on one resource type (``*``: every type)."""

    resource_type: str
    interaction: str  # one of c r u d s

    def scope(self) -> str:
        """The narrowest scope that grants it, for error messages."""
        if self.interaction == ERASE:
            return f"system/{self.resource_type}.erase"
        return f"system/{self.resource_type}.{self.interaction}"


@dataclass(frozen=True)
class Grant:
    """What a token's scopes allow: interactions per resource type, ``*`` for every type."""

    interactions: dict[str, frozenset[str]] = field(default_factory=dict)
    scopes: tuple[str, ...] = ()  # the scopes that granted something, in the token's order

    def allows(self, permission: Permission) -> bool:
        letter = permission.interaction
        if permission.resource_type not in EXPLICIT_ONLY and letter in self.interactions.get("*", ()):
            return True
        if permission.resource_type == "*":
            return False
        return letter in self.interactions.get(permission.resource_type, ())

    def missing(self, needed: set[Permission]) -> list[Permission]:
        """The needed permissions this grant lacks, in a stable order."""
        return sorted((p for p in needed if not self.allows(p)), key=lambda p: (p.resource_type, p.interaction))

    def readable_types(self, candidates: list[str]) -> list[str]:
        return [t for t in candidates if self.allows(Permission(t, "r"))]


def parse_scope(scope: str) -> tuple[str, frozenset[str]] | None:
    """``(resource type, interactions)`` a single scope grants, or None when it grants nothing here."""
    match = _SCOPE.match(scope)
    if match is None or match["context"] == "patient":
        return None
    actions = match["actions"]
    if actions == "erase":
        return (match["type"], frozenset(ERASE)) if match["type"] == "Patient" else None
    letters = V1_ACTIONS.get(actions)
    if letters is None:
        # v2: the letters in the order c, r, u, d, s, each at most once
        if not re.fullmatch("c?r?u?d?s?", actions) or not actions:
            return None
        letters = actions
    return match["type"], frozenset(letters)


def grant_of(scope_text: str) -> Grant:
    """The grant of a space-separated scope string (a token's ``scope`` claim)."""
    interactions: dict[str, set[str]] = {}
    granted: list[str] = []
    for scope in scope_text.split():
        parsed = parse_scope(scope)
        if parsed is None:
            continue
        resource_type, letters = parsed
        interactions.setdefault(resource_type, set()).update(letters)
        granted.append(scope)
    return Grant({t: frozenset(letters) for t, letters in interactions.items()}, tuple(granted))


def narrow(requested: str, allowed: str) -> str:
    """The scopes of ``requested`` that the ``allowed`` scopes cover, each cut down to what they cover.

    The built-in token endpoint grants a client no more than it was registered with: asking for
    ``system/*.cruds`` when registered with ``system/ImagingStudy.rs`` yields ``system/ImagingStudy.rs``.
    """
    limit = grant_of(allowed)
    result: list[str] = []
    for resource_type, letters in grant_of(requested).interactions.items():
        # a wildcard request also gets each registered type it covers
        for granted_type in [resource_type] + (
            [t for t in limit.interactions if t != "*"] if resource_type == "*" else []
        ):
            kept = "".join(
                letter
                for letter in INTERACTIONS
                if letter in letters and limit.allows(Permission(granted_type, letter))
            )
            if kept:
                result.append(f"system/{granted_type}.{kept}")
            if ERASE in letters and granted_type != "*" and limit.allows(Permission(granted_type, ERASE)):
                result.append(f"system/{granted_type}.erase")
    return " ".join(dict.fromkeys(result))


def unenforceable_scopes(scope_text: str) -> list[str]:
    """The scopes of a registration that this server cannot enforce (for a clear refusal)."""
    return [scope for scope in scope_text.split() if parse_scope(scope) is None]
