"""A loopback HTTP server that speaks the OpenAI Chat Completions protocol, with fault injection.

Used by the test suite (as a context manager running in a background thread) and by benchmarks
(as a separate process: ``python tests/chat_server.py --port 0 --delay 0.2``). Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import IO, Any

FaultPlan = Callable[[str, int], str | None]
ReplyFn = Callable[[dict[str, Any]], str]

FAULTS = frozenset({"429", "500", "slow", "garbage", "empty", "nochoices", "401", "404"})
CLIENT_GONE = 499
GARBAGE_BODY = b'{"choices": [oops'
LISTEN_BACKLOG = 4096

_ERROR_FAULTS: dict[str, tuple[int, str, str, str | None]] = {
    "401": (401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    "404": (404, "The model does not exist.", "invalid_request_error", "model_not_found"),
    "429": (429, "Rate limit reached for requests. Try again later.", "requests", "rate_limit_exceeded"),
    "500": (500, "The server had an error while processing your request.", "server_error", None),
}

_PREAMBLES = ("", "", "", "Here are some requests:", "Sure!", "Sure! Here you go:", "Okay, here are a few:")
_MARKERS = ("{}. ", "{}) ", "- ", "* ")
_TEMPLATES = (
    "{verb} the {problem} in this {obj} of the {subject}",
    "can you {verb} the {problem} from my {subject} {obj}",
    "{verb} {problem} on the {obj} from the {subject}",
    "my {obj} of the {subject} has {problem} that I want to {verb}",
    "please {verb} the {problem} in the {subject} {obj}",
)
_VERBS = ("remove", "reduce", "fix", "clean up", "get rid of", "lessen", "take out", "correct")
_PROBLEMS = (
    "noise",
    "grain",
    "blur",
    "haze",
    "rain streaks",
    "darkness",
    "motion blur",
    "fog",
    "jpeg artifacts",
    "low light",
)
_OBJECTS = ("photo", "picture", "shot", "image", "pic", "snapshot")
_ENDINGS = ("", "", "", " please", ", please", " for me", " before I print it", " if you can", " thanks!")
_SUBJECTS = (
    "beach", "lake", "mountains", "city street", "old barn", "wedding", "birthday party", "harbor", "forest",
    "garden", "bridge", "cathedral", "market", "train station", "desert", "skyline", "farm", "lighthouse",
    "river", "waterfall", "snowy road", "park", "school trip", "concert", "family dinner", "dog", "cat",
    "horse", "sunset", "campfire", "castle", "village", "stadium", "canyon", "museum", "airport", "highway",
    "ferry", "carnival", "playground", "vineyard", "glacier", "pier", "rooftop", "subway", "meadow", "temple",
    "office party", "graduation", "old house",
)  # fmt: skip


def fingerprint(body: dict[str, Any]) -> str:
    """The sha256 hex of the canonical JSON of a request body; fault plans and attempt counts key on it."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_reply(body: dict[str, Any]) -> str:
    """A short, messy, small-model-style list of photo-restoration requests, deterministic in the body."""
    rng = random.Random(fingerprint(body))
    marker = rng.choice(_MARKERS)
    lines = [rng.choice(_PREAMBLES)]
    for number in range(1, rng.randint(1, 4) + 1):
        words = {"verb": _VERBS, "problem": _PROBLEMS, "obj": _OBJECTS, "subject": _SUBJECTS}
        text = rng.choice(_TEMPLATES).format(**{key: rng.choice(bank) for key, bank in words.items()})
        text = text + rng.choice(_ENDINGS)
        if rng.random() < 0.7:
            text = text[0].upper() + text[1:]
        lines.append(marker.format(number) + text)
    return "\n".join(line for line in lines if line)


def fail_first(*names: str) -> FaultPlan:
    """A plan where attempt k of every request gets fault names[k-1] while k <= len(names), then succeeds."""
    _check_fault_names(names)

    def plan(fingerprint: str, attempt: int) -> str | None:
        return names[attempt - 1] if attempt <= len(names) else None

    return plan


def fail_always(name: str) -> FaultPlan:
    """A plan where every attempt of every request gets the fault `name`."""
    _check_fault_names([name])
    return lambda fingerprint, attempt: name


def fail_some(fraction: float, names: Sequence[str], seed: int = 0) -> FaultPlan:
    """A plan where a deterministic pseudo-random `fraction` of fingerprints fails its first attempt."""
    _check_fault_names(names)

    def plan(fingerprint: str, attempt: int) -> str | None:
        digest = hashlib.sha256(f"{fingerprint}:{seed}".encode()).digest()
        if attempt != 1 or int.from_bytes(digest[:8], "big") / 2**64 >= fraction:
            return None
        return names[digest[8] % len(names)]

    return plan


def _check_fault_names(names: Sequence[str]) -> None:
    """Reject unknown or missing fault names early, in the caller's thread, rather than inside the server."""
    unknown = [name for name in names if name not in FAULTS]
    if not names or unknown:
        raise ValueError(f"fault names must be a non-empty subset of {sorted(FAULTS)}, got {list(names)}")


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass
class Response:
    """One HTTP response plus the facts about it that go into the server's log."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    attempt: int | None = None
    fault: str | None = None
    model: str | None = None
    valid: bool = False


class BadRequest(Exception):
    """The bytes on the connection are not an HTTP request this server understands; it answers and closes."""


def error_response(status: int, message: str, kind: str, code: str | None) -> Response:
    """A JSON error in the shape the OpenAI API uses: {"error": {"message", "type", "code"}}."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(status, json.dumps(body).encode())


def encode_response(response: Response, keep_alive: bool) -> bytes:
    """Serialise a response as HTTP/1.1 bytes with a Content-Length body."""
    reason = HTTPStatus(response.status).phrase
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(response.body)),
        "Connection": "keep-alive" if keep_alive else "close",
        **response.headers,
    }
    head = f"HTTP/1.1 {response.status} {reason}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1") + b"\r\n" + response.body


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request from a keep-alive connection; None when the peer closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("connection closed in the middle of the request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"malformed request line {request_line!r}")
    method, target, version = parts
    headers = _parse_headers(header_lines)
    if "transfer-encoding" in headers:
        raise BadRequest("chunked request bodies are not supported; send Content-Length")
    body = await reader.readexactly(_content_length(headers))
    connection = headers.get("connection", "").lower()
    keep_alive = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"
    return Request(method, target.split("?", 1)[0], headers, body, keep_alive)


def _parse_headers(lines: list[str]) -> dict[str, str]:
    """Header lines to a dict with lower-cased names."""
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequest(f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _content_length(headers: dict[str, str]) -> int:
    """The body length the request declares (0 when it declares none)."""
    value = headers.get("content-length", "0")
    if not value.isdigit():
        raise BadRequest(f"bad Content-Length {value!r}")
    return int(value)


def _client_gone(reader: asyncio.StreamReader) -> bool:
    """Whether the client closed or reset the connection while its request was being handled."""
    return reader.at_eof() or reader.exception() is not None


def _text_of(content: object) -> str:
    """The plain text of a message content, which is a string, None, or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _body_problem(body: object) -> str | None:
    """Why a parsed completion request body is unacceptable, or None when it is fine."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str):
        return "You must provide a model parameter."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return "'messages' must be a non-empty array of message objects."
    if body.get("stream"):
        return "This test server does not support stream=true."
    n = body.get("n", 1)
    if n is not None and (not isinstance(n, int) or n < 1):
        return "'n' must be a positive integer."
    return None


def completion_object(body: dict[str, Any], contents: list[str], completion_id: str) -> dict[str, Any]:
    """A Chat Completions response object with one choice per content and word-count usage."""
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
        for index, content in enumerate(contents)
    ]
    prompt_tokens = sum(len(_text_of(message.get("content")).split()) for message in body["messages"])
    completion_tokens = sum(len(content.split()) for content in contents)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ChatServer:
    """An OpenAI-compatible chat server on loopback, for tests (as a context manager) and benchmarks."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.0,
        api_key: str | None = None,
        models: set[str] | None = None,
        reply: ReplyFn | None = None,
        faults: FaultPlan | None = None,
        log_path: str | Path | None = None,
        retry_after: float = 0.2,
        slow_seconds: float = 30.0,
    ) -> None:
        """Configure the server; nothing listens until start() or serve().

        delay: seconds every completion waits before its answer (faults included), via asyncio.sleep.
        api_key: when set, requests without `Authorization: Bearer <api_key>` get 401.
        models: when set, completions for other models get 404 and GET /v1/models lists these.
        reply: maps the parsed request body to the assistant content (default: default_reply).
        faults: maps (fingerprint, 1-based attempt for that fingerprint) to a fault name in FAULTS or None.
        log_path: also append each request record to this file as one flushed JSON line.
        retry_after: the Retry-After header (seconds) sent with 429 faults.
        slow_seconds: how long the "slow" fault sleeps before answering normally.
        """
        self.host = host
        self.port = port
        self.delay = delay
        self.api_key = api_key
        self.models = models
        self.reply = reply or default_reply
        self.faults = faults
        self.log_path = Path(log_path) if log_path is not None else None
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._completed: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0
        self._connections: set[asyncio.Task[Any]] = set()
        self._log_file: IO[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL to hand to an OpenAI client, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def log(self) -> list[dict[str, Any]]:
        """A snapshot of the request records: t, path, fingerprint, attempt, status, fault, model."""
        with self._lock:
            return list(self._log)

    @property
    def completed_fingerprints(self) -> frozenset[str]:
        """Fingerprints that got a 200 with at least one non-empty choice, at least once."""
        with self._lock:
            return frozenset(self._completed)

    @property
    def max_in_flight(self) -> int:
        """The largest number of completion requests that were being handled at the same time."""
        return self._max_in_flight

    def count(self, **fields: object) -> int:
        """How many log records match all the given fields, e.g. count(status=429) or count(fault=None)."""
        return sum(all(record.get(key) == value for key, value in fields.items()) for record in self.log)

    def attempts(self, body: dict[str, Any]) -> int:
        """How many times a request with this body has reached the completion handler."""
        return self._attempts.get(fingerprint(body), 0)

    def start(self) -> ChatServer:
        """Start serving in a background thread with its own event loop; returns once it is listening."""
        self._thread = threading.Thread(target=self._thread_main, name="ChatServer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop listening, drop open connections (cancelling requests still sleeping), and join the thread."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _thread_main(self) -> None:
        """Body of the background thread: run the server until stop(), reporting startup failures."""
        try:
            asyncio.run(self.serve(self._ready.set))
        except BaseException as exc:
            self._startup_error = exc
        finally:
            self._ready.set()

    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in the running event loop until stop() is called; on_ready runs once the port is bound."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, self.host, self.port, backlog=LISTEN_BACKLOG)
        self.port = server.sockets[0].getsockname()[1]
        self._log_file = self.log_path.open("a", encoding="utf-8") if self.log_path else None
        try:
            if on_ready is not None:
                on_ready()
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()
            if self._log_file is not None:
                self._log_file.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve the requests of one keep-alive connection, one after another."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve_requests(reader, writer)
        except BadRequest as exc:
            response = error_response(400, str(exc), "invalid_request_error", None)
            writer.write(encode_response(response, keep_alive=False))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # serve() cancels at shutdown; Python 3.11 logs an error for handlers that end cancelled.
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read, answer and record requests until the client closes or asks to close."""
        while (request := await read_request(reader)) is not None:
            response = await self._respond_safely(request)
            gone = _client_gone(reader)
            self._record(request.path, response, CLIENT_GONE if gone else response.status)
            if gone:
                return
            writer.write(encode_response(response, request.keep_alive))
            await writer.drain()
            if not request.keep_alive:
                return

    async def _respond_safely(self, request: Request) -> Response:
        """Route a request; a crash in a user-supplied reply or fault plan becomes a 500 and a traceback."""
        try:
            return await self._respond(request)
        except Exception as exc:
            traceback.print_exc()
            return error_response(500, f"chat server crashed: {exc!r}", "server_error", "test_server_crash")

    async def _respond(self, request: Request) -> Response:
        """Route a request to the completion handler, the model list, or a 404."""
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return await self._completion(request)
        if request.method == "GET" and request.path == "/v1/models":
            return self._denied(request) or self._model_list()
        message = f"Unknown request URL: {request.method} {request.path}."
        return error_response(404, message, "invalid_request_error", "unknown_url")

    def _denied(self, request: Request) -> Response | None:
        """A 401 when an API key is configured and the request's bearer token differs, else None."""
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return self._fault_error("401")

    def _model_list(self) -> Response:
        """The configured model names as an OpenAI model list (empty when no models were configured)."""
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "chat-server"} for name in self.models or ()]
        return Response(200, json.dumps({"object": "list", "data": data}).encode())

    async def _completion(self, request: Request) -> Response:
        """Handle one chat completion while keeping the in-flight counters current."""
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return await self._completion_checked(request)
        finally:
            self._in_flight -= 1

    async def _completion_checked(self, request: Request) -> Response:
        """Check auth and the body, count the attempt, consult the fault plan, wait `delay`, then answer."""
        denied = self._denied(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(request.body)
        except ValueError:
            return error_response(400, "The request body is not valid JSON.", "invalid_request_error", None)
        problem = _body_problem(body)
        if problem is not None:
            return error_response(400, problem, "invalid_request_error", None)
        key = fingerprint(body)
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        fault = self.faults(key, attempt) if self.faults is not None else None
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        response = await self._completion_answer(body, fault, f"chatcmpl-{key[:24]}-{attempt}")
        return replace(response, fingerprint=key, attempt=attempt, fault=fault, model=body["model"])

    async def _completion_answer(self, body: dict[str, Any], fault: str | None, completion_id: str) -> Response:
        """The answer to a well-formed completion request, shaped by the fault (None for a normal one)."""
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.models is not None and body["model"] not in self.models:
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            return error_response(404, message, "invalid_request_error", "model_not_found")
        if fault is not None and fault in _ERROR_FAULTS:
            return self._fault_error(fault)
        if fault == "garbage":
            return Response(200, GARBAGE_BODY)
        if fault not in (None, "slow", "empty", "nochoices"):
            return error_response(500, f"Unknown fault {fault!r}.", "server_error", "unknown_fault")
        contents = [] if fault == "nochoices" else self._contents(body, empty=fault == "empty")
        completion = completion_object(body, contents, completion_id)
        return Response(200, json.dumps(completion).encode(), valid=any(contents))

    def _contents(self, body: dict[str, Any], empty: bool) -> list[str]:
        """The n assistant contents; choice i > 0 is the reply to the body plus {"choice_index": i}."""
        n = body.get("n") or 1
        if empty:
            return [""] * n
        return [self.reply(body if index == 0 else {**body, "choice_index": index}) for index in range(n)]

    def _fault_error(self, fault: str) -> Response:
        """The error response for one of the HTTP-error faults (401, 404, 429, 500)."""
        status, message, kind, code = _ERROR_FAULTS[fault]
        response = error_response(status, message, kind, code)
        if status == 429:
            response.headers["Retry-After"] = f"{self.retry_after:g}"
        return response

    def _record(self, path: str, response: Response, status: int) -> None:
        """Append one request record to the in-memory log and, when configured, to the JSON-lines file."""
        record = {
            "t": time.time(),
            "path": path,
            "fingerprint": response.fingerprint,
            "attempt": response.attempt,
            "status": status,
            "fault": response.fault,
            "model": response.model,
        }
        with self._lock:
            self._log.append(record)
            if status == 200 and response.valid and response.fingerprint is not None:
                self._completed.add(response.fingerprint)
            if self._log_file is not None:
                self._log_file.write(json.dumps(record) + "\n")
                self._log_file.flush()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options for running the server as a benchmark process."""
    parser = argparse.ArgumentParser(description="OpenAI-compatible chat completions test server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering each completion")
    parser.add_argument("--log", default=None, help="append one JSON line per request to this file")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--models", default=None, help="comma-separated model names to accept")
    parser.add_argument("--retry-after", type=float, default=0.2)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    parser.add_argument("--fail-some", type=float, default=0.0, help="fraction of requests failing first try")
    parser.add_argument("--fail-names", default="429,500", help="comma-separated faults used by --fail-some")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def server_from_args(args: argparse.Namespace) -> ChatServer:
    """A ChatServer configured from parsed command-line options."""
    faults = fail_some(args.fail_some, args.fail_names.split(","), args.seed) if args.fail_some > 0 else None
    return ChatServer(
        host=args.host,
        port=args.port,
        delay=args.delay,
        api_key=args.api_key,
        models=set(args.models.split(",")) if args.models else None,
        faults=faults,
        log_path=args.log,
        retry_after=args.retry_after,
        slow_seconds=args.slow_seconds,
    )


async def serve_until_signalled(server: ChatServer) -> None:
    """Serve until SIGTERM or SIGINT; print READY <url> once listening so a parent process can wait for it."""
    loop = asyncio.get_running_loop()

    def on_ready() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, server.stop)
        print(f"READY {server.url}", flush=True)

    await server.serve(on_ready)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `python tests/chat_server.py`."""
    asyncio.run(serve_until_signalled(server_from_args(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
