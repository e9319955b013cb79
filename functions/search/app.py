"""Search function: POST /v1/kb/search through API Gateway (REST, Lambda proxy), FastAPI via Mangum.

The embedding model loads and the index opens during init, which Lambda runs at full CPU.
"""

from ragline.api.lambda_entry import api_function

function = api_function(("search",), build_at_init=("search",))
container, handler = function.container, function.handler
