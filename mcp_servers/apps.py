from django.apps import AppConfig


class McpServersConfig(AppConfig):
    name = "mcp_servers"
    verbose_name = "MCP servers"

    def ready(self) -> None:
        # The host meets the config broadcast and the users' credentials here, so that neither imports the other.
        from .broadcast import broadcast_handlers, listen_for_config_changes
        from .credentials import credentials_close_with
        from .host import host_close_user_connection_soon, host_listen_with, host_reload_soon
        from .selectors import mcp_access_cache_clear

        host_listen_with(listen_for_config_changes)
        broadcast_handlers(forget=mcp_access_cache_clear, reload_here=host_reload_soon)
        credentials_close_with(host_close_user_connection_soon)
