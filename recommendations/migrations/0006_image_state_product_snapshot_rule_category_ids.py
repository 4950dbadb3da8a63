"""visrec keeps its own per-image state and product snapshots; rules name categories by the adapter's id.

- ``ImageState`` holds what the shop's image rows carried for visrec (sha256, status,
  error, width, height). A database with the bundled catalogue's ``catalog_productimage``
  copies those columns over with the same ids, so every ``ImageEmbedding`` keeps its
  image; ``ImageEmbedding.image`` then points at ``ImageState``.
- ``ProductSnapshot`` is filled by ``manage.py visrec_sync`` (through the adapter).
- ``Rule.category`` / ``scope_category`` become plain category ids (same columns, values
  kept; no foreign key to a shop table).
"""

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

COPY_IMAGES = """
INSERT INTO recommendations_imagestate
    (id, product_id, key, version, url, is_primary, position, sha256, width, height, status, error,
     created_at, updated_at)
SELECT id, product_id, id::text, file, '', is_primary, position, sha256, width, height, status, error,
       created_at, updated_at
FROM catalog_productimage
"""


def _copy_catalog_images(apps, schema_editor):
    """Copy the bundled catalogue's image state (ids kept) when this database has it."""
    connection = schema_editor.connection
    tables = set(connection.introspection.table_names())
    if "catalog_productimage" not in tables:
        return
    with connection.cursor() as cursor:
        columns = {c.name for c in connection.introspection.get_table_description(cursor, "catalog_productimage")}
        if "status" not in columns:
            return
        cursor.execute(COPY_IMAGES)
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('recommendations_imagestate', 'id'), "
            "COALESCE((SELECT MAX(id) FROM recommendations_imagestate), 0) + 1, false)"
        )


def _image_fk_to_state(apps, schema_editor):
    """Point ``recommendations_imageembedding.image_id`` at ``recommendations_imagestate`` (ids are the same)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "recommendations_imageembedding")
    for name, info in constraints.items():
        if info["foreign_key"] and info["columns"] == ["image_id"]:
            schema_editor.execute(f"ALTER TABLE recommendations_imageembedding DROP CONSTRAINT {connection.ops.quote_name(name)}")
    schema_editor.execute(
        "DELETE FROM recommendations_imageembedding e WHERE NOT EXISTS "
        "(SELECT 1 FROM recommendations_imagestate s WHERE s.id = e.image_id)"
    )
    schema_editor.execute(
        "ALTER TABLE recommendations_imageembedding ADD CONSTRAINT recommendations_imageembedding_image_state_fk "
        "FOREIGN KEY (image_id) REFERENCES recommendations_imagestate (id) DEFERRABLE INITIALLY DEFERRED"
    )


def _rule_category_fks_off(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "recommendations_rule")
    for name, info in constraints.items():
        if info["foreign_key"] and info["columns"] in (["category_id"], ["scope_category_id"]):
            schema_editor.execute(f"ALTER TABLE recommendations_rule DROP CONSTRAINT {connection.ops.quote_name(name)}")


class Migration(migrations.Migration):

    dependencies = [
        ('recommendations', '0005_interaction_eventbatch_from_catalog'),
        migrations.swappable_dependency(settings.VISREC_PRODUCT_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ImageState',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(help_text="The adapter's identity of the image within its product.", max_length=200)),
                ('version', models.CharField(blank=True, default='', help_text='Changes when the file changes.', max_length=500)),
                ('url', models.CharField(blank=True, default='', max_length=1000)),
                ('is_primary', models.BooleanField(default=False)),
                ('position', models.PositiveIntegerField(default=0)),
                ('sha256', models.CharField(blank=True, db_index=True, default='', max_length=64)),
                ('width', models.PositiveIntegerField(blank=True, null=True)),
                ('height', models.PositiveIntegerField(blank=True, null=True)),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('ready', 'Ready'), ('failed', 'Failed')], db_index=True, default='pending', max_length=10)),
                ('error', models.TextField(blank=True, default='')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('product', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='visrec_images', to=settings.VISREC_PRODUCT_MODEL)),
            ],
            options={
                'ordering': ['product', 'position', 'pk'],
                'constraints': [models.UniqueConstraint(fields=('product', 'key'), name='visrec_one_state_per_image')],
            },
        ),
        migrations.CreateModel(
            name='ProductSnapshot',
            fields=[
                ('product', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='visrec_snapshot', serialize=False, to=settings.VISREC_PRODUCT_MODEL)),
                ('recommendable', models.BooleanField(default=True)),
                ('active', models.BooleanField(default=True)),
                ('in_stock', models.BooleanField(default=True)),
                ('title', models.CharField(blank=True, default='', max_length=500)),
                ('sku', models.CharField(blank=True, default='', max_length=200)),
                ('url', models.CharField(blank=True, default='', max_length=1000)),
                ('price', models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True)),
                ('currency', models.CharField(blank=True, default='', max_length=3)),
                ('category_id', models.BigIntegerField(blank=True, null=True)),
                ('category_name', models.CharField(blank=True, default='', max_length=300)),
                ('category_path', django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), blank=True, default=list, size=None)),
                ('image_url', models.CharField(blank=True, default='', max_length=1000)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'indexes': [models.Index(fields=['category_id'], name='snapshot_category'), django.contrib.postgres.indexes.GinIndex(fields=['category_path'], name='snapshot_category_path')],
            },
        ),
        migrations.RunPython(_copy_catalog_images, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='imageembedding',
                    name='image',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='embeddings', to='recommendations.imagestate'),
                ),
            ],
            database_operations=[migrations.RunPython(_image_fk_to_state, migrations.RunPython.noop)],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name='rule', name='category'),
                migrations.RemoveField(model_name='rule', name='scope_category'),
                migrations.AddField(
                    model_name='rule',
                    name='category_id',
                    field=models.BigIntegerField(blank=True, help_text="Target category (boost, exclude category): the adapter's id.", null=True, verbose_name='category'),
                ),
                migrations.AddField(
                    model_name='rule',
                    name='scope_category_id',
                    field=models.BigIntegerField(blank=True, help_text="Only in lists shown for this category (the adapter's id).", null=True, verbose_name='scope category'),
                ),
            ],
            database_operations=[migrations.RunPython(_rule_category_fks_off, migrations.RunPython.noop)],
        ),
    ]
