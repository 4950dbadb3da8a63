"""``Interaction`` and ``EventBatch`` belong to visrec now (``recommendations`` 0005 adopts the tables).

State only here; a fresh database whose plugin tables were created directly (not
adopted) drops the bundled catalogue's empty copies.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0002_interaction_event_key_event_batch'),
        ('recommendations', '0005_interaction_eventbatch_from_catalog'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='EventBatch'),
                migrations.DeleteModel(name='Interaction'),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP TABLE IF EXISTS catalog_interaction; DROP TABLE IF EXISTS catalog_eventbatch;",
                    migrations.RunSQL.noop,
                ),
            ],
        ),
    ]
