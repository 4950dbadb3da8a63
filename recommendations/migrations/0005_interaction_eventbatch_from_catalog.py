"""Shopper events become the plugin's: ``Interaction`` and ``EventBatch`` move here from ``catalog``.

A database that has the bundled catalogue's tables (``catalog_interaction``,
``catalog_eventbatch``) keeps its rows: the tables are renamed. Elsewhere they are created.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from recommendations.migrations._adopt import adopt_or_create, give_back


class Migration(migrations.Migration):

    dependencies = [
        ('recommendations', '0004_cockpit_rules_judgements_experiments_tasks'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(settings.VISREC_PRODUCT_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='EventBatch',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('scope', models.CharField(help_text='who posted it: token:<id>, user:<id> or session:<key>', max_length=100)),
                        ('key', models.CharField(max_length=255)),
                        ('fingerprint', models.CharField(help_text='SHA-256 of the request body', max_length=64)),
                        ('status_code', models.PositiveSmallIntegerField()),
                        ('response', models.JSONField()),
                        ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ],
                    options={
                        'constraints': [models.UniqueConstraint(fields=('scope', 'key'), name='event_batch_unique_key')],
                    },
                ),
                migrations.CreateModel(
                    name='Interaction',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('session_key', models.CharField(blank=True, default='', max_length=64)),
                        ('kind', models.CharField(choices=[('view', 'View'), ('click', 'Click'), ('add_to_cart', 'Add to cart'), ('purchase', 'Purchase'), ('rating', 'Rating')], max_length=16)),
                        ('value', models.FloatField(default=1.0)),
                        ('source', models.CharField(blank=True, default='', max_length=64, verbose_name='source widget')),
                        ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('event_key', models.CharField(blank=True, editable=False, max_length=200, null=True, unique=True)),
                        ('product', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='visrec_interactions', to=settings.VISREC_PRODUCT_MODEL)),
                        ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='visrec_interactions', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'ordering': ['-created_at'],
                        'indexes': [models.Index(fields=['user', '-created_at'], name='interaction_user_hist'), models.Index(fields=['session_key', '-created_at'], name='interaction_session_hist'), models.Index(fields=['product', 'kind'], name='interaction_product_kind')],
                        'constraints': [models.CheckConstraint(condition=models.Q(('user__isnull', False), models.Q(('session_key', ''), _negated=True), _connector='OR'), name='interaction_has_shopper')],
                    },
                ),
            ],
        ),
        migrations.RunPython(adopt_or_create, give_back),
    ]
