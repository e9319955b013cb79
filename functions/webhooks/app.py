"""Webhooks function: a tenant's endpoints, secret rotation, test events and the delivery log
(``/v1/webhooks…``) through API Gateway (REST, Lambda proxy), FastAPI via Mangum.

Creating a test event or a redelivery stores the delivery and sends its message to the webhook
deliveries queue; the webhook dispatcher function makes the attempt. Nothing heavy is built at init.
"""

from ragline.api.lambda_entry import api_function

function = api_function(("webhooks",))
container, handler = function.container, function.handler
