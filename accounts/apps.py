from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _forget_keys(**_kwargs: object) -> None:
    from .selectors import api_key_cache_clear

    api_key_cache_clear()


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API keys"

    def ready(self) -> None:
        from . import schema  # noqa: F401  (registers the OpenAPI auth extension)

        # Kept key lookups carry their owner (limits, is_active): an edit in this process drops them at once,
        # whoever makes it (admin, shell, a service). Other processes follow within API_KEY_CACHE_SECONDS.
        for model_name in ("User", "ApiKey"):
            model = self.get_model(model_name)
            post_save.connect(_forget_keys, sender=model, dispatch_uid=f"api-key-cache-save-{model_name}")
            post_delete.connect(_forget_keys, sender=model, dispatch_uid=f"api-key-cache-delete-{model_name}")
