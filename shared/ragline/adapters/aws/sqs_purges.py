"""Knowledge-base purges on AWS: one message on the ingest queue per deleted knowledge base. The
ingest function runs the purge (ragline.ingest.messages); a purge cut short fails its message, and
SQS delivers it again after the visibility timeout (then to the dead-letter queue after
``ingest_max_receives``: the KB stays `deleting`, hidden from search, and an operator re-drives it)."""

from __future__ import annotations

import json
from typing import Any

from ragline.adapters.aws import clients
from ragline.ingest.messages import KB_PURGE_KIND, kb_purge_message


class SqsPurgeScheduler:
    def __init__(
        self, queue_url: str, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        self.queue_url = queue_url
        self._client = clients.ServiceClient("sqs", region=region, endpoint_url=endpoint_url, given=client)

    def schedule(self, tenant_id: str, kb_id: str) -> None:
        with clients.unavailable_when_down("the ingest queue (SQS)"):
            self._client().send_message(
                QueueUrl=self.queue_url,
                MessageBody=json.dumps(kb_purge_message(tenant_id, kb_id), separators=(",", ":")),
                MessageAttributes={"kind": {"DataType": "String", "StringValue": KB_PURGE_KIND}},
            )
