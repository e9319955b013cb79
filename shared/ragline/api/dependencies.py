"""What routes get from the application, as ``Annotated`` dependencies: the container's services and
the authenticated caller. The one place that reads ``app.state``.

Declare the principal before the services in a route's parameters: FastAPI resolves dependencies
in order, so a request without a valid key is refused before a service (or the model it loads)
is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from ragline.activity import AuditTrail, UsageRecorder
from ragline.api.admission import TenantAdmission
from ragline.api.auth import api_key_header
from ragline.api.rate_limit import limited_principal
from ragline.chat.service import ChatService
from ragline.config import Settings
from ragline.container import Container
from ragline.ingest.service import IngestService
from ragline.ingest.uploads import UploadService
from ragline.insight.service import InsightService
from ragline.keys import KeyService, require_scope
from ragline.knowledge_bases import KnowledgeBaseService
from ragline.models import Principal, Scope
from ragline.retrieval.service import SearchService
from ragline.webhooks.service import WebhookService


def get_container(connection: HTTPConnection) -> Container:
    return connection.app.state.container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_admission(connection: HTTPConnection) -> TenantAdmission:
    """The server's per-tenant slots, which the WebSocket chat takes itself (no HTTP middleware sees it)."""
    return connection.app.state.admission


AdmissionDep = Annotated[TenantAdmission, Depends(get_admission)]


def require(scope: Scope, *alternatives: Scope) -> Callable[..., Principal]:
    """A dependency: the caller, if their key grants ``scope`` or one of ``alternatives`` (401 without a
    valid key, 429 over the key's rate limit, else 403)."""

    def dependency(request: Request, container: ContainerDep, key: str | None = Depends(api_key_header)) -> Principal:
        return require_scope(limited_principal(container, request, key), scope, *alternatives)

    return dependency


IngestPrincipal = Annotated[Principal, Depends(require(Scope.INGEST))]
SearchPrincipal = Annotated[Principal, Depends(require(Scope.SEARCH))]
ChatPrincipal = Annotated[Principal, Depends(require(Scope.CHAT))]
AdminPrincipal = Annotated[Principal, Depends(require(Scope.ADMIN))]
# Reading knowledge bases: a key that may search them or one that may fill them.
ReaderPrincipal = Annotated[Principal, Depends(require(Scope.SEARCH, Scope.INGEST))]


def get_settings(container: ContainerDep) -> Settings:
    return container.settings


def get_ingest_service(container: ContainerDep) -> IngestService:
    return container.ingest


def get_upload_service(container: ContainerDep) -> UploadService:
    return container.uploads


def get_search_service(container: ContainerDep) -> SearchService:
    return container.search


def get_chat_service(container: ContainerDep) -> ChatService:
    return container.chat


def get_webhook_service(container: ContainerDep) -> WebhookService:
    return container.webhooks


def get_key_service(container: ContainerDep) -> KeyService:
    return container.keys


def get_knowledge_base_service(container: ContainerDep) -> KnowledgeBaseService:
    return container.knowledge_bases


def get_usage(container: ContainerDep) -> UsageRecorder:
    return container.usage


def get_audit(container: ContainerDep) -> AuditTrail:
    return container.audit


def get_insight(container: ContainerDep) -> InsightService:
    return container.insight


def get_worker_wakeup(request: Request) -> Callable[[], None]:
    return request.app.state.notify_worker


SettingsDep = Annotated[Settings, Depends(get_settings)]
IngestServiceDep = Annotated[IngestService, Depends(get_ingest_service)]
UploadServiceDep = Annotated[UploadService, Depends(get_upload_service)]
SearchServiceDep = Annotated[SearchService, Depends(get_search_service)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]
KeyServiceDep = Annotated[KeyService, Depends(get_key_service)]
KnowledgeBaseServiceDep = Annotated[KnowledgeBaseService, Depends(get_knowledge_base_service)]
UsageDep = Annotated[UsageRecorder, Depends(get_usage)]
AuditDep = Annotated[AuditTrail, Depends(get_audit)]
InsightDep = Annotated[InsightService, Depends(get_insight)]
# Call after accepting documents: wakes the local worker at once (does nothing on Lambda).
WakeWorker = Annotated[Callable[[], None], Depends(get_worker_wakeup)]
