"""DynamoMetadataStore: the AWS twin of SqliteMetadataStore over one table (table.py) — the
MetadataStore port (documents.py, keys.py), the KnowledgeBaseStore (knowledge_bases.py), the persistence side of the JobQueue (jobs.py; SQS
delivers, sqs_queue.py) and the EventOutbox of the AWS backend (outbox.py)."""

from __future__ import annotations

from typing import Any

from ragline.adapters.aws.dynamodb.documents import DynamoDocuments
from ragline.adapters.aws.dynamodb.jobs import DynamoJobs
from ragline.adapters.aws.dynamodb.keys import DynamoApiKeys
from ragline.adapters.aws.dynamodb.knowledge_bases import DynamoKnowledgeBases
from ragline.adapters.aws.dynamodb.outbox import DynamoOutbox
from ragline.adapters.aws.dynamodb.table import DEFAULT_TABLE_NAME, Table


class DynamoMetadataStore(DynamoDocuments, DynamoJobs, DynamoApiKeys, DynamoOutbox, DynamoKnowledgeBases):
    def __init__(
        self,
        table_name: str = DEFAULT_TABLE_NAME,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.table = Table(table_name, region=region, endpoint_url=endpoint_url, client=client)

    def ping(self) -> None:
        self.table.ping()
