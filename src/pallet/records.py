"""Plain record classes for modules on the hot path of `pallet run`.

dataclasses costs ~7 ms to import here (it pulls in inspect, ast and dis) plus an exec() per
class, on every command. These bases give a __slots__ class the equality and repr a dataclass
would have; each record still spells out its own __init__ (so mypy and readers see the fields).
"""

from __future__ import annotations


class Record:
    """Mutable record: equal when of the same type with equal fields; unhashable, as a dataclass."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, k) for k in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({inner})"


class FrozenRecord(Record):
    """Immutable record: fields are set once, in __init__, through _set(); hashable."""

    __slots__ = ()

    def _set(self, **fields: object) -> None:
        for k, v in fields.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name}")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._fields())
