"""The AWS side of a source checkout, run locally: `ragline serve --backend aws` and the tests.

It provisions template.yaml's storage and messaging on an emulator (moto, LocalStack), runs the Lambda
functions of functions/ as their event sources and schedules would, and fakes Anthropic's Messages
API. It reads the checkout by path, so no Lambda layer carries it (CoreLayer ships shared/ragline only).
"""
