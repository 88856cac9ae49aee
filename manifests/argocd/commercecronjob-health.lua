-- Argo CD health of a CommerceCronJob (resource.customizations.health.commercejobs.dev_CommerceCronJob).
hs = {}
local status = obj.status
local ready = nil
if status ~= nil and status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end
if ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "suspended"
  return hs
end
local last = status.lastRun
if last ~= nil and (last.state == "Failed" or last.state == "Terminated" or last.state == "Incomplete") then
  hs.status = "Degraded"
  hs.message = "last run " .. last.name .. " " .. last.state
  return hs
end
hs.status = "Healthy"
hs.message = ready.message or "scheduled"
return hs
