"""Explicit state machines for documents: each action names the states it may start from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StateMachine:
    name: str
    initial: str
    actions: dict  # action -> (frozenset(from states), to state)

    def next_state(self, current: str, action: str) -> str:
        """The state after `action`, or ValueError naming what is allowed."""
        if action not in self.actions:
            raise ValueError(f"unknown action {action!r} for a {self.name}")
        sources, target = self.actions[action]
        if current not in sources:
            allowed = sorted(a for a, (src, _) in self.actions.items() if current in src)
            raise ValueError(
                f"cannot {action} a {self.name} that is {current}; "
                f"allowed from {current}: {', '.join(allowed) or 'nothing (final state)'}"
            )
        return target

    @property
    def states(self) -> list[str]:
        out = [self.initial]
        for sources, target in self.actions.values():
            for s in (*sorted(sources), target):
                if s not in out:
                    out.append(s)
        return out


def _m(name, initial, **actions):
    return StateMachine(name, initial, {a: (frozenset(src), dst) for a, (src, dst) in actions.items()})


SALES_ORDER = _m(
    "sales order", "draft",
    confirm=({"draft"}, "confirmed"),
    deliver=({"confirmed"}, "delivered"),
    invoice=({"delivered"}, "invoiced"),
    pay=({"invoiced"}, "paid"),
    cancel=({"draft", "confirmed"}, "cancelled"),
)

PURCHASE_ORDER = _m(
    "purchase order", "draft",
    confirm=({"draft"}, "confirmed"),
    receive=({"confirmed"}, "received"),
    bill=({"received"}, "billed"),
    pay=({"billed"}, "paid"),
    cancel=({"draft", "confirmed"}, "cancelled"),
)

INVOICE = _m(
    "invoice", "open",
    pay=({"open", "partial"}, "paid"),
    pay_part=({"open", "partial"}, "partial"),
)

STOCKTAKE = _m(
    "stocktake", "draft",
    post=({"draft"}, "posted"),
    cancel=({"draft"}, "cancelled"),
)

RETURN = _m(
    "return", "draft",
    post=({"draft"}, "posted"),
    cancel=({"draft"}, "cancelled"),
)
