"""Insight function: /v1/queries* (history, ratings), /v1/analytics/* and the document statistics
routes through API Gateway (REST, Lambda proxy), FastAPI via Mangum. Reads the table's history
counters (no model); the statistics read a document's chunk payloads for its sections (no embedding)."""

from ragline.api.lambda_entry import api_function

function = api_function(("insight",))
container, handler = function.container, function.handler
