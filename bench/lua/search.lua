-- The search mix: name, birth-date range, identifier, a Task worklist by owner and status,
-- and Appointments by actor and date — in equal shares. Needs TOKEN and PATIENTS.
local token = os.getenv("TOKEN")
local patients = tonumber(os.getenv("PATIENTS") or "1000")
math.randomseed(os.time())
local family = { "Smith", "Johnson", "Garcia", "Rivera", "Nguyen", "Patel", "Kim", "Rossi", "Lopez", "Clark",
  "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Hill", "Flores", "Green" }
local statuses = { "requested", "received", "accepted", "in-progress", "completed" }

request = function()
  local h = { ["Authorization"] = "Bearer " .. token }
  local r = math.random(1, 5)
  if r == 1 then
    return wrk.format("GET", "/fhir/Patient?name=" .. family[math.random(1, #family)] .. "&_count=20", h)
  elseif r == 2 then
    local y = math.random(2000, 2026)
    local m = math.random(1, 12)
    return wrk.format("GET", string.format("/fhir/Patient?birthdate=ge%04d-%02d-01&birthdate=lt%04d-%02d-08&_count=20", y, m, y, m), h)
  elseif r == 3 then
    return wrk.format("GET", "/fhir/Patient?identifier=M" .. math.random(0, patients - 1), h)
  elseif r == 4 then
    local org = "cc"
    if math.random(1, 2) == 2 then org = "hhc" end
    return wrk.format("GET", "/fhir/Task?owner=Organization/" .. org .. "&status=" .. statuses[math.random(1, #statuses)] .. "&_count=20", h)
  else
    local day = math.random(1, 28)
    return wrk.format("GET", string.format("/fhir/Appointment?actor=Location/loc-%d&date=2026-12-%02d&_count=20", math.random(0, 29), day), h)
  end
end

local errors = 0
response = function(status, headers, body)
  if status >= 400 then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("status " .. status .. ": " .. string.sub(body, 1, 200) .. "\n") end
  end
end
