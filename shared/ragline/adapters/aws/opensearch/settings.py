"""OpenSearchSettings: the adapter's typed view of the global settings, checked to be usable."""

from __future__ import annotations

from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

from ragline.adapters.aws.opensearch import queries as q
from ragline.config import Settings
from ragline.errors import RaglineError

AuthMode = Literal["none", "basic", "sigv4-es", "sigv4-aoss"]
IndexLayout = Literal["shared", "per_tenant"]
T = TypeVar("T")


class OpenSearchConfigError(RaglineError):
    error = "OpenSearch misconfigured"


def _first(override: T | None, default: T) -> T:
    return default if override is None else override


def _global_default(name: str) -> Any:
    return Settings.model_fields[name].default


class OpenSearchSettings(BaseModel):
    """What the OpenSearch adapter needs: a view of the global ``Settings`` (``from_settings``).

    The environment is read once, by ``ragline.config.Settings`` (``OPENSEARCH_URL`` and
    ``RAGLINE_OPENSEARCH_*``); this model only checks that the combination is usable. Tests and
    tools build it directly.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    # None: "basic" when the URL or username carries credentials, else "none".
    auth_mode: AuthMode | None = None
    username: str | None = None
    password: SecretStr | None = None
    region: str | None = None
    # Defaults and bounds live once, in Settings (which validates what the environment says).
    verify_certs: bool = _global_default("opensearch_verify_certs")
    timeout_seconds: float = _global_default("opensearch_timeout_seconds")
    write_timeout_seconds: float = _global_default("opensearch_write_timeout_seconds")

    index_alias: str = _global_default("opensearch_index_alias")
    index_version: int = _global_default("opensearch_index_version")
    index_layout: IndexLayout = _global_default("opensearch_index_layout")
    max_tenant_indices: int = _global_default("opensearch_max_tenant_indices")
    shards: int = _global_default("opensearch_shards")
    replicas: int = _global_default("opensearch_replicas")
    space_type: q.SpaceType = _global_default("opensearch_space_type")
    hnsw_m: int = _global_default("hnsw_m")
    hnsw_ef_construction: int = _global_default("hnsw_ef_construction")
    hnsw_ef_search: int = _global_default("hnsw_ef_search")

    bulk_max_actions: int = _global_default("opensearch_bulk_max_actions")
    bulk_max_bytes: int = _global_default("opensearch_bulk_max_bytes")
    retry_attempts: int = _global_default("opensearch_retry_attempts")
    retry_initial_delay_seconds: float = _global_default("opensearch_retry_initial_delay_seconds")
    retry_max_delay_seconds: float = _global_default("opensearch_retry_max_delay_seconds")
    verify_attempts: int = _global_default("opensearch_verify_attempts")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> OpenSearchSettings:
        """The OpenSearch block of the global settings; HNSW parameters fall back to the
        engine-wide values, so one setting tunes both engines."""
        if not settings.opensearch_url:
            raise OpenSearchConfigError("OPENSEARCH_URL is not set")
        s = settings
        values: dict[str, Any] = {
            "url": s.opensearch_url,
            "auth_mode": s.opensearch_auth_mode,
            "username": s.opensearch_username,
            "password": s.opensearch_password,
            "region": s.opensearch_region,
            "verify_certs": s.opensearch_verify_certs,
            "timeout_seconds": s.opensearch_timeout_seconds,
            "write_timeout_seconds": s.opensearch_write_timeout_seconds,
            "index_alias": s.opensearch_index_alias,
            "index_version": s.opensearch_index_version,
            "index_layout": s.opensearch_index_layout,
            "max_tenant_indices": s.opensearch_max_tenant_indices,
            "shards": s.opensearch_shards,
            "replicas": s.opensearch_replicas,
            "space_type": s.opensearch_space_type,
            "hnsw_m": _first(s.opensearch_hnsw_m, s.hnsw_m),
            "hnsw_ef_construction": _first(s.opensearch_hnsw_ef_construction, s.hnsw_ef_construction),
            "hnsw_ef_search": _first(s.opensearch_hnsw_ef_search, s.hnsw_ef_search),
            "bulk_max_actions": s.opensearch_bulk_max_actions,
            "bulk_max_bytes": s.opensearch_bulk_max_bytes,
            "retry_attempts": s.opensearch_retry_attempts,
            "retry_initial_delay_seconds": s.opensearch_retry_initial_delay_seconds,
            "retry_max_delay_seconds": s.opensearch_retry_max_delay_seconds,
            "verify_attempts": s.opensearch_verify_attempts,
        }
        try:
            return cls(**{**values, **overrides})
        except ValidationError as exc:
            raise OpenSearchConfigError(f"OpenSearch settings: {exc}") from exc

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("OPENSEARCH_URL must look like https://host:9200")
        return url

    @model_validator(mode="after")
    def _auth_is_complete(self) -> OpenSearchSettings:
        credentials_in_url = bool(urlsplit(self.url).username)
        mode = self.resolved_auth_mode
        if mode == "basic" and not (credentials_in_url or (self.username and self.password)):
            raise ValueError("basic auth needs user:password in OPENSEARCH_URL or RAGLINE_OPENSEARCH_USERNAME/PASSWORD")
        if mode != "basic" and (credentials_in_url or self.username):
            raise ValueError(f"credentials are set but RAGLINE_OPENSEARCH_AUTH_MODE is {mode!r}")
        if mode.startswith("sigv4") and not self.region:
            raise ValueError("SigV4 needs a region: set RAGLINE_OPENSEARCH_REGION or AWS_REGION")
        return self

    @model_validator(mode="after")
    def _tenant_index_names_fit(self) -> OpenSearchSettings:
        if self.per_tenant:
            if self.serverless:
                raise ValueError("RAGLINE_OPENSEARCH_INDEX_LAYOUT=per_tenant needs a managed cluster, not Serverless")
            if len(self.index_alias) > q.MAX_TENANT_ALIAS_PREFIX:
                raise ValueError(
                    f"RAGLINE_OPENSEARCH_INDEX_ALIAS is {len(self.index_alias)} characters: with "
                    f"per_tenant it may have at most {q.MAX_TENANT_ALIAS_PREFIX} (index names are <= 255 bytes)"
                )
        return self

    @property
    def per_tenant(self) -> bool:
        return self.index_layout == "per_tenant"

    @property
    def resolved_auth_mode(self) -> AuthMode:
        if self.auth_mode is not None:
            return self.auth_mode
        return "basic" if urlsplit(self.url).username or self.username else "none"

    @property
    def serverless(self) -> bool:
        return self.resolved_auth_mode == "sigv4-aoss"

    @property
    def index_name(self) -> str:
        return f"{self.index_alias}-v{self.index_version}"
