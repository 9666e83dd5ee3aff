"""A plain HTTP client for the catalog's tests: urllib with a cookie jar, redirects not followed."""

from __future__ import annotations

import http.cookiejar
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message

from tests.support.gateway import Credentials


@dataclass
class Answer:
    status: int
    headers: Message
    text: str

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class WebClient:
    """One browser's worth of cookies against the listener at ``base`` (``http://`` or ``https://host:port``).

    ``tls``: how ``https://`` answers are verified (for example trusting a test CA).
    """

    def __init__(self, base: str, tls: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()]
        if tls is not None:
            handlers.append(urllib.request.HTTPSHandler(context=tls))
        self._opener = urllib.request.build_opener(*handlers)

    def get(self, path: str) -> Answer:
        return self.send(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict[str, str]) -> Answer:
        body = urllib.parse.urlencode(fields).encode()
        return self.send(urllib.request.Request(self.base + path, data=body, method="POST"))

    def send(self, request: urllib.request.Request) -> Answer:
        try:
            with self._opener.open(request, timeout=30) as answer:
                return Answer(answer.status, answer.headers, answer.read().decode())
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.headers, error.read().decode())

    def csrf(self, path: str = "/login") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(path).text)
        assert found is not None, f"no CSRF token on {path}"
        return found.group(1)

    def sign_in(self, credentials: Credentials, *, next_page: str = "/") -> Answer:
        fields = {"csrf": self.csrf(), "user": credentials.user, "password": credentials.password, "next": next_page}
        return self.post("/login", fields)
