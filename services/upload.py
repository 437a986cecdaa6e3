"""The HTTP edge of every family: the audio file field, request limits and 4xx responses.

- `AudioUpload` is the type of a file field. BentoML treats any PurePath subclass as a multipart
  file; a plain `Path` loses the part's content type, which we need to refuse non-audio uploads
  while still taking `application/octet-stream` (what curl sends without `;type=`).
- `RequestGuard` is ASGI middleware in front of the family routes: it refuses oversize bodies
  before they are parsed (413), bodies that are not multipart (415) and forms BentoML would
  answer with a 500 (unknown or misused fields), rewrites BentoML's own validation 400s into our
  error format, and counts every 4xx of those routes in `hark_rejected_requests_total` by reason.
- `reject` builds the JSON error every family returns: {"error": message, "reason": code}.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic_core import core_schema

from core import config
from services import metrics

log = logging.getLogger("hark.upload")

REASON_HEADER = "x-hark-reject-reason"
# HTTP status per refusal reason; anything unlisted is a 400.
STATUS = {
    "too_large": 413,
    "content_type": 415,
    "not_multipart": 415,
    "empty": 422,
    "non_finite": 422,
    "channels": 422,
    "sample_rate": 422,
    "too_long": 422,
    "no_voice": 422,
    "too_short": 422,
}
# Not in the table: undecodable, truncated, missing_file, params, invalid_request,
# unknown_field and malformed_form are 400s.

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class AudioUpload(PurePosixPath):
    """An uploaded audio file: its name, declared content type and bytes (read once, here)."""

    content_type: str | None
    data: bytes | None

    @classmethod
    def _validate(cls, value: Any) -> AudioUpload:
        # On the server the value is a Starlette UploadFile; in-process callers pass paths or bytes.
        if hasattr(value, "file") and hasattr(value, "filename"):
            upload = cls(Path(value.filename or "upload").name or "upload")
            upload.content_type = value.content_type
            upload.data = value.file.read()
        elif isinstance(value, (bytes, bytearray)):
            upload = cls("upload")
            upload.content_type, upload.data = None, bytes(value)
        elif isinstance(value, PurePosixPath):
            # Path objects only come from in-process callers; a string (all that JSON can carry)
            # is never taken as a path, so no request can make the server read its own files.
            upload = cls(str(value))
            upload.content_type, upload.data = None, None
        else:
            raise ValueError("expected an uploaded audio file (a multipart file part)")
        return upload

    def read_bytes(self) -> bytes:
        return self.data if self.data is not None else Path(self).read_bytes()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        # BentoML clients read the validation schema ("file" = send as a multipart file);
        # Swagger reads the serialization one (a binary string = a file picker).
        if handler.mode == "validation":
            return {"type": "file", "format": "audio"}
        return {"type": "string", "format": "binary"}


def reject(reason: str, message: str, status: int | None = None):
    """The JSON 4xx every family returns; the reason header lets RequestGuard count it."""
    from starlette.responses import JSONResponse

    return JSONResponse(
        {"error": message, "reason": reason},
        status_code=status or STATUS.get(reason, 400),
        headers={REASON_HEADER: reason},
    )


@dataclass(frozen=True)
class RouteSpec:
    """What RequestGuard knows about one POST route."""

    family: str
    file_fields: frozenset[str]  # multipart file parts (the audio)
    value_fields: frozenset[str]  # plain form values (the parameters)


class _FormInspector:
    """Watches multipart part headers as the body streams past, without buffering it.

    BentoML answers some malformed forms with a 500 (a file part under a parameter's name is
    fed to json.loads as bytes; Starlette's own limits raise outside BentoML's 400 handling), so
    we refuse those forms before BentoML parses them.
    """

    MAX_PARTS = 64
    MAX_VALUE_BYTES = 64 * 1024

    def __init__(self, boundary: bytes, spec: RouteSpec):
        from python_multipart.multipart import MultipartParser

        self.spec = spec
        self.problem: tuple[str, str] | None = None
        self._header_name = self._header_value = self._disposition = b""
        self._parts = 0
        self._is_value = False
        self._value_bytes = 0
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._on_part_begin,
            "on_header_field": lambda d, a, b: self._add("_header_name", d[a:b]),
            "on_header_value": lambda d, a, b: self._add("_header_value", d[a:b]),
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
        })

    def feed(self, chunk: bytes) -> None:
        if self.problem is None and chunk:
            try:
                self._parser.write(chunk)
            except Exception as exc:  # python_multipart's parse errors
                self._fail("malformed_form", f"The multipart body is malformed ({exc}).")

    def _fail(self, reason: str, message: str) -> None:
        if self.problem is None:
            self.problem = (reason, message + " " + self.usage())

    def usage(self) -> str:
        values = ", ".join(sorted(self.spec.value_fields)) or "none"
        files = sorted(self.spec.file_fields)
        if not files:
            return f"Send multipart/form-data with these values: {values}."
        return (f"Send multipart/form-data with the audio file in '{files[0]}' "
                f"(curl -F {files[0]}=@song.wav) and optional values: {values}.")

    def _add(self, attr: str, data: bytes) -> None:
        value = getattr(self, attr) + data
        if len(value) > 4096:
            self._fail("malformed_form", "A multipart part header is too long.")
        setattr(self, attr, value[:4096])

    def _on_part_begin(self) -> None:
        self._parts += 1
        self._disposition = b""
        self._is_value = False
        self._value_bytes = 0
        if self._parts > self.MAX_PARTS:
            self._fail("malformed_form", f"The form has more than {self.MAX_PARTS} parts.")

    def _on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("latin-1")
        is_file = b"filename" in options
        if not name:
            self._fail("malformed_form", "A multipart part has no name.")
        elif name in self.spec.file_fields:
            if not is_file:
                self._fail("missing_file", f"The field '{name}' must be a file upload, not a text value.")
        elif name in self.spec.value_fields:
            if is_file:
                self._fail("invalid_request", f"The field '{name}' takes a value, not a file.")
            self._is_value = True
        else:
            files = sorted(self.spec.file_fields)
            hint = f" (did you mean '{files[0]}'?)" if is_file and files else ""
            self._fail("unknown_field", f"Unknown form field '{name}'{hint}.")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_value:
            self._value_bytes += end - start
            if self._value_bytes > self.MAX_VALUE_BYTES:
                self._fail("invalid_request", "A form value is longer than 64 KB.")


class RequestGuard:
    """ASGI middleware for the POST routes of the families (path -> RouteSpec)."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        routes: dict[str, RouteSpec],
        field_help: dict[str, str] | None = None,
        max_bytes: int | None = None,
    ):
        self.app = app
        self.routes = routes
        # field -> what it accepts, appended to BentoML's terse validation errors
        self.field_help = field_help or {}
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if spec is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        family = spec.family
        limit = self.max_bytes if self.max_bytes is not None else config.max_upload_bytes()
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        too_large = (
            f"The request body is over the {limit / 1e6:g} MB limit (HARK_MAX_UPLOAD_MB). "
            "Send a shorter or compressed (FLAC, OGG, MP3) file."
        )
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await drain(receive, 4 * limit)
            await self._send_reject(send, family, "too_large", too_large)
            return
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        boundary = _boundary(content_type)
        if boundary is None:
            await drain(receive, limit)
            await self._send_reject(
                send, family, "not_multipart",
                f"The request is {content_type or 'without a content type'}; send multipart/form-data "
                "with the audio file in the field 'audio' (curl -F audio=@song.wav) and the "
                "parameters as further form fields.",
            )
            return

        # Watch the body as the app reads it: past the size limit (a body without an honest
        # Content-Length) or at a form BentoML would choke on, the app is told the client left,
        # and whatever it answers is replaced by our 4xx.
        inspector = _FormInspector(boundary, spec)
        state: dict[str, Any] = {"received": 0, "abort": None, "answered": False}

        async def guarded_receive() -> Message:
            if state["abort"] is not None:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                state["received"] += len(chunk)
                if state["received"] > limit:
                    state["abort"] = ("too_large", too_large)
                else:
                    inspector.feed(chunk)
                    state["abort"] = inspector.problem
                if state["abort"] is not None:
                    if message.get("more_body", False):
                        await drain(receive, 4 * limit)
                    return {"type": "http.disconnect"}
            return message

        held: list[Message] = []  # a 4xx from BentoML's own validation, being rewritten

        async def guarded_send(message: Message) -> None:
            if state["abort"] is not None:
                await answer_abort()
                return
            if held:
                held.append(message)
                if not message.get("more_body", False):
                    await self._send_explained(send, family, held)
                return
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                reason = dict((k.lower(), v) for k, v in message.get("headers", [])).get(REASON_HEADER.encode())
                if reason is None:
                    held.append(message)  # not ours: explain it once the body is complete
                    return
                metrics.count_rejection(family, reason.decode())
            await send(message)

        async def answer_abort() -> None:
            if not state["answered"]:
                state["answered"] = True
                await self._send_reject(send, family, *state["abort"])

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if state["abort"] is None:
                raise
        if state["abort"] is not None:
            await answer_abort()

    async def _send_explained(self, send: Send, family: str, held: list[Message]) -> None:
        """Re-send a 4xx that BentoML produced (pydantic validation of the form fields) as our
        JSON error, with what each offending field accepts."""
        start, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, list) and payload and isinstance(payload[0], dict):
            payload = payload[0]  # BentoML wraps BentoMLException bodies in a list
        if not isinstance(payload, dict):
            metrics.count_rejection(family, "invalid_request")
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        problems = []
        for item in payload.get("detail") or []:
            field = ".".join(str(x) for x in item.get("loc", ())) or "request"
            text = f"{field}: {item.get('msg', 'invalid')}"
            if field in self.field_help:
                text += f" (accepted: {self.field_help[field]})"
            problems.append(text)
        message = "Invalid request: " + ("; ".join(problems) if problems else str(payload.get("error", "")))
        out = {"error": message, "reason": "invalid_request", **{k: v for k, v in payload.items() if k == "detail"}}
        await self._send_json(send, family, start["status"], "invalid_request", out)

    async def _send_reject(self, send: Send, family: str, reason: str, message: str) -> None:
        await self._send_json(send, family, STATUS.get(reason, 400), reason, {"error": message, "reason": reason})

    async def _send_json(self, send: Send, family: str, status: int, reason: str, payload: dict[str, Any]) -> None:
        metrics.count_rejection(family, reason)
        body = json.dumps(payload).encode()
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (REASON_HEADER.encode(), reason.encode()),
                (b"connection", b"close"),
            ],
        })
        await send({"type": "http.response.body", "body": body})


def _boundary(content_type: str) -> bytes | None:
    """The multipart boundary of a multipart/form-data content type, else None."""
    from python_multipart.multipart import parse_options_header

    media, options = parse_options_header(content_type)
    if media != b"multipart/form-data":
        return None
    return options.get(b"boundary") or None


async def drain(receive: Receive, cap: int) -> None:
    """Read and discard the body (up to cap bytes) so the client gets to read our answer
    instead of a connection reset in the middle of its upload."""
    import anyio

    seen = 0
    with anyio.move_on_after(10):
        while seen <= cap:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
