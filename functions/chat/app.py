"""Chat function: POST /v1/kb/chat (the buffered answer) through API Gateway (REST, Lambda proxy),
FastAPI via Mangum. Chat searches first: the model, the index and the Claude client are built at init.
"""

from ragline.api.lambda_entry import api_function

function = api_function(("chat",), build_at_init=("chat",))
container, handler = function.container, function.handler
