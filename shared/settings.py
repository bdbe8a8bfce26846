"""Settings, read once from the environment (``FABU_*``) by each service's main."""

from functools import cached_property

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.outside.egress import Deny
from shared.outside.registry import RegistryAccess


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FABU_", extra="ignore")

    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "fabu"
    # Connections per process: every operation is one short single-document call.
    mongo_pool: int = Field(default=16, ge=1)
    nats_url: str = "nats://127.0.0.1:4222"
    nats_prefix: str = ""
    # Image registries by host ("harbor.example.com", "127.0.0.1:5000"): their
    # URL (default https://<host>) and credentials, as JSON.
    registries: dict[str, RegistryAccess] = Field(default_factory=dict)
    public_url: str = "http://127.0.0.1:8000"

    # Where this process serves /healthz and /metrics (workers) or the API.
    http_host: str = "127.0.0.1"
    http_port: int = 0

    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "fabu@localhost"
    smtp_username: str = ""
    smtp_password: str = Field(default="", repr=False)
    smtp_tls: bool = False
    smtp_starttls: bool = False
    # A CA bundle to verify the SMTP server's certificate (default: the system's).
    smtp_ca_file: str = ""

    # How long a stage may hold a message before JetStream redelivers it to a
    # replica; trackers keep theirs alive while the rollout runs.
    ack_wait_s: float = 30.0
    max_in_flight: int = Field(default=256, ge=1)
    # After SIGTERM, how long a stage lets what it is handling finish before it
    # hands the rest back to JetStream for another replica: below the pod's
    # termination grace period (the chart's 60 s), so nothing is killed mid-write.
    shutdown_s: float = Field(default=45.0, gt=0)
    # An unreachable cluster is tried again after this long, then twice as long
    # each time up to five times this, eight times in all (3 s: over 96 s, which
    # rides out an API server restart) before the release fails.
    apply_retry_s: float = Field(default=3.0, gt=0)

    # GitLab, where shared templates live: its URL, a token that can read the
    # template projects, and the secret its webhooks send (X-Gitlab-Token).
    gitlab_url: str = ""
    gitlab_token: str = Field(default="", repr=False)
    gitlab_webhook_token: str = Field(default="", repr=False)
    # The secret Harbor sends in Authorization with its webhooks.
    harbor_webhook_secret: str = Field(default="", repr=False)
    # The key that seals secrets at rest (notification URLs and secrets): a
    # Fernet key, 32 url-safe base64-encoded bytes. Without it none can be stored.
    secret_key: str = Field(default="", repr=False)
    # A notification claimed longer ago than this is taken to be from a
    # notifier that died mid-send: recorded "unknown", not sent again.
    notify_claim_stale_s: float = Field(default=60.0, gt=0)

    # The first start, with no users yet, creates ``admin`` with this password
    # (or a generated one, printed once on the API's standard output).
    admin_password: str = Field(default="", repr=False)
    # How long a browser login lasts.
    session_hours: float = Field(default=12.0, gt=0)
    # How long a process keeps what it read of users, tokens, sessions, environments,
    # services, configs and channels (``shared.store.kept``): a change drops it at once
    # in every process (a NATS notice), or after this long when the notice is lost.
    # 0 asks the database every time.
    kept_s: float = Field(default=5.0, ge=0, le=60)
    # How often each API replica starts the release plans whose time has come and steps
    # the running ones (a schedule fires within about this long of its time).
    plan_tick_s: float = Field(default=1.0, gt=0, le=60)
    # The Prometheus that analysis templates query (its HTTP API, e.g.
    # http://prometheus.monitoring:9090). Empty: every analysis is inconclusive, so a
    # step that names one waits for a person.
    prometheus_url: str = ""
    # How long one Prometheus query may take before its measurement is inconclusive.
    prometheus_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Logins refused (429) for a user name, or from a client address, that failed
    # this many times within the window; a success clears the user's count.
    login_attempts: int = Field(default=10, ge=1)
    login_window_s: float = Field(default=300.0, gt=0)
    # OpenID Connect login (GitLab as the identity provider) when the issuer is
    # set: e.g. https://gitlab.example.com with an application's id and secret.
    # New users who sign in this way are viewers until an admin grants more.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = Field(default="", repr=False)

    # Addresses Fabu never connects to when someone else named them (notification
    # URLs, registries' token realms and pages, the identity provider, Git and
    # GitLab remotes): comma-separated CIDRs and the words loopback, private,
    # link-local and metadata (see shared/egress.py). Empty: none denied.
    egress_deny: str = ""
    # The transports a Git template source may use: git's protocol names
    # (https, ssh, http, git, file), comma-separated.
    git_protocols: str = "https,ssh"
    # The directory every environment's kubeconfig must be in (a name relative to
    # it, or a path inside it). Empty: no kubeconfig files, only in_cluster.
    kubeconfig_dir: str = ""

    # What one template render may spend (in a worker process: see shared/budget.py),
    # how many render processes each API and renderer process keeps, and what one
    # manifest may be.
    render_cpu_s: float = Field(default=2.0, gt=0, le=60)
    render_memory_mib: int = Field(default=256, ge=16, le=8192)
    render_workers: int = Field(default=2, ge=1, le=64)
    manifest_max_objects: int = Field(default=250, ge=1, le=100_000)
    manifest_max_chars: int = Field(default=2_000_000, ge=1000, le=50_000_000)

    @field_validator("egress_deny")
    @classmethod
    def _deny(cls, value: str) -> str:
        Deny.parse(value)
        return value

    @field_validator("gitlab_url", "oidc_issuer", "prometheus_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("give an http:// or https:// address")
        return value

    @field_validator("git_protocols")
    @classmethod
    def _protocols(cls, value: str) -> str:
        known = {"https", "ssh", "http", "git", "file"}
        given = {p.strip() for p in value.split(",") if p.strip()}
        if not given <= known:
            raise ValueError(
                f"unknown git protocol(s) {sorted(given - known)}; known: {sorted(known)}"
            )
        return ",".join(sorted(given))

    @cached_property
    def deny(self) -> Deny:
        return Deny.parse(self.egress_deny)
