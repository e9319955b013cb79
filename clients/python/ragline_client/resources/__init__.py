"""The API's resources: each module builds its requests once and has a sync and an async class that send them."""
