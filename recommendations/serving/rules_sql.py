"""The rules' product filter as SQL over visrec's product snapshots, compiled once per rules."""

from __future__ import annotations

from django.db import connection

from ..models import ProductSnapshot
from ..rules import Rules

_RULES_SQL_KEPT = 512


_rules_sql: dict[tuple[str, str], tuple[str, tuple]] = {}


def rules_where(rules: Rules | None) -> tuple[str, tuple]:
    """``Rules.product_q`` as an SQL condition on the product table, compiled once per rules.

    ``None``: active products (in stock or not). The ORM builds and compiles the filter
    the first time a set of rules is seen; the neighbour and product queries then reuse
    the text (building a query through the ORM costs more than running it).
    """
    key = (connection.alias, rules.cache_key() if rules is not None else "active")
    found = _rules_sql.get(key)
    if found is None:
        products = ProductSnapshot.objects
        query = (products.filter(rules.product_q()) if rules is not None else products.filter(active=True)).query
        if sum(1 for count in query.alias_refcount.values() if count) > 1:
            raise ValueError("the rules' product filter must not need joins")
        sql, params = query.get_compiler(connection=connection).compile(query.where)
        found = (sql, tuple(params))
        if len(_rules_sql) >= _RULES_SQL_KEPT:
            _rules_sql.clear()
        _rules_sql[key] = found
    return found
