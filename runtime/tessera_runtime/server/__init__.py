"""The OpenAI-compatible HTTP server (aiohttp) in front of the CPU engine."""
