"""The OpenAPI 3 document of ``baton serve``, written out (not generated from docstrings), so
it states exactly what the routes of ``llama_routes`` and ``auth`` accept and answer."""

from __future__ import annotations

from functools import cache
from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_HANDLER = {"$ref": "#/components/schemas/Handler"}


def _path(name: str, what: str) -> dict[str, Any]:
    schema = {"type": "string"}
    return {"in": "path", "name": name, "required": True, "schema": schema, "description": what}


def _query(name: str, schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {"in": "query", "name": name, "required": False, "schema": schema, "description": what}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    responses: dict[str, Any],
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    if not secured:
        op["security"] = []
    return op


_NAME = _path("name", "a registered workflow name")
_HANDLER_ID = _path("handler_id", "a handler id: the Baton run id")
_RUN_BODY = {
    "type": "object",
    "properties": {
        "start_event": {
            "description": "the start event: an envelope {type, value} or its bare fields",
            "type": "object",
        },
        "kwargs": {"type": "object", "description": "start event fields (without start_event)"},
        "context": {"type": "object", "description": "Context.to_dict() data to start from"},
        "handler_id": {"type": "string", "description": "continue an ended run's store"},
    },
}
_RUN_ANSWERS = {"400": _ERROR, "404": _ERROR, "409": _ERROR, "413": _ERROR}


# fmt: off
@cache
def openapi_schema() -> dict[str, Any]:
    """The document (built once; it depends on nothing at run time)."""
    paths: dict[str, Any] = {
        "/health": {"get": _op("Health: Redis answers", {
            "200": _json({"$ref": "#/components/schemas/Health"}, "healthy"),
            "503": _json({"$ref": "#/components/schemas/Health"}, "unhealthy")}, secured=False)},
        "/workflows": {"get": _op("List workflows", {"200": _json(
            {"type": "object", "properties": {"workflows": {"type": "array",
             "items": {"type": "string"}}}, "required": ["workflows"]}, "workflow names")})},
        "/workflows/{name}/run": {"post": _op(
            "Run a workflow and wait for its end",
            {"200": _json(_HANDLER, "completed"), "500": _json(_HANDLER, "failed or cancelled"),
             **_RUN_ANSWERS}, [_NAME], _RUN_BODY)},
        "/workflows/{name}/run-nowait": {"post": _op(
            "Start a workflow run", {"200": _json(_HANDLER, "started"), **_RUN_ANSWERS},
            [_NAME], _RUN_BODY)},
        "/workflows/{name}/schema": {"get": _op("Start and stop event JSON schemas", {
            "200": _json({"type": "object", "properties": {"start": {"type": "object"},
                          "stop": {"type": "object"}}, "required": ["start", "stop"]}, "schemas"),
            "404": _ERROR}, [_NAME])},
        "/workflows/{name}/events": {"get": _op("JSON schemas of the workflow's events", {
            "200": _json({"type": "object", "properties": {"events": {"type": "array",
                          "items": {"type": "object"}}}, "required": ["events"]}, "schemas"),
            "404": _ERROR}, [_NAME])},
        "/workflows/{name}/representation": {"get": _op("The step graph", {
            "200": _json({"type": "object", "properties": {"graph": {"type": "object"}},
                          "required": ["graph"]}, "nodes and edges"), "404": _ERROR}, [_NAME])},
        "/handlers": {"get": _op("List handlers (runs), newest first", {
            "200": _json({"$ref": "#/components/schemas/HandlersList"}, "handlers"),
            "400": _ERROR}, [
            _query("status", {"type": "array", "items": {"type": "string",
                   "enum": ["running", "completed", "failed", "cancelled"]}}, "repeatable"),
            _query("workflow_name", {"type": "array", "items": {"type": "string"}}, "repeatable"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                   "at most this many (Baton's addition)")])},
        "/handlers/{handler_id}": {"get": _op("A handler", {
            "200": _json(_HANDLER, "completed"), "202": _json(_HANDLER, "running"),
            "500": _json(_HANDLER, "failed or cancelled"), "404": _ERROR}, [_HANDLER_ID])},
        "/handlers/{handler_id}/cancel": {"post": _op("Cancel a running handler", {
            "200": _json({"$ref": "#/components/schemas/Status"}, "cancelled"),
            "400": _ERROR, "404": _ERROR, "409": _ERROR}, [_HANDLER_ID, _query(
                "purge", {"type": "boolean", "default": False}, "refused: runs expire instead")])},
        "/results/{handler_id}": {"get": _op("A handler with its bare result (deprecated)", {
            "200": _json({"type": "object"}, "completed"), "202": _json({"type": "object"},
            "running"), "500": _json({"type": "object"}, "failed or cancelled"),
            "404": _ERROR}, [_HANDLER_ID])},
        "/events/{handler_id}": {
            "get": _op("Stream a handler's events (SSE or NDJSON)", {
                "200": {"description": "events: SSE `id: N` + `data: <envelope>`, or NDJSON",
                        "content": {"text/event-stream": {"schema": {"type": "string"}},
                                    "application/x-ndjson": {"schema": {
                                        "$ref": "#/components/schemas/EventEnvelope"}}}},
                "204": {"description": "the run ended and no event is left"},
                "400": _ERROR, "404": _ERROR}, [
                _HANDLER_ID,
                _query("sse", {"type": "boolean", "default": True}, "false: NDJSON"),
                _query("after_sequence", {"oneOf": [{"type": "integer"}, {"type": "string",
                       "enum": ["now"]}], "default": "now"}, "-1: from the start"),
                _query("include_qualified_name", {"type": "boolean", "default": True}, ""),
                _query("include_internal", {"type": "boolean", "default": False},
                       "accepted; Baton has no internal events")]),
            "post": {**_op("Send an event into a running handler", {
                "200": _json({"$ref": "#/components/schemas/Status"}, "sent"),
                "400": _ERROR, "404": _ERROR, "409": _ERROR, "413": _ERROR}, [_HANDLER_ID]),
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["event"], "properties": {
                        "event": {"oneOf": [{"type": "object"}, {"type": "string"}],
                                  "description": "an envelope {type, value}"},
                        "step": {"type": "string"}}}}}}},
        },
        "/baton/login": {"post": _op("Set the baton_token cookie (HttpOnly, SameSite=Strict)", {
            "200": _json({"$ref": "#/components/schemas/Status"}, "logged in"), "401": _ERROR},
            body={"type": "object", "properties": {"token": {"type": "string"}},
                  "required": ["token"]}, secured=False)},
        "/baton/logout": {"post": _op("Clear the cookie", {
            "200": _json({"$ref": "#/components/schemas/Status"}, "logged out")}, secured=False)},
    }
    envelope = {"type": "object", "required": ["value", "type"], "properties": {
        "value": {"type": "object"}, "type": {"type": "string"},
        "types": {"type": "array", "items": {"type": "string"}, "nullable": True},
        "qualified_name": {"type": "string", "nullable": True}}}
    handler = {"type": "object", "required": ["handler_id", "workflow_name", "status",
                                              "started_at"], "properties": {
        "handler_id": {"type": "string"}, "workflow_name": {"type": "string"},
        "run_id": {"type": "string", "nullable": True},
        "status": {"type": "string", "enum": ["running", "completed", "failed", "cancelled"]},
        "started_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time", "nullable": True},
        "completed_at": {"type": "string", "format": "date-time", "nullable": True},
        "error": {"type": "string", "nullable": True},
        "result": {"oneOf": [{"$ref": "#/components/schemas/EventEnvelope"}, {"type": "null"}]},
        "result_unreadable": {"type": "boolean"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Baton HTTP API (llama-agents-server 0.8 compatible)",
                 "version": "1"},
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "baton_token"},
            },
            "responses": {"Error": _json({"type": "object", "properties": {
                "detail": {}}, "required": ["detail"]}, "an error: {detail}")},
            "schemas": {
                "EventEnvelope": envelope,
                "Handler": handler,
                "HandlersList": {"type": "object", "required": ["handlers"], "properties": {
                    "handlers": {"type": "array", "items": _HANDLER}}},
                "Health": {"type": "object", "properties": {"status": {"type": "string",
                           "enum": ["healthy", "unhealthy"]}}, "required": ["status"]},
                "Status": {"type": "object", "properties": {"status": {"type": "string"}},
                           "required": ["status"]},
            },
        },
    }
# fmt: on
