"""The OpenAI- and Anthropic-compatible API under /v1: each front translates its wire shape to the engine's
turn and back (``openai``: chat completions; ``anthropic``: messages; ``catalog``: models); ``common`` holds
what they share."""
