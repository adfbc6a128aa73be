from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


def _clear_alias_cache(**_kwargs: object) -> None:
    from .fronts.common import model_alias_cache_clear

    model_alias_cache_clear()


class ChatsConfig(AppConfig):
    name = "chats"
    verbose_name = "Chats"

    def ready(self) -> None:
        # The /v1 model aliases are cached per process: an edit here is seen at once (other workers within
        # CONFIG_CACHE_SECONDS), as for providers.
        from .models import ModelAlias

        post_save.connect(_clear_alias_cache, sender=ModelAlias, dispatch_uid="model-alias-cache-save")
        post_delete.connect(_clear_alias_cache, sender=ModelAlias, dispatch_uid="model-alias-cache-delete")
        m2m_changed.connect(
            _clear_alias_cache, sender=ModelAlias.mcp_servers.through, dispatch_uid="model-alias-cache-servers"
        )
