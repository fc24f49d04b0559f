"""GraphQL subscriptions over WebSocket: the `graphql-transport-ws` protocol (graphql-over-http
rfcs/GraphQLOverWebSocket.md, as the graphql-ws library speaks it), on the same path as GraphQL over HTTP.

The socket is accepted only with the `graphql-transport-ws` subprotocol (else closed with 4406, as graphql-ws
does). Then, as the protocol has it:

| what happened                                              | the server                                   |
|------------------------------------------------------------|----------------------------------------------|
| no `connection_init` within SUBSCRIPTION_INIT_TIMEOUT_SECONDS | closes 4408 Connection initialisation timeout |
| a second `connection_init`                                 | closes 4429 Too many initialisation requests |
| `subscribe` before the connection was acknowledged         | closes 4401 Unauthorized                     |
| `subscribe` with an id that is still running               | closes 4409 Subscriber for <id> already exists |
| a message that is not one the protocol defines, or malformed | closes 4400 with what is wrong              |
| `ping`                                                     | answers `pong`                               |
| no `pong` within SUBSCRIPTION_PONG_TIMEOUT_SECONDS of the server's `ping` | closes 4504 Pong timeout      |

Authentication is the `connection_init` payload `{"Authorization": "Bearer <key>"}` (the header's name and
form): no key, a wrong or revoked one closes 4403 Forbidden, failures count toward the same limit as over
HTTP (billing/keys/throttle.py). A key that could not be checked because the database is busy closes 1013 Try
Again Later, as does a key over SUBSCRIPTION_CONNECTIONS_PER_KEY open connections (across gateways with Redis,
billing/events/connections.py) or a count that cannot be reached. The key is checked again every
SUBSCRIPTION_KEY_CHECK_SECONDS and before every event sent: once it is revoked the connection closes 4403.

The server pings every SUBSCRIPTION_PING_SECONDS (so proxies keep idle sockets open) and closes a socket whose
client has not answered `pong` within SUBSCRIPTION_PONG_TIMEOUT_SECONDS: its subscriptions would otherwise hold
their place, and their key's, for a client that is gone. The protocol defines no code for this: 4504 (a
timeout, as 4408 is; in the 4xxx range that graphql-ws clients reconnect after, unlike 1011, which they treat
as fatal), reason "Pong timeout".

Only subscriptions are served here (queries and mutations go over HTTP POST): any other operation is answered
with an `error` message, as are request errors (parse, validation, limits). A connection runs at most
SUBSCRIPTION_MAX_PER_CONNECTION subscriptions; one more is answered with an `error` message. Errors are shaped
as over HTTP (schema/errors.py: codes, `argument`, masking, SERVICE_UNAVAILABLE), and each subscription is a
request of its own: a new id, its errors' `extensions.requestId` and its log lines' `request_id`.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from billing.events.connections import CountUnavailable, SubscriptionConnections
from billing.keys.service import Principal
from billing.observability.request import observed_request
from resolvers.events import SubscriptionContext
from server_graphql import GraphQLRequest, formatted_error

logger = logging.getLogger("billing.graphql_ws")

PROTOCOL = "graphql-transport-ws"


class CloseCode(IntEnum):
    INTERNAL_ERROR = 1011  # RFC 6455: the server met a condition it did not expect
    TRY_AGAIN_LATER = 1013  # IANA registry: the server is overloaded or over a limit
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    SUBPROTOCOL_NOT_ACCEPTABLE = 4406
    CONNECTION_INIT_TIMEOUT = 4408
    SUBSCRIBER_ALREADY_EXISTS = 4409
    TOO_MANY_INITIALISATION_REQUESTS = 4429
    PONG_TIMEOUT = 4504  # ours: the protocol defines none (see the module's docstring)


class Close(Exception):
    """End the connection with this close code and reason."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        # A close frame's reason is at most 123 bytes of UTF-8 (it may quote a client's operation id).
        self.reason = reason.encode()[:123].decode(errors="ignore")


def bad_message(reason: str) -> Close:
    return Close(CloseCode.BAD_REQUEST, reason)


# What authenticating a `connection_init` gives: the principal, or the close to answer with.
Authenticate = Callable[[WebSocket, str | None], Awaitable[Principal | Close]]
MakeContext = Callable[[WebSocket, Principal], SubscriptionContext]


@dataclass(frozen=True)
class Limits:
    connections_per_key: int
    subscriptions_per_connection: int
    init_timeout_seconds: float
    ping_seconds: float
    pong_timeout_seconds: float
    key_check_seconds: float


class SubscriptionServer:
    """Serves the schema's subscriptions on every WebSocket handed to `serve`."""

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        authenticate: Authenticate,
        make_context: MakeContext,
        limits: Limits,
        connections: SubscriptionConnections,
    ) -> None:
        self.schema = schema
        self.authenticate = authenticate
        self.make_context = make_context
        self.limits = limits
        self.connections = connections

    async def serve(self, websocket: WebSocket) -> None:
        if PROTOCOL not in websocket.scope.get("subprotocols", []):
            await websocket.accept()
            await websocket.close(CloseCode.SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
            return
        await websocket.accept(subprotocol=PROTOCOL)
        connection = _Connection(self, websocket)
        try:
            await connection.run()
        finally:
            if connection.principal is not None:
                await self.connections.release(connection.principal.api_key_id, connection.id)


def _bearer(payload: Mapping[str, Any]) -> str | None:
    """The key of an `Authorization: Bearer <key>` entry (the name in any case), else None."""
    for name, value in payload.items():
        if name.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _optional_object(message: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = message.get(key)
    if value is not None and not isinstance(value, dict):
        raise bad_message(f"'{key}' must be an object")
    return value


def _subscribe_request(message: Mapping[str, Any]) -> GraphQLRequest:
    payload = message.get("payload")
    if not isinstance(payload, dict):
        raise bad_message("'subscribe' needs a payload object")
    query, operation_name = payload.get("query"), payload.get("operationName")
    if not isinstance(query, str):
        raise bad_message("the subscribe payload's 'query' must be a string")
    if operation_name is not None and not isinstance(operation_name, str):
        raise bad_message("the subscribe payload's 'operationName' must be a string or null")
    return GraphQLRequest(
        query,
        _optional_object(payload, "variables"),
        operation_name or None,
        _optional_object(payload, "extensions"),
    )


def _socket_error(error: GraphQLError) -> GraphQLError:
    """A query or mutation sent here, or an operation name the document does not have, is the client's mistake,
    a request error, not an unexpected one (Strawberry reports it as an exception)."""
    if isinstance(error.original_error, InvalidOperationTypeError):
        message = (
            "Only subscriptions are served over this WebSocket: send queries and mutations with HTTP POST."
        )
    elif isinstance(error.original_error, CannotGetOperationTypeError):
        message = error.message
    else:
        return error
    return GraphQLError(message, extensions={"code": "GRAPHQL_VALIDATION_FAILED"})


def _operation_id(message: Mapping[str, Any]) -> str:
    operation_id = message.get("id")
    if not isinstance(operation_id, str) or not operation_id:
        raise bad_message(f"'{message['type']}' needs a non-empty string 'id'")
    return operation_id


class _Connection:
    """One socket: its state, the messages it receives, and the tasks it runs (one per subscription, plus the
    init deadline, the pings and the key check). Whatever ends it (a Close from any task, the client leaving)
    resolves `_ended`; `run` then stops every task and closes the socket."""

    def __init__(self, server: SubscriptionServer, websocket: WebSocket) -> None:
        self.server = server
        self.websocket = websocket
        self.id = uuid.uuid4().hex
        self.principal: Principal | None = None
        self._token: str | None = None
        self._ponged = asyncio.Event()
        self._init_received = False
        self._operations: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended: asyncio.Future[Close | None] = asyncio.get_running_loop().create_future()
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        self._start(self._read)
        self._start(self._init_deadline)
        try:
            close = await self._ended
        finally:
            running = list(self._tasks)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        if close is not None:
            with suppress(RuntimeError, OSError):  # the client may be gone already
                await self.websocket.close(close.code, close.reason)

    def _start(self, work: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Callable[[], Awaitable[None]]) -> None:
        """Runs one of the connection's tasks: a Close (or the client leaving) ends the connection. The
        coroutine is made here, so a task cancelled before it starts leaves none behind un-awaited."""
        try:
            await work()
        except Close as close:
            self._end(close)
        except WebSocketDisconnect:
            self._end(None)
        except Exception:
            logger.exception("subscription connection failed")
            self._end(Close(CloseCode.INTERNAL_ERROR, "Internal error"))

    def _end(self, close: Close | None) -> None:
        if not self._ended.done():
            self._ended.set_result(close)

    async def _send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        async with self._send_lock:
            await self.websocket.send_text(text)

    # ------------------------------------------------------------------------------------------ messages

    async def _read(self) -> None:
        while True:
            received = await self.websocket.receive()
            if received["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(received.get("code", 1000))
            text = received.get("text")
            if text is None:
                raise bad_message("messages are JSON text, not binary")
            try:
                message = json.loads(text)
            except ValueError:
                raise bad_message("not valid JSON") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise bad_message("a message is a JSON object with a string 'type'")
            await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            await self._connection_init(_optional_object(message, "payload") or {})
        elif kind == "ping":
            _optional_object(message, "payload")
            await self._send({"type": "pong"})
        elif kind == "pong":
            _optional_object(message, "payload")
            self._ponged.set()
        elif kind == "subscribe":
            operation_id = _operation_id(message)
            request = _subscribe_request(message)
            await self._subscribe(operation_id, request)
        elif kind == "complete":
            task = self._operations.pop(_operation_id(message), None)
            if task is not None:  # the client stops it: nothing more is sent for it, not even `complete`
                task.cancel()
        else:
            raise bad_message(f"unexpected message type '{kind}'")

    async def _connection_init(self, payload: dict[str, Any]) -> None:
        if self._init_received:
            raise Close(CloseCode.TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests")
        self._init_received = True
        token = _bearer(payload)
        outcome = await self.server.authenticate(self.websocket, token)
        if isinstance(outcome, Close):
            raise outcome
        try:
            admitted = await self.server.connections.take(outcome.api_key_id, self.id)
        except CountUnavailable:
            raise Close(CloseCode.TRY_AGAIN_LATER, "Connection counts unavailable; try again later") from None
        if not admitted:
            raise Close(CloseCode.TRY_AGAIN_LATER, "Too many open connections for this API key")
        self.principal, self._token = outcome, token
        await self._send({"type": "connection_ack"})
        self._start(self._ping)
        self._start(self._check_key_periodically)
        if self.server.connections.renew_seconds is not None:
            self._start(partial(self._renew_place, outcome.api_key_id, self.server.connections.renew_seconds))

    async def _subscribe(self, operation_id: str, request: GraphQLRequest) -> None:
        if self.principal is None:
            raise Close(CloseCode.UNAUTHORIZED, "Unauthorized")
        if operation_id in self._operations:
            raise Close(CloseCode.SUBSCRIBER_ALREADY_EXISTS, f"Subscriber for {operation_id} already exists")
        limit = self.server.limits.subscriptions_per_connection
        if len(self._operations) >= limit:
            error = GraphQLError(
                f"A connection runs at most {limit} subscriptions; complete one first.",
                extensions={"code": "SUBSCRIPTION_LIMIT", "limit": limit},
            )
            await self._send({"id": operation_id, "type": "error", "payload": [error.formatted]})
            return
        context = self.server.make_context(self.websocket, self.principal)
        task = asyncio.ensure_future(self._guarded(partial(self._operate, operation_id, request, context)))
        self._operations[operation_id] = task
        # Also among the connection's tasks: one the client completed may still be finishing when it closes.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _operate(
        self, operation_id: str, request: GraphQLRequest, context: SubscriptionContext
    ) -> None:
        # Each subscription is a request of its own: its errors and log lines carry its id.
        with observed_request(uuid.uuid4().hex):
            await self._run_subscription(operation_id, request, context)

    async def _run_subscription(
        self, operation_id: str, request: GraphQLRequest, context: SubscriptionContext
    ) -> None:
        try:
            results: AsyncGenerator[ExecutionResult, None] = await self.server.schema.subscribe(
                request.query,
                variable_values=request.variables,
                context_value=context,
                operation_name=request.operation_name,
                operation_extensions=request.extensions,
            )
            async with aclosing(results):
                async for result in results:
                    errors = [formatted_error(_socket_error(error)) for error in result.errors or []]
                    if isinstance(result, PreExecutionError):  # nothing ran: no `complete` follows
                        await self._send({"id": operation_id, "type": "error", "payload": errors})
                        return
                    await self._check_key()
                    payload: dict[str, Any] = {"data": result.data}
                    if errors:
                        payload["errors"] = errors
                    if context.cursor is not None:
                        payload["extensions"] = {"cursor": context.cursor}
                    await self._send({"id": operation_id, "type": "next", "payload": payload})
            await self._send({"id": operation_id, "type": "complete"})
        finally:
            if self._operations.get(operation_id) is asyncio.current_task():
                del self._operations[operation_id]
            await context.finish()

    # --------------------------------------------------------------------------------------------- timers

    async def _init_deadline(self) -> None:
        await asyncio.sleep(self.server.limits.init_timeout_seconds)
        if not self._init_received:  # a key still being checked is not late
            raise Close(CloseCode.CONNECTION_INIT_TIMEOUT, "Connection initialisation timeout")

    async def _ping(self) -> None:
        limits = self.server.limits
        while True:
            await asyncio.sleep(limits.ping_seconds)
            self._ponged.clear()
            await self._send({"type": "ping"})
            try:
                await asyncio.wait_for(self._ponged.wait(), limits.pong_timeout_seconds)
            except TimeoutError:
                raise Close(CloseCode.PONG_TIMEOUT, "Pong timeout") from None

    async def _renew_place(self, api_key_id: int, every_seconds: float) -> None:
        while True:
            await asyncio.sleep(every_seconds)
            await self.server.connections.renew(api_key_id, self.id)

    async def _check_key_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.server.limits.key_check_seconds)
            await self._check_key()

    async def _check_key(self) -> None:
        """The connection's key is still good, or the connection closes 4403 (a busy database is not a
        revocation: the next check decides)."""
        outcome = await self.server.authenticate(self.websocket, self._token)
        if isinstance(outcome, Close) and outcome.code is CloseCode.FORBIDDEN:
            raise Close(CloseCode.FORBIDDEN, "Forbidden: the API key was revoked")
