from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _clear_cache(**_kwargs: object) -> None:
    from .selectors import provider_cache_clear

    provider_cache_clear()


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "LLM providers"

    def ready(self) -> None:
        # Rows are edited in admin, the shell or a migration: the ORM's signals are the one hook all share.
        for model_name in ("Provider", "ProviderModel"):
            model = self.get_model(model_name)
            post_save.connect(_clear_cache, sender=model, dispatch_uid=f"provider-cache-save-{model_name}")
            post_delete.connect(_clear_cache, sender=model, dispatch_uid=f"provider-cache-delete-{model_name}")
