"""Webhook delivery core: Standard Webhooks signing, the SSRF guard on endpoint URLs, and the retry schedule.

The HTTP sender that uses them lives in ``ragline.adapters.http_webhooks`` (the only place that talks to
endpoints); the service, storage, routes and dispatcher build on these modules.
"""
