"""Documents function: uploads (JSON text, multipart, presigned S3 URLs), list, get, delete, jobs,
knowledge bases (a delete sends its purge to the ingest queue), and /health, /health/detailed, through API Gateway (REST, Lambda proxy), FastAPI via Mangum.

Accepting a document stores it and enqueues a job on SQS for the ingest function: no embedding
here, so nothing heavy is built at init (uploads, deletes and /health/detailed build what they need).
"""

from ragline.api.lambda_entry import api_function

function = api_function(("documents", "knowledge_bases", "health"))
container, handler = function.container, function.handler
