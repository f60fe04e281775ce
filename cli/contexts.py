"""`gorchester context`: named clusters (API URL, token file, CA) in one file, like kubectl's contexts.

The file is `$GORCHESTER_CONFIG`, else `~/.config/gorchester/config.yaml`:

    current: prod
    contexts:
      prod: {api: "https://orchestrator.example:8443", token_file: ~/.gorchester/prod.token, cacert: ca.pem}

A command uses `--context NAME`, else `$GORCHESTER_CONTEXT`, else `current`; its flags and environment variables
still win over the context's fields (cli/client.py client_from).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cli.client import CliError, report

FIELDS = ("api", "token_file", "cacert")


@dataclass(frozen=True)
class Context:
    api: str
    token_file: str | None = None
    cacert: str | None = None


@dataclass(frozen=True)
class Contexts:
    current: str | None
    contexts: dict[str, Context]


def config_path() -> Path:
    return Path(os.environ.get("GORCHESTER_CONFIG") or Path.home() / ".config" / "gorchester" / "config.yaml")


def parse(data: Any, source: str) -> Contexts:
    """The file's contents, checked field by field: any fault is one error naming the file and the field."""
    if data is None:
        return Contexts(None, {})
    if not isinstance(data, dict) or set(data) - {"current", "contexts"}:
        raise CliError(f"{source}: expected a mapping with `current` and `contexts`")
    current = data.get("current")
    if current is not None and not isinstance(current, str):
        raise CliError(f"{source}: current: must be a context name")
    entries = data.get("contexts") or {}
    if not isinstance(entries, dict):
        raise CliError(f"{source}: contexts: must map names to contexts")
    contexts = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise CliError(f"{source}: contexts.{name}: must be a mapping of {', '.join(FIELDS)}")
        for field in set(entry) - set(FIELDS):
            raise CliError(f"{source}: contexts.{name}.{field}: unknown field (expected {', '.join(FIELDS)})")
        for field in FIELDS:
            if entry.get(field) is not None and not isinstance(entry[field], str):
                raise CliError(f"{source}: contexts.{name}.{field}: must be a string")
        if not is_api_url(entry.get("api")):
            raise CliError(f"{source}: contexts.{name}.api: must be an http:// or https:// URL")
        contexts[str(name)] = Context(entry["api"], entry.get("token_file"), entry.get("cacert"))
    if current is not None and current not in contexts:
        raise CliError(f"{source}: current: no context named {current!r}")
    return Contexts(current, contexts)


def is_api_url(text: Any) -> bool:
    return isinstance(text, str) and text.startswith(("http://", "https://")) and len(text.split("://", 1)[1]) > 0


def pick(contexts: Contexts, name: str | None, source: str) -> Context | None:
    """The context a command uses: the one named, else the current one, else none."""
    chosen = name or contexts.current
    if chosen is None:
        return None
    if chosen not in contexts.contexts:
        raise CliError(f"{source}: no context named {chosen!r}")
    return contexts.contexts[chosen]


def load(path: Path) -> Contexts:
    if not path.exists():
        return Contexts(None, {})
    import yaml  # only when there is a file: most commands never pay for the YAML parser

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise CliError(f"{path}: not valid YAML{where}") from None
    return parse(data, str(path))


def selected(name: str | None) -> Context | None:
    """The context for this command: --context, else $GORCHESTER_CONTEXT, else the file's current one."""
    path = config_path()
    return pick(load(path), name or os.environ.get("GORCHESTER_CONTEXT") or None, str(path))


def save(path: Path, contexts: Contexts) -> None:
    """Write the file atomically (a reader never sees half of it) and private (it names token files)."""
    import yaml

    data = {
        "current": contexts.current,
        "contexts": {
            name: {key: value for key, value in asdict(context).items() if value is not None}
            for name, context in contexts.contexts.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            yaml.safe_dump(data, out, sort_keys=False)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def with_context(contexts: Contexts, name: str, context: Context) -> Contexts:
    """The first context added becomes the current one, as kubectl's first cluster does."""
    return Contexts(contexts.current or name, {**contexts.contexts, name: context})


def without_context(contexts: Contexts, name: str, source: str) -> Contexts:
    if name not in contexts.contexts:
        raise CliError(f"{source}: no context named {name!r}")
    rest = {key: value for key, value in contexts.contexts.items() if key != name}
    return Contexts(None if contexts.current == name else contexts.current, rest)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "context", help="list, choose or edit the clusters in the config file",
        description=f"Named clusters (API URL, token file, CA) in $GORCHESTER_CONFIG, else {config_path()}; "
        "--context NAME or $GORCHESTER_CONTEXT picks one for one command; flags and environment still win.",
    )
    commands = parser.add_subparsers(dest="context_command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="the contexts, the current one marked *")
    commands.add_parser("current", help="the current context's name")
    use = commands.add_parser("use", help="make NAME the current context")
    use.add_argument("name", metavar="NAME")
    setting = commands.add_parser("set", help="add or replace context NAME")
    setting.add_argument("name", metavar="NAME")
    setting.add_argument("--api", metavar="URL", required=True, help="the API's base URL")
    setting.add_argument("--token-file", metavar="PATH", help="the file holding the bearer token")
    setting.add_argument("--cacert", metavar="PATH", help="the CA that signed an https API's certificate")
    remove = commands.add_parser("rm", help="remove context NAME")
    remove.add_argument("name", metavar="NAME")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return report(lambda: context_command(args))


def context_command(args: argparse.Namespace) -> int:
    path = config_path()
    contexts = load(path)
    if args.context_command == "list":
        for name, context in contexts.contexts.items():
            print(f"{'*' if name == contexts.current else ' '} {name}  {context.api}")
    elif args.context_command == "current":
        if contexts.current is None:
            raise CliError(f"{path}: no current context (gorchester context use NAME)")
        print(contexts.current)
    elif args.context_command == "use":
        pick(contexts, args.name, str(path))
        save(path, Contexts(args.name, contexts.contexts))
    elif args.context_command == "set":
        if not is_api_url(args.api):
            raise CliError(f"--api {args.api}: must be an http:// or https:// URL")
        token_file = str(Path(args.token_file).expanduser().resolve()) if args.token_file else None
        cacert = str(Path(args.cacert).expanduser().resolve()) if args.cacert else None
        save(path, with_context(contexts, args.name, Context(args.api, token_file, cacert)))
    else:
        save(path, without_context(contexts, args.name, str(path)))
    return 0
