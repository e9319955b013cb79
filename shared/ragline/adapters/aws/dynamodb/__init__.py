"""Documents, jobs, API keys and held events in one DynamoDB table (see table.py for its layout);
``store.DynamoMetadataStore`` serves them all."""
