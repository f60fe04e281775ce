"""The REST client every remote command shares: where the API is, the token, and one request function.

Every failure (unreachable API, HTTP error status, a body that is not JSON) becomes a `CliError`,
so each command only has the happy path and `run_client` turns errors into one stderr line and exit 1.
"""

from __future__ import annotations

import argparse
import http.client
import json as jsonlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

if TYPE_CHECKING:
    import ssl

DEFAULT_API = "http://127.0.0.1:8080"
TIMEOUT = 10.0  # seconds per request; the API answers from Redis, so anything slower is a fault
EXIT_ERROR = 1
EXIT_USAGE = 2
OUTPUTS = ["table", "wide", "json", "yaml", "name"]
# The global options that take a value, so the command's name can be found in argv before parsing (cli/main.py).
GLOBAL_VALUE_OPTIONS = frozenset({"--api", "--cacert", "--token", "--token-file", "-o", "--output", "--context"})


class CliError(Exception):
    """A failure to report to the user: the first line, any detail lines, and the exit code."""

    def __init__(self, message: str, details: list[str] | None = None, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.exit_code = exit_code

    def lines(self) -> list[str]:
        return [self.message, *(f"  {line}" for line in self.details)]


@dataclass(frozen=True)
class ApiClient:
    base_url: str
    token: str | None = None
    timeout: float = TIMEOUT
    verify: ssl.SSLContext | bool = True  # an https API's certificate: the system's CAs, or --cacert's

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: str | None = None,
        content_type: str | None = None,
    ) -> Any:
        """The parsed JSON answer of a 2xx response; anything else raises CliError."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        query = f"?{urlencode(params)}" if params else ""
        url = f"{self.base_url}{path}{query}"
        body = content.encode() if content is not None else None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        answer = self.send(method, url, body, headers)
        if 200 <= answer.status_code < 300:
            try:
                return answer.json()
            except ValueError:
                raise CliError(f"the API at {self.base_url} answered {path} with something that is not JSON") from None
        raise api_error(answer)

    def send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        """One HTTP exchange with the standard library (httpx alone costs more start-up than the whole command)."""
        try:
            parts = urlsplit(url)
            port = parts.port  # a port that is not a number raises here
        except ValueError:
            parts, port = urlsplit(""), None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"--api {self.base_url}: not an http:// or https:// URL")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname, port, timeout=self.timeout, context=self.ssl_context()
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname, port, timeout=self.timeout)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.read().decode("utf-8", "replace"), response.reason)
        except TimeoutError:
            raise CliError(f"the API at {self.base_url} did not answer within {self.timeout:g}s") from None
        except OSError as exc:  # refused, unknown host, unreachable network, certificate refused
            raise CliError(f"cannot reach the API at {self.base_url}: {exc}") from None
        except http.client.HTTPException as exc:
            raise CliError(f"request to {url} failed: {type(exc).__name__} {exc}") from None
        except ValueError:  # its text would quote the header, the token with it
            raise CliError(f"request to {url} failed: the token or the URL holds characters HTTP refuses") from None
        finally:
            connection.close()

    def ssl_context(self) -> ssl.SSLContext:
        import ssl

        return self.verify if isinstance(self.verify, ssl.SSLContext) else ssl.create_default_context()

    def get(self, path: str, **params: str | None) -> Any:
        """GET with the query parameters that are set (None means "not given")."""
        return self.request("GET", path, params={key: value for key, value in params.items() if value is not None})

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)


def path(*segments: str) -> str:
    """`/v1/services/NAME` with each user-given segment escaped, so `a/b` or `?` cannot reach another route."""
    return "/v1/" + "/".join(quote(segment, safe="") for segment in segments)


@dataclass(frozen=True)
class Answer:
    """An HTTP response as api_error reads it (httpx.Response, which cli/logs.py streams with, reads the same)."""

    status_code: int
    text: str
    reason_phrase: str

    def json(self) -> Any:
        return jsonlib.loads(self.text)


class Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def reason_phrase(self) -> str: ...

    def json(self) -> Any: ...


def api_error(response: Response) -> CliError:
    """The API's own words for a refusal: every `errors` line for 422, else its message or reason."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = " ".join(response.text.split())[:200]
        return CliError(f"the API answered HTTP {status}: {text or response.reason_phrase}")
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        plural = "s" if len(errors) != 1 else ""
        return CliError(f"the API refused it as invalid ({len(errors)} error{plural}):", [str(line) for line in errors])
    message = body.get("message") or body.get("reason") or body.get("error") or response.reason_phrase
    if status == 401:
        message = f"{message} (give one with --token, --token-file or $GORCHESTER_TOKEN)"
    return CliError(f"{message} (HTTP {status})" if status >= 500 else str(message))


def connection_options() -> argparse.ArgumentParser:
    """The options every client command takes, as a parent parser so each subcommand lists them.

    Their defaults are left out (SUPPRESS) so an option given before the command (global_options, on the
    top-level parser, which carries the defaults) is not overwritten by the subcommand's default."""
    return options_parser(argparse.SUPPRESS)


def global_options() -> argparse.ArgumentParser:
    """The same options on `gorchester` itself, so `gorchester --api URL get services` works as kubectl's does."""
    return options_parser(None)


def options_parser(default: Any) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False, argument_default=default)
    group = parent.add_argument_group("API connection")
    api_default = os.environ.get("GORCHESTER_API") or None
    group.add_argument(
        "--api", metavar="URL", default=api_default if default is None else default,
        help=f"base URL of the API (default $GORCHESTER_API, else the context's, else {DEFAULT_API})",
    )
    cacert_default = os.environ.get("GORCHESTER_CACERT") or None
    group.add_argument(
        "--cacert", metavar="PATH", default=cacert_default if default is None else default,
        help="trust an https API's certificate when this CA signed it (default $GORCHESTER_CACERT, else the context's)",
    )
    tokens = group.add_mutually_exclusive_group()
    tokens.add_argument("--token", help="bearer token (default $GORCHESTER_TOKEN, else the context's token file)")
    tokens.add_argument("--token-file", metavar="PATH", help="read the bearer token from PATH")
    group.add_argument(
        "--context", metavar="NAME",
        help="use this context of the config file for this command (default $GORCHESTER_CONTEXT, else its current)",
    )
    output = parent.add_argument_group("output")
    output.add_argument(
        "-o", "--output", choices=OUTPUTS, default="table" if default is None else default,
        help="table for people (default), wide for more columns, json or yaml for scripts (the API's own answer), "
        "name for `kind/name` lines",
    )
    output.add_argument("--no-headers", action="store_true", default=False if default is None else default,
                        help="tables without their header line")
    return parent


def client_from(args: argparse.Namespace) -> ApiClient:
    """The client for the API that the options, the environment or the context name, in that order."""
    from cli.contexts import selected

    context = selected(getattr(args, "context", None))
    api = getattr(args, "api", None) or (context.api if context else DEFAULT_API)
    cacert = getattr(args, "cacert", None) or (context.cacert if context else None)
    token = token_from(args)
    if token is None and context and context.token_file:
        token = read_token(context.token_file)
    return ApiClient(api.rstrip("/"), token, verify=verify_from(cacert))


def verify_from(cacert: str | None) -> ssl.SSLContext | bool:
    """The CAs an https API's certificate is checked against: --cacert's file, else the system's."""
    if not cacert:
        return True
    import ssl

    try:
        return ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"--cacert {cacert}: cannot use it as a certificate authority: {reason}") from None


def token_from(args: argparse.Namespace) -> str | None:
    """--token, else --token-file's first line, else $GORCHESTER_TOKEN; None sends no header."""
    if getattr(args, "token", None):
        return str(args.token)
    if getattr(args, "token_file", None):
        return read_token(args.token_file)
    return os.environ.get("GORCHESTER_TOKEN") or None


def read_token(token_file: str) -> str | None:
    """A token file's first line (None when empty)."""
    try:
        text = Path(token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"{token_file}: cannot read the token: {reason}") from None
    return text.splitlines()[0] if text else None


def run_client(command: Callable[[ApiClient, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so a CliError is printed on stderr (no traceback) and becomes its exit code."""

    def run(args: argparse.Namespace) -> int:
        return report(lambda: command(client_from(args), args))

    return run


def report(command: Callable[[], int]) -> int:
    """Run a command: a CliError becomes one stderr line (and its details) and its exit code."""
    try:
        return command()
    except BrokenPipeError:
        # The reader left (`| head`): that is the end of the output, not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not complain about the pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CliError as exc:
        first, *rest = exc.lines()
        print(f"error: {first}", file=sys.stderr)
        for line in rest:
            print(line, file=sys.stderr)
        return exc.exit_code
