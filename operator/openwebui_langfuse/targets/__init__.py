"""Where the filter runs: one module per target, each with the same small part of a pass.

A target is built on the pass (``openwebui_langfuse.passes.Pass``) and offers:

- ``resolve()``: read the target's own credentials; False (with the condition set) blocks it;
- ``install(content, marker)``: put the filter there and confirm it loaded (``FilterInstalled``);
- ``sync_valves(keys)``: read the valves, write the whole set only when it differs
  (``ValvesSynced``);
- ``publish(filter_installed=...)``: make Open WebUI use the filter, and confirm it does;
- ``ready_message()`` and ``warning``: what Ready says beyond the conditions;

and a module-level ``remove(...)`` for deletion, which removes only what the resource added.

``pipelines``: a module of an open-webui Pipelines server, reached through a connection.
"""
