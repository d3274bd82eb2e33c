"""The order entities load in: every parent before the entities whose foreign keys name it."""

from __future__ import annotations

from collections.abc import Mapping

from cdf_pipeline.contracts.model import Entity


def dependency_order(entities: Mapping[str, Entity]) -> list[Entity]:
    """Entities with parents first, otherwise in declaration order (a stable topological sort).

    Raises:
        ValueError: a foreign key names an undeclared entity, or foreign keys form a cycle.
    """
    ordered: list[Entity] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(e: Entity) -> None:
        if e.name in done:
            return
        if e.name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(e.name) :], e.name])
            raise ValueError(f"foreign keys form a cycle ({cycle}); one side must not be an FK")
        visiting.append(e.name)
        for fk in e.foreign_keys:
            if fk.entity not in entities:
                raise ValueError(
                    f"contract {e.name!r}: foreign key {fk.column!r} names unknown entity "
                    f"{fk.entity!r}; declare it or fix the name (known: {sorted(entities)})"
                )
            if fk.entity != e.name:
                visit(entities[fk.entity])
        visiting.pop()
        done.add(e.name)
        ordered.append(e)

    for e in entities.values():
        visit(e)
    return ordered
