"""The data of the Secrets and ConfigMaps that LangfuseTracings reference, and of nothing else.

Why not kopf indices of every Secret and ConfigMap: those keep the data of every object of the
watched namespaces (with ``clusterWide``, of the whole cluster) in the operator's memory,
whether a resource reads it or not; 5,000 Secrets of 8 KB are some 55 MB of base64 in a pod
limited to 256 Mi. Here an object's data is held only while a resource references it (the
``lft_references`` index of ``handlers`` says which):

* the watch (``observe``) updates a referenced object's entry, before its handler wakes the
  resources that read it, and drops an unreferenced one's: its body is not kept past the event;
* a pass first awaits ``prefetch``: what its spec references and the cache does not hold yet
  is read once from the API (a resource created after its Secret, whose event came while
  nothing referenced it; an operator start, where the Secret watch may not have listed it yet),
  and from then on the watch keeps it up to date. An object that does not exist is kept as
  absent, so a resource waiting for its Secret does not call the API at every pass; the
  Secret's creation event fills the entry in and wakes the resource;
* ``forget_unreferenced`` drops the entries no resource references any more (after a
  LangfuseTracing event: a deletion, or a spec that stopped naming the object).

Everything runs on the operator's event loop (the watch handlers are coroutines), so no lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Iterable, Iterator, Mapping
from typing import Any

from openwebui_langfuse.kube import KubeError
from openwebui_langfuse.models import referenced_names

logger = logging.getLogger("openwebui_langfuse")

# (namespace, kind, name), the key of the ``lft_references`` index; kind "Secret"/"ConfigMap".
RefKey = tuple[str, str, str]
# GET of one object by kind, namespace and name; None when there is none (``KubeApi.read``).
Fetch = Callable[[str, str, str], Awaitable[Mapping[str, Any] | None]]
# Secrets that can never be a LangfuseTracing reference and can be large: their data is never
# kept, and a reference to one reads as a missing Secret.
IGNORED_SECRET_TYPES = frozenset({"helm.sh/release.v1", "kubernetes.io/service-account-token"})


def data_of(kind: str, body: Mapping[str, Any]) -> dict[str, str] | None:
    """What a reader needs of an object: its ``data`` (None: treat it as absent)."""
    if kind == "Secret" and body.get("type") in IGNORED_SECRET_TYPES:
        return None
    return {str(k): str(v) for k, v in (body.get("data") or {}).items()}


class _KindView(Mapping[tuple[str, str], tuple[Mapping[str, str]]]):
    """One kind's entries as ``IndexReader`` reads them: (namespace, name) -> (data,)."""

    def __init__(self, entries: Mapping[RefKey, Mapping[str, str] | None], kind: str) -> None:
        self._entries = entries
        self._kind = kind

    def __getitem__(self, key: tuple[str, str]) -> tuple[Mapping[str, str]]:
        data = self._entries.get((key[0], self._kind, key[1]))
        if data is None:
            raise KeyError(key)
        return (data,)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for (namespace, kind, name), data in list(self._entries.items()):
            if kind == self._kind and data is not None:
                yield namespace, name

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ReferenceCache:
    """Referenced Secrets' and ConfigMaps' data, fed by the watch and by GETs on first use."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        # None: the object is referenced and known not to exist (or of an ignored type).
        self._entries: dict[RefKey, dict[str, str] | None] = {}
        self._loading: dict[RefKey, asyncio.Future[None]] = {}
        # Keys a watch event or ``forget_unreferenced`` touched while their GET was running:
        # that GET's answer may be older than what the event said, so it is not stored.
        self._touched: set[RefKey] = set()
        self.secrets = _KindView(self._entries, "Secret")
        self.config_maps = _KindView(self._entries, "ConfigMap")

    def __contains__(self, key: object) -> bool:
        """Whether an entry (data or absent) is held for a ``RefKey``."""
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def on_event(
        self,
        kind: str,
        event_type: str | None,
        namespace: str,
        name: str,
        body: Mapping[str, Any],
        *,
        index: Mapping[RefKey, Iterable[tuple[str, str]]],
        wake: Callable[[str, str], object],
    ) -> None:
        """A watch event: the entry first, then the resources that reference the object (the
        ``index``) are woken, so the pass each one runs reads the new data."""
        targets = list(index.get((namespace, kind, name), ()))
        self.observe(kind, namespace, name, event_type, body, referenced=bool(targets))
        for target in targets:
            wake(*target)

    def observe(
        self,
        kind: str,
        namespace: str,
        name: str,
        event_type: str | None,
        body: Mapping[str, Any],
        *,
        referenced: bool,
    ) -> None:
        """A watch event of a Secret or ConfigMap (``event_type`` None: the initial listing)."""
        key = (namespace, kind, name)
        loading = key in self._loading
        if loading:
            self._touched.add(key)
        elif not referenced:
            self._entries.pop(key, None)
            return
        self._entries[key] = None if event_type == "DELETED" else data_of(kind, body)

    async def prefetch(
        self, namespace: str, raw_spec: Mapping[str, Any], extra_secrets: Iterable[str] = ()
    ) -> None:
        """Read what ``raw_spec`` references (and the ``extra_secrets`` its install record
        names) and the cache holds no entry for yet.

        Raises ``KubeError`` when a read fails (other than a 404): the pass is retried with
        backoff, instead of reporting a Secret missing that may well exist."""
        secrets, config_maps = referenced_names(raw_spec)
        keys = [(namespace, "Secret", name) for name in sorted({*secrets, *extra_secrets})]
        keys += [(namespace, "ConfigMap", name) for name in sorted(config_maps)]
        missing = [key for key in keys if key not in self._entries]
        if missing:
            await asyncio.gather(*(self._load(key) for key in missing))

    async def _load(self, key: RefKey) -> None:
        loading = self._loading.get(key)
        if loading is None:
            # One GET per object however many passes want it at once (an operator start).
            loading = self._loading[key] = asyncio.ensure_future(self._get(key))
            # Retrieved here too, for when every pass that waited for it was cancelled.
            loading.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: a cancelled pass does not cancel a read another pass waits for.
        await asyncio.shield(loading)

    async def _get(self, key: RefKey) -> None:
        namespace, kind, name = key
        self._touched.discard(key)
        try:
            body = await self._fetch(kind, namespace, name)
        except KubeError as exc:
            logger.warning("cannot read %s %s/%s: %s", kind, namespace, name, exc)
            raise
        finally:
            del self._loading[key]
            touched = key in self._touched
            self._touched.discard(key)
        if not touched:
            self._entries[key] = None if body is None else data_of(kind, body)

    def forget_unreferenced(self, namespace: str, references: Container[RefKey]) -> None:
        """Drop the entries of ``namespace`` that are not in ``references`` (the index)."""
        for key in [k for k in self._entries if k[0] == namespace and k not in references]:
            del self._entries[key]
        self._touched.update(k for k in self._loading if k[0] == namespace and k not in references)
