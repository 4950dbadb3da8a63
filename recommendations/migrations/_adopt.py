"""Helpers of visrec's migrations (not a migration: the loader skips names starting with ``_``)."""

#: visrec tables that were the bundled catalogue's before the plugin owned them.
MOVED = {"Interaction": "catalog_interaction", "EventBatch": "catalog_eventbatch"}


def adopt_or_create(apps, schema_editor):
    """Rename the catalogue's event tables to visrec's (keeping their rows) where they exist; else create them."""
    existing = set(schema_editor.connection.introspection.table_names())
    for name, old_table in MOVED.items():
        model = apps.get_model("recommendations", name)
        if old_table in existing:
            schema_editor.alter_db_table(model, old_table, model._meta.db_table)
        else:
            schema_editor.create_model(model)


def give_back(apps, schema_editor):
    """Reverse of :func:`adopt_or_create` on a database that has the bundled catalogue."""
    for name, old_table in MOVED.items():
        model = apps.get_model("recommendations", name)
        schema_editor.alter_db_table(model, model._meta.db_table, old_table)
