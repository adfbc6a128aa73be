"""Create the four built-in providers. Base URLs and keys stay in the environment:
rows name the env var and leave base_url blank, so nothing is frozen at migrate time."""

from django.db import migrations

PROVIDERS = [
    ("anthropic", "anthropic", "Anthropic", "ANTHROPIC_API_KEY"),
    ("openai", "openai", "OpenAI", "OPENAI_API_KEY"),
    ("gemini", "gemini", "Google Gemini", "GEMINI_API_KEY"),
    ("ollama", "ollama", "Ollama", ""),
]


def seed(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    for name, kind, display_name, api_key_env in PROVIDERS:
        Provider.objects.get_or_create(
            name=name, defaults={"kind": kind, "display_name": display_name, "api_key_env": api_key_env}
        )


def unseed(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    Provider.objects.filter(name__in=[name for name, *_ in PROVIDERS]).delete()


class Migration(migrations.Migration):
    dependencies = [("providers", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
