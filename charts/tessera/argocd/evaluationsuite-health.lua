-- Argo CD health of a tessera.dev EvaluationSuite: a static definition (no status); its schema
-- and CEL rules are enforced by the apiserver, so an accepted suite is healthy.
local hs = {}
local tasks = 0
if obj.spec ~= nil and obj.spec.tasks ~= nil then
  for _ in ipairs(obj.spec.tasks) do tasks = tasks + 1 end
end
hs.status = "Healthy"
hs.message = tostring(tasks) .. " evaluation task(s)"
return hs
