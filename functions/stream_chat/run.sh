#!/bin/bash
# Started by the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap, handler run.sh).
# The layer's packages are in /opt/python; the adapter proxies to 127.0.0.1:$PORT (default 8080)
# and waits for AWS_LWA_READINESS_CHECK_PATH (/health) before the first invocation.
PATH=$PATH:$LAMBDA_TASK_ROOT/bin \
    PYTHONPATH=$LAMBDA_TASK_ROOT:$PYTHONPATH:/opt/python \
    exec python -m uvicorn --host 127.0.0.1 --port "${PORT:-8080}" --workers 1 --no-access-log app:app
