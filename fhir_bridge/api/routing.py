"""Routers added to the app as flat lists of routes (cheaper to match than FastAPI's included routers)."""

from __future__ import annotations

from enum import Enum

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute


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
        )
