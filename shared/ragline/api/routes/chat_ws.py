"""The WebSocket chat route (`ragline serve`): several questions over one connection, each answer streamed token by
token, cancellable. The protocol: ragline.chat.websocket; the connection: ragline.api.websocket_chat. Deployed, the
same protocol is API Gateway's WebSocket API (functions/chat_ws)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from ragline.api.dependencies import AdmissionDep, ContainerDep
from ragline.api.websocket_chat import ChatSocket

router = APIRouter(prefix="/v1/kb", tags=["search and chat"])


@router.websocket("/chat/ws")
async def chat_websocket(websocket: WebSocket, container: ContainerDep, admission: AdmissionDep) -> None:
    await ChatSocket(websocket, container, admission).serve()
