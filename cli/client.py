"""The REST client every remote command shares: where the API is, the token, and one request function.

Every failure (unreachable API, HTTP error status, a body that is not JSON) becomes a `CliError`,
so each command only has the happy path and `run_client` turns errors into one stderr line and exit 1.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_API = "http://127.0.0.1:8080"
TIMEOUT = 10.0  # seconds per request; the API answers from Redis, so anything slower is a fault
EXIT_ERROR = 1
EXIT_USAGE = 2


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
        url = f"{self.base_url}{path}"
        try:
            response = httpx.request(
                method, url, params=params, json=json, content=content, headers=headers, timeout=self.timeout,
                verify=self.verify,
            )
        except httpx.ConnectError as exc:
            raise CliError(f"cannot reach the API at {self.base_url}: {exc}") from None
        except httpx.TimeoutException:
            raise CliError(f"the API at {self.base_url} did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to {url} failed: {exc}") from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise CliError(f"the API at {self.base_url} answered {path} with something that is not JSON") from None
        raise api_error(response)

    def get(self, path: str, **params: str | None) -> Any:
        """GET with the query parameters that are set (None means "not given")."""
        return self.request("GET", path, params={key: value for key, value in params.items() if value is not None})

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)


def path(*segments: str) -> str:
    """`/v1/services/NAME` with each user-given segment escaped, so `a/b` or `?` cannot reach another route."""
    return "/v1/" + "/".join(quote(segment, safe="") for segment in segments)


def api_error(response: httpx.Response) -> CliError:
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
    """The options every client command takes, as a parent parser so each subcommand lists them."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("API connection")
    group.add_argument(
        "--api", metavar="URL", default=os.environ.get("GORCHESTER_API", DEFAULT_API),
        help=f"base URL of the API (default $GORCHESTER_API, else {DEFAULT_API})",
    )
    group.add_argument(
        "--cacert", metavar="PATH", default=os.environ.get("GORCHESTER_CACERT") or None,
        help="trust an https API's certificate when this CA signed it (default $GORCHESTER_CACERT)",
    )
    tokens = group.add_mutually_exclusive_group()
    tokens.add_argument("--token", help="bearer token (default $GORCHESTER_TOKEN)")
    tokens.add_argument("--token-file", metavar="PATH", help="read the bearer token from PATH")
    group.add_argument(
        "-o", "--output", choices=["table", "json"], default="table",
        help="table for people (default), json for scripts: the API's own JSON",
    )
    return parent


def client_from(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.api.rstrip("/"), token_from(args), verify=verify_from(args))


def verify_from(args: argparse.Namespace) -> ssl.SSLContext | bool:
    """The CAs an https API's certificate is checked against: --cacert's file, else the system's."""
    if not args.cacert:
        return True
    try:
        return ssl.create_default_context(cafile=args.cacert)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"--cacert {args.cacert}: cannot use it as a certificate authority: {reason}") from None


def token_from(args: argparse.Namespace) -> str | None:
    """--token, else --token-file's first line, else $GORCHESTER_TOKEN; None sends no header."""
    if args.token:
        return str(args.token)
    if args.token_file:
        try:
            text = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CliError(f"{args.token_file}: cannot read the token: {reason}") from None
        return text.splitlines()[0] if text else None
    return os.environ.get("GORCHESTER_TOKEN") or None


def run_client(command: Callable[[ApiClient, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command so a CliError is printed on stderr (no traceback) and becomes its exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(client_from(args), args)
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

    return run
