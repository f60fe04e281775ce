"""`gorchester completion bash|zsh`: the shell script completing commands and, from the API, names.

The script asks the hidden `gorchester __complete services|nodes|tasks` for names, one a line; that
command prints nothing at all when the API cannot answer, so a tab press never prints an error.
Names are matched in the script with `[[ ]]` and added to COMPREPLY as data: never expanded by the shell
(`compgen -W` would expand `$(...)` in a name).
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from cli.client import CliError, client_from, connection_options

# What `__complete KIND` lists: the API path and the field that names one.
NAMED = {"services": ("/v1/services", "service_name"), "nodes": ("/v1/nodes", "id"), "tasks": ("/v1/tasks", "id")}

BASH = r"""# gorchester completion for bash: eval "$(gorchester completion bash)"
_gorchester() {
    [[ -n ${ZSH_VERSION:-} ]] && setopt localoptions ksharrays  # zsh (bashcompinit): arrays from 0, as bash's
    local cur="${COMP_WORDS[COMP_CWORD]}" command="" position=1 first="" i kind="" name
    local -a connection=()  # the API options typed, anywhere: the names come from that API
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --api|--token|--token-file|--cacert|--context)
                connection+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}"); ((i++)) ;;
            -o|--output) ((i++)) ;;
            -*) ;;
            *) if [[ -z $command ]]; then command="${COMP_WORDS[i]}"
               else [[ -z $first ]] && first="${COMP_WORDS[i]}"; ((position++)); fi ;;
        esac
    done
    if [[ -z $command ]]; then
        COMPREPLY=($(compgen -W "__COMMANDS__" -- "$cur"))
        return
    fi
    case "$command" in
        get) [[ $position == 1 ]] && COMPREPLY=($(compgen -W "services nodes tasks events svc no ts ev" -- "$cur")) ;;
        describe)
            if [[ $position == 1 ]]; then COMPREPLY=($(compgen -W "service node task" -- "$cur")); return; fi
            [[ $position == 2 ]] && kind="${first}s" ;;
        scale|rm|endpoints) [[ $position == 1 ]] && kind=services ;;
        top)
            if [[ $position == 1 ]]; then COMPREPLY=($(compgen -W "services nodes" -- "$cur")); return; fi
            [[ $position == 2 ]] && kind="$first" ;;
        rollout) [[ $position == 2 ]] && kind=services ;;
        drain|activate) [[ $position == 1 ]] && kind=nodes ;;
        logs|exec|stop) [[ $position == 1 ]] && kind=tasks ;;
        completion) [[ $position == 1 ]] && COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
    esac
    case "$kind" in
        services|nodes|tasks)
            while IFS= read -r name; do
                [[ $name == "$cur"* ]] && COMPREPLY+=("$name")
            done < <("${COMP_WORDS[0]}" __complete "${connection[@]}" "$kind" 2>/dev/null) ;;
    esac
}
complete -F _gorchester gorchester
"""

# zsh runs the bash function through bashcompinit (after compinit, which a zsh rc file loads); zsh filters
# the words offered by what was typed itself.
ZSH_PREFIX = "# gorchester completion for zsh: eval \"$(gorchester completion zsh)\" (after compinit)\n" \
    "autoload -U +X bashcompinit && bashcompinit\n"


def script(shell: str, commands: list[str]) -> str:
    """The completion script for `shell`, completing `commands` as the first word."""
    bash = BASH.replace("__COMMANDS__", " ".join(commands))
    return ZSH_PREFIX + bash if shell == "zsh" else bash


def names(kind: str, items: Any) -> list[str]:
    """The names in an API listing, one per item; an answer of another shape gives none."""
    key = NAMED[kind][1]
    if not isinstance(items, list):
        return []
    return [str(item[key]) for item in items if isinstance(item, dict) and isinstance(item.get(key), str)]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "completion", help="print the shell completion script (bash or zsh)",
        description='Load it with eval "$(gorchester completion bash)" (or zsh) in your shell\'s rc file; '
        "service, node and task names are completed from the API.",
    )
    parser.add_argument("shell", choices=["bash", "zsh"])
    parser.set_defaults(run=print_script)
    hidden = subparsers.add_parser("__complete", parents=[connection_options()])  # no help: not listed
    hidden.add_argument("kind", choices=sorted(NAMED))
    hidden.set_defaults(run=complete)


def print_script(args: argparse.Namespace) -> int:
    from cli.main import COMMANDS

    print(script(args.shell, [name for name in COMMANDS if not name.startswith("_")]), end="")
    return 0


def complete(args: argparse.Namespace) -> int:
    """Names for the shell, one a line; nothing (and exit 0) when the API cannot say."""
    with contextlib.suppress(CliError):
        for name in names(args.kind, client_from(args).get(NAMED[args.kind][0])):
            print(name)
    return 0
