-- Argo CD health of a CommerceJob (resource.customizations.health.commercejobs.dev_CommerceJob).
hs = {}
local status = obj.status
if status == nil or status.state == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end
local message = status.message or status.state
if status.state == "Finished" then
  hs.status = "Healthy"
elseif status.state == "Pending" or status.state == "Running" then
  hs.status = "Progressing"
elseif status.state == "Canceled" then
  hs.status = "Suspended"
else -- Failed, Terminated, Incomplete
  hs.status = "Degraded"
end
hs.message = status.state .. ": " .. message
return hs
