"""Provider kinds come from the registered adapter classes (settings.PROVIDER_ADAPTERS), not from a fixed list.

The check constraint of the four built-in kinds goes: a new adapter class is a new kind without a migration.
Validation (admin, full_clean) refuses a kind no adapter declares; a row whose kind lost its adapter stays
readable and is shown as not configured.
"""

import providers.models
import providers.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0003_providerhealthsnapshot"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="provider",
            name="provider_kind_valid",
        ),
        migrations.AlterField(
            model_name="provider",
            name="base_url",
            field=models.CharField(
                blank=True,
                help_text="Blank: the <KIND>_BASE_URL env var, else the SDK default. Required for OpenAI-compatible servers.",
                max_length=500,
                validators=[providers.validators.validate_http_url],
            ),
        ),
        migrations.AlterField(
            model_name="provider",
            name="kind",
            field=models.CharField(
                choices=providers.models.kind_choices,
                error_messages={
                    "invalid_choice": "Unknown provider kind %(value)r: no adapter in settings.PROVIDER_ADAPTERS declares it."
                },
                max_length=50,
            ),
        ),
    ]
