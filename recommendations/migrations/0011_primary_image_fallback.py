"""Image states of products with no image flagged primary: the first by position becomes primary.

``recommendations.sync`` now marks the adapter's ``primary_image`` (the flagged image, else
the first by position) as primary, the image whose vector serves similar items and tastes.
Before, a product whose shop flagged no image (an image added in the admin without ticking
"primary") had no primary state and was never anyone's visual neighbour; this brings the
rows synced before in line without calling the shop's adapter.
"""

from django.db import migrations

FIRST_BY_POSITION = """
UPDATE recommendations_imagestate s SET is_primary = true
WHERE s.id IN (
    SELECT DISTINCT ON (f.product_id) f.id FROM recommendations_imagestate f
    WHERE NOT EXISTS (
        SELECT 1 FROM recommendations_imagestate p WHERE p.product_id = f.product_id AND p.is_primary
    )
    ORDER BY f.product_id, f.position, f.id
)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("recommendations", "0010_taskrun_heartbeat_deliveries"),
    ]

    operations = [migrations.RunSQL(FIRST_BY_POSITION, migrations.RunSQL.noop)]
