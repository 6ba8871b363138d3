"""The REST API: the aiohttp app, its routes, views, OpenAPI document, rate limits and web page."""
