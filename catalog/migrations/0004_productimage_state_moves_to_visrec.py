"""Embedding state (status, error) leaves the catalogue's images for visrec's ``ImageState``.

``recommendations`` 0006 copied it first; an image the importer could not store keeps its
reason here as ``import_error`` (the adapter reports it to visrec).
"""

from django.db import migrations, models


def _keep_import_errors(apps, schema_editor):
    ProductImage = apps.get_model("catalog", "ProductImage")
    for image in ProductImage.objects.filter(file="", status="failed").exclude(error=""):
        ProductImage.objects.filter(pk=image.pk).update(import_error=image.error)


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0003_interactions_move_to_recommendations'),
        ('recommendations', '0006_image_state_product_snapshot_rule_category_ids'),
    ]

    operations = [
        migrations.AddField(
            model_name='productimage',
            name='import_error',
            field=models.TextField(blank=True, default=''),
        ),
        migrations.RunPython(_keep_import_errors, migrations.RunPython.noop),
        migrations.RemoveField(model_name='productimage', name='error'),
        migrations.RemoveField(model_name='productimage', name='status'),
    ]
