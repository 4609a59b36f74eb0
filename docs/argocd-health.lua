-- Argo CD health check for openwebui-langfuse.io/LangfuseTracing.
-- Install it under the key resource.customizations.health.openwebui-langfuse.io_LangfuseTracing
-- of the argocd-cm ConfigMap (docs/install.md, "Argo CD").
--
-- It gives the same answer as kstatus (what Flux, Helm 4 --wait and `kubectl wait` rely on):
--   Healthy     <=> kstatus Current     (Ready=True, latest generation observed)
--   Progressing <=> kstatus InProgress  (no status yet, generation not yet observed,
--                                        Reconciling=True, or Ready not True)
--   Degraded    <=> kstatus Failed      (Stalled=True: only a change by a person helps)
--   Suspended   when spec.suspend is true (the operator leaves the resource alone).
-- Plain Lua 5.1, no library beyond ipairs and string concatenation (Argo CD runs gopher-lua).

local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  if message ~= "" then
    return message
  end
  return fallback
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Reconciliation is suspended (spec.suspend: true)"
  return hs
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: the operator is removing the filter and the connection"
  return hs
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local conditions = status.conditions
local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
if ready ~= nil then
  hs.status = "Progressing"
  hs.message = describe(ready, "Not ready yet")
  return hs
end

-- Conditions without Ready, Reconciling or Stalled: kstatus calls such a resource Current.
hs.status = "Healthy"
hs.message = "No Ready condition reported"
return hs
