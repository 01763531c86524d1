"""pg_durable's SQL API (schema ``df``) without the extension: workflows defined in SQL, run by Howdah's worker.

>>> SELECT df.start(df.sql('SELECT 1') |=> 'one' ~> 'INSERT INTO t VALUES ($one)');

:func:`install` registers the workflows that run ``df`` instances in a :class:`~howdah.durable.DurableApp`.
"""

from howdah.df._bindings import MAX_ROWS, BindingError, substitute, substitute_variables
from howdah.df._egress import Blocked, EgressError, EgressPolicy
from howdah.df._errors import NodeError, NodeFailed
from howdah.df._runner import MAX_ITERATIONS, install, truthy
from howdah.df._schema import COMPONENT

__all__ = [
    "COMPONENT",
    "MAX_ITERATIONS",
    "MAX_ROWS",
    "BindingError",
    "Blocked",
    "EgressError",
    "EgressPolicy",
    "NodeError",
    "NodeFailed",
    "install",
    "substitute",
    "substitute_variables",
    "truthy",
]
