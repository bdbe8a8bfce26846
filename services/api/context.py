"""What the API's service layer works with: the connections the app makes once.

The edges (JSON routes, UI pages, webhooks, the ``image.built`` consumer) receive
it and call the service functions (``*_service.py``) with it and the caller; none
reaches the stores on its own.
"""

from dataclasses import dataclass
from typing import Any

from shared.cluster.client import Clusters
from shared.cluster.live import Observer
from shared.messaging.bus import Bus
from shared.outside.registry import Registries
from shared.secrets import Secrets
from shared.settings import Settings
from shared.store.audit import Audit
from shared.store.catalog import Catalog
from shared.store.images import Images
from shared.store.mongo import Mongo
from shared.store.plans import Plans
from shared.store.releases import Releases
from shared.store.users import Users
from shared.templating.sandbox import Renderers


@dataclass(frozen=True)
class Api:
    settings: Settings
    mongo: Mongo
    catalog: Catalog
    releases: Releases
    plans: Plans
    bus: Bus
    clusters: Clusters
    registries: Registries
    images: Images
    users: Users
    audit: Audit
    # The watches a service's live state is read from.
    observer: Observer
    # The processes templates are rendered in, each render within its budget.
    renderers: Renderers
    # authlib's OAuth registry when OpenID Connect login is configured.
    oauth: Any = None

    @property
    def secrets(self) -> Secrets:
        """Seals and opens the secrets Fabu keeps (``FABU_SECRET_KEY``)."""
        return Secrets(self.settings.secret_key)
