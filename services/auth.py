"""Who may use the server: optional API keys and the Origins a browser WebSocket may come from.

Pure functions over request headers; services/access.py applies them to every request. Keys are
compared in constant time and never logged or echoed: only how many there are.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core import config

Headers = Mapping[bytes, bytes]  # lower-case names, as ASGI gives them


@dataclass(frozen=True)
class ApiKeys:
    keys: tuple[bytes, ...]

    @classmethod
    def from_env(cls) -> ApiKeys:
        keys = config.get_list("HARK_API_KEYS")
        path = config.get_str("HARK_API_KEYS_FILE")
        if path:
            try:
                lines = Path(path).read_text().splitlines()
            except OSError as exc:
                raise config.ConfigError(f"HARK_API_KEYS_FILE={path!r} cannot be read ({exc.strerror})") from None
            keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return cls(tuple(k.encode() for k in keys))

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def accepts(self, candidate: bytes | None) -> bool:
        """True when `candidate` is one of the keys. Every key is compared, whatever matched, so
        the time taken says nothing about which key or how much of one was right."""
        if candidate is None:
            return False
        found = False
        for key in self.keys:
            found |= hmac.compare_digest(candidate, key)
        return found


def presented_key(headers: Headers) -> bytes | None:
    """The key a request carries: `X-API-Key`, `Authorization: Bearer KEY`, or the password of
    `Authorization: Basic` (what a browser sends after its login prompt on the demo page)."""
    if b"x-api-key" in headers:
        return headers[b"x-api-key"].strip()
    scheme, _, value = headers.get(b"authorization", b"").strip().partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        return value.strip()
    if scheme == b"basic":
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return None
        return password
    return None


def is_open(path: str, open_paths: Iterable[str]) -> bool:
    """True for a path served without a key: one of `open_paths` or beneath one."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in open_paths)


def origin_allowed(headers: Headers, allowed: Iterable[str]) -> bool:
    """A WebSocket's Origin check. No Origin (not a browser) and the server's own origin pass;
    others must be listed (HARK_ALLOWED_ORIGINS; `*` lists all)."""
    origin = headers.get(b"origin", b"").decode("latin-1").strip()
    if not origin:
        return True
    allowed = list(allowed)
    if "*" in allowed or origin.rstrip("/") in (a.rstrip("/") for a in allowed):
        return True
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    return bool(host) and urlsplit(origin).netloc.lower() == host
