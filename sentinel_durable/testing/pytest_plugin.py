"""pytest plugin (entry point ``sentinel_durable``): fixtures to test code that uses sentinel-durable.

Placeholder module so the entry point resolves; the fixtures are added in the ecosystem work.
"""
