from django.apps import AppConfig


class McpServersConfig(AppConfig):
    name = "mcp_servers"
    verbose_name = "MCP servers"

    def ready(self) -> None:
        # The host and the config broadcast meet here, so that neither imports the other.
        from .broadcast import broadcast_handlers, listen_for_config_changes
        from .host import host_listen_with, host_reload_soon
        from .selectors import mcp_access_cache_clear

        host_listen_with(listen_for_config_changes)
        broadcast_handlers(forget=mcp_access_cache_clear, reload_here=host_reload_soon)
