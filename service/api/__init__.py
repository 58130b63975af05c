"""The HTTP service: JSON API, OpenAI-compatible chat, MCP tools and a small web page."""

from citeqa.service.api.app import create_app

__all__ = ["create_app"]
