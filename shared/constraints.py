"""Placement constraints in Swarm's syntax: `node.labels.zone == a`, `node.id != node-3`,
`node.address == 10.0.0.2`. Pure: parsed once from a service's spec, matched against a node's id,
address and labels (an agent's GORCHESTER_NODE_LABELS).

As in Swarm, a label the node does not have matches `!=` and never `==`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

FIELDS = ("node.id", "node.address", "node.labels.")
_KEY = r"[A-Za-z0-9_.-]{1,63}"
_VALUE = r"[A-Za-z0-9_.:/@+-]{1,253}"
CONSTRAINT = rf"^ *(node\.id|node\.address|node\.labels\.{_KEY}) *(==|!=) *({_VALUE}) *$"
CONSTRAINT_RULE = (
    "must be FIELD == VALUE or FIELD != VALUE, with FIELD node.id, node.address or node.labels.KEY "
    "(KEY of letters, digits, '_', '.', '-') and VALUE of letters, digits and '_.:/@+-'"
)
_CONSTRAINT_RE = re.compile(CONSTRAINT)


@dataclass(frozen=True)
class Constraint:
    field: str  # node.id, node.address or node.labels.<key>
    equal: bool  # == (True) or != (False)
    value: str

    def holds(self, node_id: str, address: str, labels: Mapping[str, str]) -> bool:
        if self.field == "node.id":
            actual: str | None = node_id
        elif self.field == "node.address":
            actual = address
        else:
            actual = labels.get(self.field.removeprefix("node.labels."))
        return (actual == self.value) is self.equal

    def __str__(self) -> str:
        return f"{self.field} {'==' if self.equal else '!='} {self.value}"


@functools.lru_cache(maxsize=4096)  # a pass asks for every replica's: parsed once per text
def parse(text: str) -> Constraint:
    """A constraint from its text; ValueError naming the rule when it is not one."""
    match = _CONSTRAINT_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r}: {CONSTRAINT_RULE}")
    field, operator, value = match.groups()
    return Constraint(field, operator == "==", value)
