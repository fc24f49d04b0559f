"""GraphQL over HTTP, as the specification (graphql.github.io/graphql-over-http) asks, MUSTs and SHOULDs.

Media types: a response is `application/graphql-response+json` when the `Accept` header prefers it, and
`application/json` when it asks for that, only for a wildcard, or when there is no `Accept` (legacy clients;
the spec's audit suite expects this); an `Accept` naming neither is refused with 406. Both are UTF-8 and say
so. A POST body must be `application/json` in UTF-8 (415 otherwise), at most GRAPHQL_MAX_BODY_BYTES (413).

Status codes, by what happened:

| outcome                                                   | graphql-response+json   | application/json |
|-----------------------------------------------------------|-------------------------|------------------|
| not a well-formed request: bad JSON, not UTF-8, empty,     | 400, no `data`          | 400, no `data`   |
|   `query` not a string, `variables`/`extensions` not objects |                      |                  |
| parse, validation, limit or variable-coercion failure,     | 400, no `data`          | 200, no `data`   |
|   unknown operation, a string holding U+0000 (nothing ran)   |                        |                  |
| executed (field errors or not)                             | 200 with `data`         | 200 with `data`  |
| cancelled at the time budget                               | 504, no `data`          | 200, no `data`   |
| a mutation over GET                                         | 405 + `Allow: POST`     | 405              |

Every error message is clipped, so a huge string in a request never comes back inside an error.
"""

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import Hashable, Iterable, Mapping
from enum import StrEnum
from typing import Any

import orjson
import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from billing.errors import DomainError
from billing.observability.request import current_request_id
from root.limits import limit_error
from server_cache import ResponseCache
from server_trusted_documents import TrustedDocument, TrustedDocuments, document_id

logger = logging.getLogger("billing.graphql")


class MediaType(StrEnum):
    GRAPHQL_RESPONSE = "application/graphql-response+json"
    JSON = "application/json"


_UTF_8 = frozenset({"utf-8", "utf8"})
# Among equally acceptable types, `application/json` wins: a wildcard is what legacy clients send.
_PREFERENCE = {MediaType.JSON: 1, MediaType.GRAPHQL_RESPONSE: 0}


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """`type/subtype` (lower case) and the parameters of one media type or media range."""
    essence, *parameters = value.split(";")
    named = {}
    for parameter in parameters:
        key, _, parameter_value = parameter.partition("=")
        named[key.strip().lower()] = parameter_value.strip().strip('"')
    return essence.strip().lower(), named


def negotiate(accept: str | None) -> MediaType | None:
    """The response's media type for an `Accept` header (RFC 9110 §12.5.1), or None when neither is acceptable.

    Each type takes the quality of the most specific range that matches it; the highest quality wins, then
    the more specific match, then the range listed first, then `application/json`.
    """
    if accept is None or not accept.strip():
        return MediaType.JSON
    ranked: dict[MediaType, tuple[float, int, int, int]] = {}
    for position, item in enumerate(accept.split(",")):
        essence, parameters = _media_type(item)
        if parameters.get("charset", "utf-8").lower() not in _UTF_8:
            continue  # we answer in UTF-8 only
        try:
            quality = float(parameters.get("q", "1"))
        except ValueError:
            continue
        for media_type in MediaType:
            kind = media_type.split("/")[0]
            specificity = {media_type.value: 2, f"{kind}/*": 1, "*/*": 0}.get(essence)
            if specificity is None:
                continue
            rank = (quality, specificity, -position, _PREFERENCE[media_type])
            known = ranked.get(media_type)
            if known is None or specificity > known[1]:
                ranked[media_type] = rank
    acceptable = {media_type: rank for media_type, rank in ranked.items() if rank[0] > 0}
    return max(acceptable, key=acceptable.__getitem__) if acceptable else None


def is_json_utf8(content_type: str | None) -> bool:
    essence, parameters = _media_type(content_type or "")
    return essence == MediaType.JSON and parameters.get("charset", "utf-8").lower() in _UTF_8


# --------------------------------------------------------------------------------------------- refusals


def with_request_id(extensions: Mapping[str, Any]) -> dict[str, Any]:
    """An error's extensions with the request's id (also in the X-Request-Id header and on its log lines), for
    support to find it."""
    request_id = current_request_id()
    return dict(extensions) if request_id is None else {**extensions, "requestId": request_id}


def refusal_error(message: str, code: str, **extensions: object) -> dict[str, Any]:
    """One error of a request answered before execution, with the request's id as every error carries it."""
    return {"message": message, "extensions": with_request_id({"code": code, **extensions})}


class Refused(Exception):
    """The request is answered before it reaches the schema: a status and one GraphQL-shaped error."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **figures: int,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = refusal_error(message, code, **figures)
        self.headers = dict(headers or {})

    def response(self, media_type: MediaType | None) -> Response:
        return _json_response(
            {"errors": [self.error]}, self.status, media_type or MediaType.JSON, self.headers
        )


def bad_request(message: str) -> Refused:
    return Refused(400, "BAD_REQUEST", message)


def not_acceptable() -> Refused:
    supported = " or ".join(MediaType)
    return Refused(
        406, "NOT_ACCEPTABLE", f"The Accept header allows no media type served here ({supported})."
    )


def unsupported_media_type() -> Refused:
    return Refused(
        415, "UNSUPPORTED_MEDIA_TYPE", "Send the request as Content-Type: application/json in UTF-8."
    )


def too_large(limit: int, actual: int | None = None) -> Refused:
    message = f"The request body is larger than {limit:,} bytes."
    if actual is None:  # read up to the limit only, so the full size is unknown
        return Refused(413, "REQUEST_TOO_LARGE", message, limit=limit)
    return Refused(413, "REQUEST_TOO_LARGE", message, limit=limit, actual=actual)


def method_not_allowed() -> Refused:
    message = "Mutations are sent with POST, never GET."
    return Refused(405, "METHOD_NOT_ALLOWED", message, headers={"Allow": "POST"})


# ------------------------------------------------------------------------------------ the request itself


@dataclasses.dataclass(frozen=True)
class GraphQLRequest:
    query: str | None  # None: the document is named by `document_id` (a trusted document)
    variables: dict[str, Any] | None = None
    operation_name: str | None = None
    extensions: dict[str, Any] | None = None
    document_id: str | None = None  # `documentId`, or Apollo's `extensions.persistedQuery.sha256Hash`


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str | bytes, what: str) -> object:
    """JSON as the spec has it (no NaN or Infinity); a body nested past the interpreter's depth is a 400."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise bad_request(f"The {what} is nested too deeply.") from None
    except ValueError as error:  # JSONDecodeError, NaN, an integer longer than Python converts
        raise bad_request(f"The {what} is not valid JSON: {error}.") from None


def request_from(data: object) -> GraphQLRequest:
    """The request's parameters, or a 400 naming the one that is missing or of the wrong type."""
    if isinstance(data, list):
        raise bad_request("Batched requests are not supported: send one JSON object per request.")
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object with a `query` string.")
    query, variables = data.get("query"), data.get("variables")
    operation_name, extensions = data.get("operationName"), data.get("extensions")
    if variables is not None and not isinstance(variables, dict):
        raise bad_request("`variables` must be an object (or null).")
    if operation_name is not None and not isinstance(operation_name, str):
        raise bad_request("`operationName` must be a string (or null).")
    if extensions is not None and not isinstance(extensions, dict):
        raise bad_request("`extensions` must be an object (or null).")
    document_id = _document_id(data.get("documentId"), (extensions or {}).get("persistedQuery"))
    if not isinstance(query, str) and not (query is None and document_id is not None):
        raise bad_request("`query` must be a string holding the GraphQL document (or send `documentId`).")
    return GraphQLRequest(query, variables, operation_name or None, extensions, document_id)


def _document_id(document_id: object, persisted_query: object) -> str | None:
    """A trusted document's id: GraphQL over HTTP's `documentId`, or Apollo's persisted query extension."""
    if document_id is not None:
        if not isinstance(document_id, str):
            raise bad_request("`documentId` must be a string, e.g. `sha256:<hex digest>`.")
        return document_id
    if persisted_query is None:
        return None
    if not isinstance(persisted_query, dict) or not isinstance(persisted_query.get("sha256Hash"), str):
        raise bad_request("`extensions.persistedQuery` must be an object with a `sha256Hash` string.")
    if persisted_query.get("version", 1) != 1:
        raise bad_request("Only version 1 of `extensions.persistedQuery` is supported.")
    digest: str = persisted_query["sha256Hash"]
    return digest


def request_from_body(body: bytes) -> GraphQLRequest:
    if not body.strip():
        raise bad_request("The request body is empty: send a JSON object with a `query` string.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request body is not valid UTF-8.") from None
    return request_from(parse_json(text, "request body"))


def request_from_query_string(parameters: Mapping[str, str]) -> GraphQLRequest:
    """GET: the parameters of the URL's query, `variables` and `extensions` as JSON strings."""
    data: dict[str, object] = {
        "query": parameters.get("query"),
        "operationName": parameters.get("operationName"),
        "documentId": parameters.get("documentId"),
    }
    for name in ("variables", "extensions"):
        if parameters.get(name):
            data[name] = parse_json(parameters[name], f"`{name}` parameter")
    return request_from(data)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (nothing more is read)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


# PostgreSQL's text cannot hold U+0000 (the write fails), and no field here has a use for it. In the document it
# can only be an escape, `\u0000` or `\u{0}`; in `variables`, JSON writes it `\u0000` (C speed, even for 1,000
# usage events; a literal backslash-u0000 text matches too, harmlessly).
_NUL_ESCAPE = re.compile(r"\\u(?:0000|\{0+\})")


def holds_nul(request: GraphQLRequest) -> bool:
    """Whether a string of the request, in the document or its variables, holds U+0000."""
    if request.query is not None and _NUL_ESCAPE.search(request.query):
        return True
    return request.variables is not None and b"\\u0000" in _encoded(request.variables)


def nul_refused() -> ExecutionResult:
    return _request_error(
        "A string in the request holds the character U+0000 (NUL), which no field accepts.", "BAD_USER_INPUT"
    )


# ----------------------------------------------------------------------------------------------- answers


_LONG_QUOTE = re.compile(r'"[^"]{81,}"|\'[^\']{81,}\'')
_MESSAGE_LIMIT = 1_000


def clipped(message: str) -> str:
    """A message with every long quoted value cut to 40 characters, and the whole at most 1,000 characters:
    messages quote the request's input, which may be megabytes."""
    message = _LONG_QUOTE.sub(lambda quoted: f"{quoted[0][:41]}…{quoted[0][0]}", message)
    return message if len(message) <= _MESSAGE_LIMIT else f"{message[:_MESSAGE_LIMIT]}…"


def formatted_error(error: GraphQLError) -> dict[str, Any]:
    """An error as a response carries it, over HTTP and over the WebSocket: clipped, masked if it is a crash,
    with the request's id (also in the X-Request-Id header and on its log lines) for support to find it."""
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError | DomainError):
        # Raised outside any resolver (Strawberry turns it into an error without the ErrorPolicy's masking).
        logger.error("unexpected error before execution", exc_info=original)
        error = GraphQLError("Unexpected error.", extensions={"code": "INTERNAL_SERVER_ERROR"})
    formatted = dict(error.formatted)
    formatted["message"] = clipped(error.message)
    extensions = with_request_id(error.extensions or {})
    if extensions:
        formatted["extensions"] = extensions
    return formatted


# Request errors that are not the client's: the status tells a proxy or a retry policy so.
_STATUS_BY_CODE = {"INTERNAL_SERVER_ERROR": 500, "SERVICE_UNAVAILABLE": 503, "REQUEST_TIMEOUT": 504}


def executed(result: ExecutionResult) -> bool:
    """Whether execution started: then the response has `data` (null when a non-null root field failed, with a
    field error, which always has a path). Request errors (nothing executed) have no path."""
    return result.data is not None or any(error.path is not None for error in result.errors or ())


def graphql_response(result: ExecutionResult, media_type: MediaType) -> Response:
    errors = result.errors or []
    body: dict[str, Any] = {}
    if errors:
        body["errors"] = [formatted_error(error) for error in errors]
    status = 200
    if executed(result):
        body["data"] = result.data
    elif media_type is MediaType.GRAPHQL_RESPONSE:
        codes = (error["extensions"].get("code") for error in body["errors"] if error.get("extensions"))
        status = max((_STATUS_BY_CODE.get(code, 400) for code in codes), default=400)
    if result.extensions:
        body["extensions"] = result.extensions
    return _json_response(body, status, media_type)


def _json_response(
    body: Mapping[str, Any], status: int, media_type: MediaType, headers: Mapping[str, str] | None = None
) -> Response:
    return _body_response(_encoded(body), status, media_type, headers)


def _encoded(value: object) -> bytes:
    # Compact UTF-8, as json.dumps(ensure_ascii=False, separators=(",", ":")) writes it, several times faster.
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # orjson writes integers of at most 64 bits; a refused cost estimate (`actual`) from a huge `first` is larger.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _body_response(
    body: bytes, status: int, media_type: MediaType, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        body,
        status,
        headers={
            # The answer depends on Accept: caches must not hand one client's media type to another.
            "Vary": "Accept",
            # It is the key's own data (a balance, cards): no browser or proxy keeps it, even for a GET.
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
        media_type=f"{media_type}; charset=utf-8",
    )


def _cache_variables(variables: Mapping[str, Any] | None) -> bytes | None:
    """The variables as part of a response cache key, or None when orjson cannot write them (an integer beyond
    64 bits, which GraphQL's Int refuses anyway): that request is answered uncached."""
    try:
        return orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None


def _request_error(message: str, code: str) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(message, extensions={"code": code})])


# -------------------------------------------------------------------------------------------------- view


class GraphQLView:
    """Serves a Strawberry schema over HTTP; a subclass gives each request its context and finishes it.

    With `trusted` documents, a request may name a registered document by id (server_trusted_documents); with a
    `cache`, the answers of registered queries are kept under a key the subclass completes (`cache_scope`: who
    asks and the data version of what it may see), and a repeated request is answered from it.
    """

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        max_body_bytes: int,
        timeout_seconds: float,
        trusted: TrustedDocuments | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self.schema = schema
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds
        self.trusted = trusted or TrustedDocuments({})
        self.cache = cache

    async def get_context(self, request: Request, *, registered_query: bool) -> object:
        """The operation's context; `registered_query` when the operation is known (a registered document's)
        to be a query, which never waits on the network."""
        raise NotImplementedError

    async def process_result(self, request: Request, result: ExecutionResult) -> ExecutionResult:
        return result

    async def release(self, context: object) -> None:
        """Let go of what the operation's context holds; runs however the request ends."""

    def requires_trusted(self, request: Request) -> bool:
        """Whether this caller may run registered documents only (TRUSTED_DOCUMENTS_ONLY)."""
        return False

    async def cache_scope(self, request: Request) -> Hashable | None:
        """The caller and the data version of everything it may see, or None to leave the answer uncached."""
        return None

    def refusal(self, request: Request) -> Response | None:
        """What to answer before any work, even before the key is checked: 406, 415, or 413 by Content-Length."""
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            return not_acceptable().response(MediaType.JSON)
        if request.method == "POST":
            if not is_json_utf8(request.headers.get("content-type")):
                return unsupported_media_type().response(media_type)
            length = declared_length(request)
            if length is not None and length > self.max_body_bytes:
                return too_large(self.max_body_bytes, length).response(media_type)
        return None

    def trusted_document(
        self, request: Request, graphql_request: GraphQLRequest
    ) -> TrustedDocument | ExecutionResult | None:
        """The registered document the request names (by id or by its text), None for an unregistered text
        this caller may send, or the request error to answer."""
        if graphql_request.document_id is not None:
            digest = document_id(graphql_request.document_id)
            document = self.trusted.by_id(digest) if digest is not None else None
            if document is None:
                # Apollo's wording and code: its clients then send the text (which may be refused below).
                return _request_error("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
            if (
                graphql_request.query is not None
                and self.trusted.by_text(graphql_request.query) is not document
            ):
                raise bad_request("The `query` sent is not the document its id names.")
            return document
        assert graphql_request.query is not None  # request_from requires one of the two
        document = self.trusted.by_text(graphql_request.query)
        if document is None and self.requires_trusted(request):
            message = (
                "This key may run registered (trusted) documents only: send `documentId` (or the registered"
                " document's text) instead of an unregistered query."
            )
            return _request_error(message, "PERSISTED_QUERY_NOT_IN_LIST")
        return document

    async def receive(self, request: Request) -> GraphQLRequest | Response:
        """The parameters of a request that passed `refusal` (its body read), or the answer refusing them. It
        needs no caller, so the body can be read before the key is checked: no connection waits on a client
        still sending."""
        media_type = negotiate(request.headers.get("accept")) or MediaType.JSON
        try:
            if request.method != "POST":  # GET (or HEAD)
                graphql_request = request_from_query_string(request.query_params)
            else:
                graphql_request = request_from_body(await read_body(request, self.max_body_bytes))
        except Refused as refused:
            return refused.response(media_type)
        if holds_nul(graphql_request):
            return graphql_response(nul_refused(), media_type)
        return graphql_request

    async def handle(self, request: Request, graphql_request: GraphQLRequest) -> Response:
        """Answers the parameters `receive` gave (the caller authenticated)."""
        media_type = negotiate(request.headers.get("accept")) or MediaType.JSON
        try:
            document = self.trusted_document(request, graphql_request)
        except Refused as refused:
            return refused.response(media_type)
        if isinstance(document, ExecutionResult):
            return graphql_response(document, media_type)
        if document is not None:
            graphql_request = dataclasses.replace(graphql_request, query=document.text)
        cache_key = None
        registered_query = document is not None and document.is_query(graphql_request.operation_name)
        if (
            self.cache is not None
            and document is not None
            and registered_query
            and (variables := _cache_variables(graphql_request.variables)) is not None
        ):
            scope = await self.cache_scope(request)
            if scope is not None:
                cache_key = (document.sha256, graphql_request.operation_name, variables, scope)
                body = self.cache.get(cache_key)
                if body is not None:
                    return _body_response(body, 200, media_type)
        context = await self.get_context(request, registered_query=registered_query)
        try:
            try:
                result = await self.execute(graphql_request, context, only_queries=request.method != "POST")
            except InvalidOperationTypeError as error:
                if error.operation_type is OperationType.SUBSCRIPTION:
                    result = _request_error(
                        "Subscriptions are served over WebSocket (graphql-transport-ws) on this path.",
                        "GRAPHQL_VALIDATION_FAILED",
                    )
                    return graphql_response(result, media_type)
                return method_not_allowed().response(media_type)
            result = await self.process_result(request, result)
        finally:
            # Also when the request is cancelled (the client hung up) or fails: what the operation holds
            # (its read session) goes back to the pool now, not when the garbage collector finds it.
            await self.release(context)
        response = graphql_response(result, media_type)
        if cache_key is not None and self.cache is not None and not result.errors and result.data is not None:
            self.cache.put(cache_key, bytes(response.body))
        return response

    async def execute(
        self, request: GraphQLRequest, context: object, *, only_queries: bool
    ) -> ExecutionResult:
        # Subscriptions are served over WebSocket (server_graphql_ws), never here.
        allowed: Iterable[OperationType] = (
            {OperationType.QUERY} if only_queries else {OperationType.QUERY, OperationType.MUTATION}
        )
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self.schema.execute(
                    request.query,
                    variable_values=request.variables,
                    context_value=context,
                    operation_name=request.operation_name,
                    allowed_operation_types=allowed,
                    operation_extensions=request.extensions,
                )
        except TimeoutError:
            seconds = self.timeout_seconds
            message = f"The request took longer than {seconds:g} s and was cancelled."
            return ExecutionResult(data=None, errors=[limit_error("REQUEST_TIMEOUT", message, limit=seconds)])
        except MissingQueryError:
            return _request_error("The document is empty.", "GRAPHQL_PARSE_FAILED")
        except CannotGetOperationTypeError as error:
            if error.operation_name is not None:
                message = f'The document has no operation named "{error.operation_name}".'
            else:
                message = "The document must hold one operation, or name the one to run in `operationName`."
            return _request_error(message, "GRAPHQL_VALIDATION_FAILED")
