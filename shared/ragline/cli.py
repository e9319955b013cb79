"""`ragline serve | keys | ingest | search | ask | eval | bench` — settings also come from RAGLINE_* variables."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import socket
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from ragline.config import Settings
from ragline.errors import RaglineError

SKIP_NAMES = (".", "~")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    return Settings(**overrides)


def _console(stderr: bool = True) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _checkout_module(module: str, command: str) -> ModuleType:
    """A module of the checkout's tooling (ragline_bench, ragline_emulator): no deployment carries it."""
    package = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != package:
            raise
        raise RaglineError(
            f"{command} needs the {package} package, which comes with a source checkout (pip install -e .)",
            error="Configuration error",
        ) from None


def _refuse_a_taken_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RaglineError(
                f"cannot listen on {host}:{port} ({exc.strerror}): another program uses it. Choose another "
                f"port with --port or RAGLINE_PORT (and the address with --host or RAGLINE_HOST)",
                error="Configuration error",
            ) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ragline.api.app import create_app
    from ragline.container import build_container, get_container
    from ragline.keys import create_key

    if args.backend == "aws":
        emulator = _checkout_module("ragline_emulator.serve", "ragline serve --backend aws")
        emulator.emulate_aws(args.stack_name, data_dir=args.data_dir)
        if args.inbox is not None:
            print("--inbox is the local drop folder; on the aws backend drop files into s3://<bucket>/inbox/<tenant>/")
        settings = get_container().settings.model_copy(
            update={"host": args.host or "127.0.0.1", "port": args.port or 8000}
        )
        container = get_container().warm()
        build_background = emulator.background_services
    else:
        from ragline.background import background_services as build_background

        settings = _settings(args, host=args.host, port=args.port, inbox_dir=args.inbox)
        _refuse_a_taken_port(settings.host, settings.port)  # before the model loads, not after
        container = build_container(settings)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if container.store.count_keys() == 0:
        key, _ = create_key(container.store, "default")
        base = f"http://{settings.host}:{settings.port}"
        print("No API key existed, so one was made for tenant 'default'. It is shown only now:\n")
        print(f"  {key}\n")
        print("Try it:")
        print(f"  curl -s {base}/v1/kb/documents -H 'x-api-key: {key}' -F file=@README.md")
        print(
            f"  curl -s {base}/v1/kb/search -H 'x-api-key: {key}' -H 'content-type: application/json' "
            '-d \'{"query": "what is ragline"}\'\n',
            flush=True,
        )
    if settings.backend == "aws":
        print(f"Drop files into s3://{settings.documents_bucket}/inbox/<tenant_id>/ to ingest them.", flush=True)
    else:
        print(f"Drop files into {settings.inbox}/<tenant_id>/ to ingest them without an API call.", flush=True)
    app = create_app(container, background=build_background(container))
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    finally:
        container.close()
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from ragline.container import Container
    from ragline.keys import create_key, parse_scopes

    settings = _settings(args, backend=args.backend)
    container = Container(settings)  # only its metadata store is built: no model, no index
    key, record = create_key(
        container.store, args.tenant, parse_scopes(args.scopes), args.expires_in_days, name=args.name
    )
    if settings.backend == "aws" and settings.usage_plan_id:
        from ragline.adapters.aws.api_gateway import add_usage_plan_key

        add_usage_plan_key(settings.usage_plan_id, name=f"ragline-{record.tenant_id}-{record.id}", value=key)
        print(f"added to API Gateway usage plan {settings.usage_plan_id}", file=sys.stderr)
    print(key)
    print(
        f"created key {record.id} for tenant {record.tenant_id} ({', '.join(sorted(record.scopes))})", file=sys.stderr
    )
    return 0


def _key_container(args: argparse.Namespace) -> Any:
    from ragline.container import Container

    return Container(_settings(args, backend=args.backend))  # the stores only: no model, no index


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def cmd_keys_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ragline.keys import validate_tenant

    keys = _key_container(args).keys
    shown: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = keys.list(validate_tenant(args.tenant), limit=100, cursor=cursor)
        shown += keys.public_many(page)
        if cursor is None:
            break
    if args.json:
        _print_json(shown)
        return 0
    table = Table("id", "name", "prefix", "scopes", "created", "expires", "revoked", "last used")
    for key in shown:
        table.add_row(
            key["id"],
            key["name"] or "",
            key["prefix"],
            ",".join(key["scopes"]),
            key["created_at"],
            key["expires_at"] or "",
            key["revoked_at"] or "",
            key["last_used_at"] or "",
        )
    _console(stderr=False).print(table)
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    keys = _key_container(args).keys
    old = keys.find(args.key_id)
    secret, new = keys.rotate(old.tenant_id, old.id, args.grace_period_hours)
    print(secret)
    print(
        f"rotated {old.id} to {new.id}; the old key works for {args.grace_period_hours:g} more hours", file=sys.stderr
    )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    keys = _key_container(args).keys
    key = keys.find(args.key_id)
    revoked = keys.revoke(key.tenant_id, key.id)
    print(f"revoked {revoked.id} (tenant {revoked.tenant_id}) at {revoked.revoked_at}")
    return 0


def cmd_keys_usage(args: argparse.Namespace) -> int:
    container = _key_container(args)
    key = container.keys.find(args.key_id)
    usage = container.usage.usage(key.id, args.period_days)
    if args.json:
        print(usage.model_dump_json(indent=2))
        return 0
    print(f"key {key.id} (tenant {key.tenant_id}), the last {usage.period_days} days (since {usage.since})")
    print(f"  requests {usage.requests}, errors {usage.errors}, unique client IPs {usage.unique_ips}")
    tokens = usage.chat_tokens
    print(
        f"  chat tokens: {tokens.input_tokens} in, {tokens.output_tokens} out; last used {usage.last_used_at or 'never'}"
    )
    for route, count in usage.by_route.items():
        print(f"  {count:>8}  {route}")
    return 0


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(SKIP_NAMES) for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise RaglineError(f"{path} does not exist", error="Not found")
    return found


def cmd_model_build(args: argparse.Namespace) -> int:
    from ragline.adapters.local.model_build import build

    started = time.perf_counter()
    path, count = build(force=args.force)
    took = time.perf_counter() - started
    print(f"{path}: " + (f"built, {count} MatMuls in int8, {took:.1f} s" if count else "already built"))
    return 0


class IngestProgress:
    """`ragline ingest`'s progress: files done, and the current file's pages with pages/s and chunks/s
    over the whole run (embedding is what takes the time, so these move as each group is embedded).
    Drawn only on a terminal: piped or redirected output gets the final table alone."""

    def __init__(self, console: Any, files: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.files = self.progress.add_task("files", total=files, detail="")
        self.pages = self.progress.add_task("pages", total=None, detail="", visible=False)
        self.started = time.perf_counter()
        self.pages_done = 0  # of finished files
        self.chunks_done = 0
        self._current = (0, 0)

    def __enter__(self) -> IngestProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def start_file(self, name: str) -> None:
        self.pages_done, self.chunks_done = self.pages_done + self._current[0], self.chunks_done + self._current[1]
        self._current = (0, 0)
        self.progress.update(self.files, description=f"ingesting {name[:40]}")
        self.progress.update(self.pages, completed=0, total=None, visible=False)

    def rates(self) -> str:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        pages, chunks = self.pages_done + self._current[0], self.chunks_done + self._current[1]
        return f"{pages / seconds:.1f} pages/s  {chunks / seconds:.1f} chunks/s  ({chunks} chunks)"

    def __call__(self, doc: Any, pages: int, page_count: int, chunks: int) -> None:
        """IngestService's progress hook."""
        self._current = (pages, chunks)
        self.progress.update(self.pages, completed=pages, total=page_count or None, visible=True, detail=self.rates())

    def file_done(self) -> None:
        self.progress.update(self.files, advance=1, detail=self.rates())


def _local_tenant(args: argparse.Namespace) -> str:
    if not args.tenant:
        raise RaglineError(f"ragline {args.command} needs --tenant (or --url and --api-key to use a server)")
    return str(args.tenant)


def _remote(args: argparse.Namespace) -> Any:
    """The server of --url/--api-key (or RAGLINE_URL/RAGLINE_API_KEY), or None to work on the local data dir."""
    from ragline.remote import remote_target

    remote = remote_target(args.url, args.api_key, args.data_dir)
    if remote is not None and args.tenant:
        raise RaglineError("with --url the API key's tenant is used: leave out --tenant")
    return remote


def cmd_ingest(args: argparse.Namespace) -> int:
    remote = _remote(args)
    if remote is not None:
        return _ingest_remote(args, remote)
    from ragline.container import build_container
    from ragline.models import DocumentStatus

    args.tenant = _local_tenant(args)
    settings = _settings(args)
    files = _files(args.paths)
    console = _console()
    container = build_container(settings, snapshot_interval_seconds=0)
    results: list[tuple[str, str, str]] = []
    try:
        with IngestProgress(console, len(files)) as progress:
            container.ingest.progress = progress
            for path in files:
                progress.start_file(path.name)
                try:
                    accepted = container.ingest.accept(
                        args.tenant,
                        path.read_bytes(),
                        filename=path.name,
                        source="cli",
                        metadata=json.loads(args.metadata) if args.metadata else None,
                    )
                except RaglineError as exc:
                    results.append((str(path), "rejected", exc.message))
                    progress.file_done()
                    continue
                doc = accepted.document
                if accepted.duplicate:
                    results.append((str(path), f"duplicate of {doc.id}", doc.status.value))
                else:
                    job = container.store.claim(accepted.job_id)
                    if job is not None:
                        container.ingest.process(job)
                    # Another process (a running server) may have claimed it: wait for the outcome.
                    while (doc := container.store.get_document(args.tenant, doc.id)) and doc.status in (
                        DocumentStatus.QUEUED,
                        DocumentStatus.PROCESSING,
                    ):
                        time.sleep(0.2)
                    if doc is None:
                        results.append((str(path), "deleted", ""))
                    else:
                        results.append((str(path), doc.status.value, doc.error or f"{doc.chunk_count} chunks"))
                progress.file_done()
    finally:
        container.close()
    return _ingest_summary(console, results, progress)


def _ingest_summary(console: Any, results: list[tuple[str, str, str]], progress: IngestProgress) -> int:
    from rich.table import Table

    table = Table("file", "status", "detail")
    for row in results:
        table.add_row(*row)
    console.print(table)
    indexed = sum(1 for _, status, _ in results if status == "indexed")
    failed = sum(1 for _, status, _ in results if status in ("failed", "rejected"))
    duplicates = sum(1 for _, status, _ in results if status.startswith("duplicate"))
    console.print(f"indexed {indexed}, failed {failed}, duplicates {duplicates}, of {len(results)} files")
    console.print(f"[dim]{progress.rates()} over {time.perf_counter() - progress.started:.1f} s[/]")
    return 1 if failed else 0


def _ingest_remote(args: argparse.Namespace, remote: Any) -> int:
    """Every file uploaded to the server first (it indexes while the rest upload), then each awaited."""
    from ragline.remote import connect, one_line_errors, sdk

    files = _files(args.paths)
    metadata = json.loads(args.metadata) if args.metadata else None
    console = _console()
    results: dict[Path, tuple[str, str, str]] = {}
    waiting: list[tuple[Path, str]] = []
    with connect(remote) as client, one_line_errors(remote.url, key_needs="the ingest scope"):
        with IngestProgress(console, len(files)) as progress:
            for path in files:
                progress.start_file(path.name)
                try:
                    accepted = client.documents.upload(path, metadata=metadata)
                except sdk().APIStatusError as exc:
                    if exc.status_code in (401, 403) or exc.status_code >= 500:
                        raise  # the key or the server, not this file: stop here
                    results[path] = (str(path), "rejected", exc.message)
                    progress.file_done()
                    continue
                if accepted.duplicate:
                    results[path] = (str(path), f"duplicate of {accepted.document_id}", accepted.document_status or "")
                    progress.file_done()
                else:
                    waiting.append((path, accepted.document_id))
            for path, document_id in waiting:
                progress.start_file(path.name)
                try:
                    doc = client.documents.wait(document_id, timeout=args.wait_timeout)
                except sdk().NotFoundError:
                    results[path] = (str(path), "deleted", "")
                else:
                    progress(doc, doc.page_count, doc.page_count, doc.chunk_count)
                    results[path] = (str(path), doc.status, doc.error or f"{doc.chunk_count} chunks")
                progress.file_done()
    return _ingest_summary(console, [results[path] for path in files], progress)


def cmd_search(args: argparse.Namespace) -> int:
    from rich.table import Table

    filters = json.loads(args.filters)
    remote = _remote(args)
    if remote is not None:
        from ragline.remote import connect, one_line_errors

        with connect(remote) as client, one_line_errors(remote.url, key_needs="the search scope"):
            result: Any = client.search(args.query, limit=args.limit, mode=args.mode, filters=filters)
    else:
        from ragline.container import build_container
        from ragline.models import SearchRequest

        tenant = _local_tenant(args)
        container = build_container(_settings(args), snapshot_interval_seconds=0)
        try:
            result = container.search.search(
                tenant, SearchRequest(query=args.query, limit=args.limit, mode=args.mode, filters=filters)
            )
        finally:
            container.close()
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    table = Table("score", "document", "page", "text")
    for hit in result.items:
        payload = hit.payload if isinstance(hit.payload, dict) else hit.payload.model_dump()
        table.add_row(
            f"{hit.score:.3f}",
            str(payload.get("title") or payload.get("filename") or payload.get("document_id")),
            str(payload.get("page") or ""),
            payload["text"][:160].replace("\n", " "),
        )
    _console(stderr=False).print(table)
    print(f"{result.total_found} found in {result.latency_ms} ms")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    remote = _remote(args)
    if remote is not None:
        return _ask_remote(args, remote)
    from ragline.container import build_container
    from ragline.models import ChatRequest

    tenant = _local_tenant(args)
    container = build_container(_settings(args), snapshot_interval_seconds=0)
    try:
        response = container.chat.answer(tenant, ChatRequest(query=args.query, limit=args.limit))
    finally:
        container.close()
    if args.json:
        print(response.model_dump_json(indent=2))
        return 0
    print(response.answer)
    _print_citations(response.sources, response.model, response.latency_ms)
    return 0


def _print_citations(sources: list[Any], model: str | None, latency_ms: float | None) -> None:
    print()
    for number, source in enumerate(sources, start=1):
        where = source.title or source.filename or source.document_id
        page = f", page {source.page}" if source.page else ""
        print(f"[{number}] {where}{page} (score {source.score:.3f})")
    print(f"\n({model}, {latency_ms} ms)")


def _ask_remote(args: argparse.Namespace, remote: Any) -> int:
    """The whole answer as JSON with --json; else streamed to the terminal as it is written."""
    from ragline.remote import connect, one_line_errors, sdk

    with connect(remote) as client, one_line_errors(remote.url, key_needs="the chat scope"):
        if args.json:
            print(client.chat(args.query, limit=args.limit).model_dump_json(indent=2))
            return 0
        with client.chat.stream(args.query, limit=args.limit) as stream:
            for event in stream:
                if isinstance(event, sdk().MessageEvent):
                    print(event.content, end="", flush=True)
                elif isinstance(event, sdk().ErrorEvent):
                    print()
                    raise RaglineError(f"{remote.url} stopped answering: {event.message}")
    print()
    done = stream.done
    _print_citations(stream.sources, done.model if done else None, done.latency_ms if done else None)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Golden questions against a server or a data dir; exit 1 when a metric fell more than --max-drop."""
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ragline import evaluation

    golden = evaluation.load_golden(args.golden)
    baseline = evaluation.load_baseline(args.baseline) if args.baseline else None
    url = args.url or os.environ.get("RAGLINE_URL")
    api_key = args.api_key or os.environ.get("RAGLINE_API_KEY")
    if url and args.data_dir is None:
        if not api_key:
            raise evaluation.EvalError("--url needs --api-key (or RAGLINE_API_KEY)")
        runner: Any = evaluation.HttpRunner(url, api_key)
        target, close = url, runner.close
    else:
        if not args.tenant:
            raise evaluation.EvalError("--data-dir needs --tenant (or give --url and --api-key)")
        from ragline.container import build_container

        container = build_container(_settings(args), snapshot_interval_seconds=0)
        runner = evaluation.LocalRunner(container.search, container.chat, args.tenant)
        target, close = f"{container.settings.data_dir} (tenant {args.tenant})", container.close
    console = _console()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,  # a CI log gets the tables, not a bar's redraws
        ) as progress:
            task = progress.add_task("asking", total=len(golden))
            report = evaluation.evaluate(
                runner, golden, k=args.k, target=target, progress=lambda n: progress.update(task, completed=n)
            )
    finally:
        close()
    out = _console(stderr=False)
    table = Table("question", "doc rank", "page@5", "fragment", "abstained", "confidence", title="per question")
    for result in report.questions:
        table.add_row(
            result.question[:70],
            _cell(result.rank, "-"),
            _cell(result.page_hit),
            _cell(result.fragment_hit),
            ("yes" if result.abstained else "no") + (" (expected)" if result.expect_no_answer else ""),
            _cell(result.confidence),
        )
    out.print(table)
    metrics = Table("metric", "value", *(["baseline", "change"] if baseline else []), title=f"{target}, k={args.k}")
    for name in evaluation.METRICS:
        value = report.metrics[name]
        row = [name.replace("_at_k", f"@{args.k}"), _cell(value)]
        if baseline:
            before = baseline["metrics"].get(name)
            change = "" if value is None or not isinstance(before, (int, float)) else f"{value - before:+.4f}"
            row += [_cell(before), change]
        metrics.add_row(*row)
    out.print(metrics)
    failed: dict[str, float] = {}
    if baseline:
        changes = evaluation.question_changes(report, baseline)
        if changes:
            diff = Table("question", "changed", "baseline", "now", title="per-question differences")
            for question, what, before, now in changes:
                diff.add_row(question[:70], what, before, now)
            out.print(diff)
        failed = {
            m: d for m, d in evaluation.metric_drops(report.metrics, baseline["metrics"]).items() if d > args.max_drop
        }
        for name, drop in failed.items():
            out.print(f"[red]{name} dropped by {drop:.4f} (more than --max-drop {args.max_drop})[/]")
    args.out.write_text(json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"report written to {args.out}")
    return 1 if failed else 0


def _cell(value: object, none: str = "") -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, default=None, help="where Ragline keeps its data (default ./.ragline)")

    serve = sub.add_parser("serve", help="run the HTTP API with the ingest worker and the inbox watcher")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 8000")
    serve.add_argument("--inbox", type=Path, default=None, help="drop folder (default <data-dir>/inbox)")
    serve.add_argument(
        "--backend",
        choices=["local", "aws"],
        default="local",
        help="aws: DynamoDB, S3, SQS and SNS on the emulator at AWS_ENDPOINT_URL, created from template.yaml",
    )
    serve.add_argument("--stack-name", default="ragline-local", help="names the emulated resources (aws backend)")
    data_dir(serve)
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints only the key on stdout")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", default=None, help="comma-separated: ingest,search,chat,admin (default all)")
    create.add_argument("--expires-in-days", type=int, default=None)
    create.add_argument("--name", default=None, help="a label for the key (shown in lists)")

    def backend(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--backend",
            choices=["local", "aws"],
            default=None,
            help="aws: the DynamoDB table named by RAGLINE_TABLE_NAME",
        )

    backend(create)
    data_dir(create)
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="a tenant's keys (never their secrets)")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--json", action="store_true")
    rotate = keys_sub.add_parser("rotate", help="a new secret for a key (printed alone on stdout)")
    rotate.add_argument("key_id")
    rotate.add_argument(
        "--grace-period-hours", type=float, default=24.0, help="how long the old secret keeps working (default 24)"
    )
    revoke = keys_sub.add_parser("revoke", help="refuse a key from its next request")
    revoke.add_argument("key_id")
    usage = keys_sub.add_parser("usage", help="what a key did")
    usage.add_argument("key_id")
    usage.add_argument("--period-days", type=int, default=30, choices=range(1, 91), metavar="1..90")
    usage.add_argument("--json", action="store_true")
    for command, func in (
        (listing, cmd_keys_list),
        (rotate, cmd_keys_rotate),
        (revoke, cmd_keys_revoke),
        (usage, cmd_keys_usage),
    ):
        backend(command)
        data_dir(command)
        command.set_defaults(func=func)

    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=None, help="run against this server (or RAGLINE_URL) through the SDK")
        p.add_argument("--api-key", default=None, help="with --url: the key (or RAGLINE_API_KEY); its tenant is used")

    ingest = sub.add_parser("ingest", help="ingest files or folders for a tenant (or upload them to --url)")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--tenant", default=None, help="whose documents (local mode)")
    ingest.add_argument("--metadata", default=None, help="JSON object stored with every file")
    ingest.add_argument(
        "--wait-timeout", type=float, default=600.0, help="with --url: seconds to wait for each file (default 600)"
    )
    remote(ingest)
    data_dir(ingest)
    ingest.set_defaults(func=cmd_ingest)

    search = sub.add_parser("search", help="search a tenant's documents")
    search.add_argument("query")
    search.add_argument("--tenant", default=None, help="whose documents (local mode)")
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--mode", choices=["hybrid", "semantic", "keyword"], default="hybrid")
    search.add_argument("--filters", default="{}", help="JSON filter object")
    search.add_argument("--json", action="store_true")
    remote(search)
    data_dir(search)
    search.set_defaults(func=cmd_search)

    ask = sub.add_parser("ask", help="ask a question; get a cited answer")
    ask.add_argument("query")
    ask.add_argument("--tenant", default=None, help="whose documents (local mode)")
    ask.add_argument("--limit", type=int, default=None)
    ask.add_argument("--json", action="store_true")
    remote(ask)
    data_dir(ask)
    ask.set_defaults(func=cmd_ask)

    evaluate = sub.add_parser(
        "eval",
        help="run a golden question set (JSONL) and print retrieval, answer and abstention metrics",
        description="Each line: {question, expected_document?, expected_page?, expected_fragment?, expect_no_answer?}.",
    )
    evaluate.add_argument("golden", type=Path, help="the golden set, JSONL")
    evaluate.add_argument("--url", default=None, help="a server (or RAGLINE_URL); else --data-dir and --tenant")
    evaluate.add_argument("--api-key", default=None, help="a key with search and chat scopes (or RAGLINE_API_KEY)")
    evaluate.add_argument("--tenant", default=None, help="with --data-dir: whose documents")
    evaluate.add_argument(
        "--out", type=Path, default=Path("eval-report.json"), help="JSON report (default ./eval-report.json)"
    )
    evaluate.add_argument("--baseline", type=Path, default=None, help="an earlier report to compare with")
    evaluate.add_argument(
        "--max-drop", type=float, default=0.02, help="exit 1 when a metric fell more than this (default 0.02)"
    )
    evaluate.add_argument(
        "--k", type=int, default=10, help="depth of recall@k (1-10, default 10)", choices=range(1, 11), metavar="K"
    )
    data_dir(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    model = sub.add_parser("model", help="the local embedding model")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    model_build = model_sub.add_parser(
        "build",
        help="make the int8-compute variant of the bundled model (run by make dev / make test; seconds)",
    )
    model_build.add_argument("--force", action="store_true", help="rebuild even when it is already there")
    model_build.set_defaults(func=cmd_model_build)

    from ragline.reindex import add_parser as add_reindex_parser

    add_reindex_parser(sub)
    _add_bench_parser(sub)
    return parser


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    try:
        bench_cli = _checkout_module("ragline_bench.cli", "ragline bench")
    except RaglineError as missing:
        # Still a subcommand, so `ragline bench ...` says what is missing instead of "invalid choice".
        def fail(args: argparse.Namespace, error: RaglineError = missing) -> int:
            raise error

        bench = sub.add_parser("bench", help="benchmarks (a source checkout's)")
        bench.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        bench.set_defaults(func=fail)
        return
    bench_cli.add_bench_parser(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RaglineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
