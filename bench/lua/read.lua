-- Reads only (GET Patient/pat-N), to set beside the ceiling's point reads. Needs TOKEN and
-- PATIENTS in the environment.
local token = os.getenv("TOKEN")
local patients = tonumber(os.getenv("PATIENTS") or "1000")
local counter = 0
math.randomseed(os.time())

local function patient_body(id)
  local idpart = ""
  if id then idpart = '"id":"' .. id .. '",' end
  return '{"resourceType":"Patient",' .. idpart ..
    '"name":[{"family":"Bench","given":["Load"]}],"gender":"female","birthDate":"2014-05-06",' ..
    '"address":[{"city":"Hartford","state":"CT","postalCode":"06106"}],' ..
    '"identifier":[{"system":"urn:mrn:bench","value":"B' .. math.random(1, 1000000000) .. '"}]}'
end

request = function()
  counter = counter + 1
  local r = 1
  local n = math.random(0, patients - 1)
  local h = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/fhir+json" }
  if r <= 4 then
    return wrk.format("GET", "/fhir/Patient/pat-" .. n, h)
  elseif r <= 6 then
    return wrk.format("POST", "/fhir/Patient", h, patient_body(nil))
  elseif r <= 8 then
    return wrk.format("PUT", "/fhir/Patient/pat-" .. n, h, patient_body("pat-" .. n))
  else
    local org = "cc"
    return wrk.format("GET", "/fhir/Patient?identifier=M" .. n, h)
  end
end

local errors = 0
response = function(status, headers, body)
  if status >= 400 then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("status " .. status .. ": " .. string.sub(body, 1, 200) .. "\n") end
  end
end
