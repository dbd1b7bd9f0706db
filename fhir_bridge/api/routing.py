"""Routers added to the app as flat lists of routes, and an index over them: routing cheap per request."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.concurrency import run_in_threadpool
from starlette.convertors import PathConvertor
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

E = TypeVar("E", bound=Callable[..., Any])
_PLAIN = "_fhir_bridge_plain_route"


def request_alone(endpoint: E) -> E:
    """Mark an endpoint that takes the request alone and returns its ``Response``: it is served by a
    ``PlainRoute`` (``include_routes``)."""
    setattr(endpoint, _PLAIN, True)
    return endpoint


class PlainRoute(APIRoute):
    """A route whose endpoint is called with the request as it is, without FastAPI's request handler.

    The handler solves dependencies, validates parameters and serialises the return value: for an
    endpoint that takes the request alone and returns a ``Response`` there is nothing to do, and it
    still cost ~60 us of CPU a request. The route is otherwise an APIRoute: matched, documented in
    OpenAPI (``openapi_extra`` describes the path parameters the endpoint reads itself) and wrapped
    by the app's exception handlers alike. A plain ``def`` runs on the thread pool, as FastAPI runs it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        if inspect.iscoroutinefunction(endpoint):
            return endpoint

        async def on_a_thread(request: Request) -> Response:
            return await run_in_threadpool(endpoint, request)

        return on_a_thread


def include_routes(app: FastAPI, router: APIRouter, prefix: str = "", tags: list[str | Enum] | None = None) -> None:
    """``app.include_router``, with the routes added to the app's own list.

    FastAPI (0.16x) keeps an included router as one nested route and matches a request against it
    twice, through a context object per candidate: a request for the last router (the FHIR REST
    routes) cost ~100 us of CPU in routing alone, as much as the read behind it. The routes added here
    are the same APIRoutes (path, endpoint, OpenAPI facts), matched by one regex each.
    """
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"only APIRoutes can be included flat, not {route!r}")
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=[*(tags or []), *route.tags],
            dependencies=route.dependencies,
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=route.responses,
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
            route_class_override=PlainRoute if getattr(route.endpoint, _PLAIN, False) else None,
        )


class RouteIndex(BaseRoute):
    """The app's routes looked up by method and leading path segments, first match first.

    Starlette matches a request against every route in turn, each by a regex (and FastAPI's
    context bookkeeping): with 80 routes and the FHIR REST routes last, a FHIR read paid ~50 failed
    matches. Placed first in the app's routes, this one tries only the routes that could match the
    request (same method, same number of segments, the same literal segments), in their
    order, and answers with the first full match; it answers "no match" otherwise, and the
    routes after it are tried as before (405 for a known path with another method, slash
    redirects, 404). Which route takes a request is unchanged; ``tests/test_route_index.py``
    checks that for every route of the app.
    """

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.entries = [_Entry.of(route) for route in routes]
        if any(entry is None for entry in self.entries):
            raise TypeError("RouteIndex covers Routes only: include routers with include_routes")
        self.methods = {method for e in self.entries if e and e.methods for method in e.methods}
        self.longest = max((len(e.segments) for e in self.entries if e), default=0)
        self.literals = [
            {e.segments[i] for e in self.entries if e and len(e.segments) > i and e.segments[i] is not None}
            for i in range(self.longest)
        ]
        self.wildcards = any(e.any_length for e in self.entries if e)
        self.cache: dict[tuple[str, int, tuple[str | None, ...]], list[BaseRoute]] = {}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        for route in self.candidates(scope["method"], get_route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return Match.FULL, {**child_scope, CHOSEN: route}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope.pop(CHOSEN).handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)  # the indexed routes answer that themselves

    def candidates(self, method: str, path: str) -> list[BaseRoute]:
        segments = path.split("/")[1:]
        if len(segments) > self.longest and not self.wildcards:
            return []
        keyed = tuple(
            segment if segment in literals else None for segment, literals in zip(segments, self.literals, strict=False)
        )
        key = (method if method in self.methods else "", min(len(segments), self.longest + 1), keyed)
        found = self.cache.get(key)
        if found is None:
            found = [e.route for e in self.entries if e and e.could_match(*key)]
            self.cache[key] = found  # bounded: methods, lengths and literals are the routes' own
        return found


CHOSEN = "fhir_bridge.route_index.chosen"


@dataclass(frozen=True)
class _Entry:
    route: BaseRoute
    methods: frozenset[str] | None  # None: every method
    segments: tuple[str | None, ...]  # literal segments, None where a parameter is
    any_length: bool  # a ``{name:path}`` parameter spans segments

    @classmethod
    def of(cls, route: BaseRoute) -> _Entry | None:
        if not isinstance(route, Route | APIRoute):
            return None
        segments = tuple(None if "{" in s else s for s in route.path_format.split("/")[1:])
        spans = any(isinstance(c, PathConvertor) for c in route.param_convertors.values())
        methods = frozenset(route.methods) if route.methods else None
        return cls(route, methods, segments, spans)

    def could_match(self, method: str, length: int, keyed: tuple[str | None, ...]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if not self.any_length and len(self.segments) != length:
            return False
        pairs = zip(self.segments, keyed, strict=False)
        return self.any_length or all(mine is None or mine == theirs for mine, theirs in pairs)


def index_routes(app: FastAPI) -> None:
    """Put a ``RouteIndex`` of the app's routes first (call once every route is added)."""
    app.router.routes.insert(0, RouteIndex(list(app.router.routes)))
