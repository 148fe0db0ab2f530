-- Argo CD health of a tessera.dev ModelEvaluation (an immutable record written by an evaluation Job).
-- Progressing until the result is written; then Healthy for a Pass, Degraded for Fail,
-- Inconclusive or Error (the candidate was not shown to be as good as the baseline).
local hs = {}
local status = obj.status
local result = status and status.result
if result == nil or result.verdict == nil then
  hs.status = "Progressing"
  hs.message = "Evaluation running"
  if status ~= nil and status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == "Ready" and c.message ~= nil and c.message ~= "" then
        hs.message = c.message
      end
    end
  end
  return hs
end
local text = result.verdict
if result.reason ~= nil and result.reason ~= "" then text = text .. ": " .. result.reason end
if result.verdict == "Pass" then
  hs.status = "Healthy"
else
  hs.status = "Degraded"
end
hs.message = text
return hs
