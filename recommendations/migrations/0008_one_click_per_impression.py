"""A click counts once per impression (an impression is one shopper's list).

Before, each position of a list could count a click, so one shopper clicking through a list
(or replaying its tokens) counted several. The earliest click of each impression is kept;
the later ones are removed, then the constraint is replaced.
"""

from django.db import migrations, models


def _keep_first_click_of_each_impression(apps, schema_editor):
    Click = apps.get_model("recommendations", "Click")
    table = schema_editor.quote_name(Click._meta.db_table)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} later USING {table} first "
            "WHERE later.impression_id = first.impression_id "
            "AND (later.created_at, later.id) > (first.created_at, first.id)"
        )


class Migration(migrations.Migration):
    dependencies = [("recommendations", "0007_stamp")]

    operations = [
        migrations.RemoveConstraint(model_name="click", name="one_click_per_impression_position"),
        migrations.RunPython(_keep_first_click_of_each_impression, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="click",
            constraint=models.UniqueConstraint(fields=("impression_id",), name="one_click_per_impression"),
        ),
    ]
