"""DynamoMetadataStore: the AWS twin of SqliteMetadataStore over one table (table.py) — the
MetadataStore port (documents.py, keys.py), the KnowledgeBaseStore (knowledge_bases.py), the persistence side of the JobQueue (jobs.py; SQS
delivers, sqs_queue.py) and the EventOutbox of the AWS backend (outbox.py)."""

from __future__ import annotations

from ragline.adapters.aws.dynamodb.documents import DynamoDocuments
from ragline.adapters.aws.dynamodb.jobs import DynamoJobs
from ragline.adapters.aws.dynamodb.keys import DynamoApiKeys
from ragline.adapters.aws.dynamodb.knowledge_bases import DynamoKnowledgeBases
from ragline.adapters.aws.dynamodb.outbox import DynamoOutbox
from ragline.adapters.aws.dynamodb.table import TableAdapter


class DynamoMetadataStore(DynamoDocuments, DynamoJobs, DynamoApiKeys, DynamoOutbox, DynamoKnowledgeBases, TableAdapter):
    def ping(self) -> None:
        self.table.ping()
