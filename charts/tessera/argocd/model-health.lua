-- Argo CD health of a tessera.dev Model, from its kstatus-style conditions.
-- Runs in Argo CD's Lua (5.1 semantics) and in Lua 5.4; reads the global `obj`, returns `hs`.
-- Healthy: the operator has seen the current spec, Ready is True and no rollout is under way.
-- Progressing: not observed yet, starting, scaling, loading, or a rollout under way.
-- Degraded: the Degraded condition is True, or Ready is False with nothing progressing.
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then return nil end
  for _, c in ipairs(conditions) do
    if c.type == kind then return c end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then return fallback end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then text = text .. ": " .. c.message end
  return text
end

local generation = obj.metadata and obj.metadata.generation
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Tessera operator to observe the Model"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status.conditions, "Ready")
local progressing = condition(status.conditions, "Progressing")
local degraded = condition(status.conditions, "Degraded")

-- A condition computed from an older generation says nothing about the current spec.
local function current(c)
  return c ~= nil and (generation == nil or c.observedGeneration == nil or c.observedGeneration >= generation)
end
if ready ~= nil and not current(ready) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to evaluate generation " .. tostring(generation)
  return hs
end

if current(degraded) and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = describe(ready, "Waiting for the Ready condition")
  return hs
end
if ready.status == "True" then
  if current(progressing) and progressing.status == "True" then
    hs.status = "Progressing"
    hs.message = describe(progressing, "Progressing")
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
-- Ready is False: still on its way (loading, scaling from zero) or stuck.
if current(progressing) and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(ready, "Not ready")
  return hs
end
hs.status = "Degraded"
hs.message = describe(ready, "Not ready")
return hs
