"""Keys function: /v1/keys* (create, list, get, rotate, revoke, usage) and /v1/audit through API Gateway
(REST, Lambda proxy), FastAPI via Mangum. Only the table is touched: no model, no index."""

from ragline.api.lambda_entry import api_function

function = api_function(("keys",))
container, handler = function.container, function.handler
