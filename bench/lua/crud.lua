-- The CRUD mix: 40 % read, 20 % create, 20 % update, 20 % search by identifier, over the
-- synthetic patients (pat-0 … pat-N-1). Needs TOKEN and PATIENTS in the environment.
local token = os.getenv("TOKEN")
local patients = tonumber(os.getenv("PATIENTS") or "1000")
local counter = 0
math.randomseed(os.time())

local family = { "Smith", "Johnson", "Garcia", "Rivera", "Nguyen", "Patel", "Kim", "Rossi", "Lopez", "Clark",
  "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Hill", "Flores", "Green" }

-- a patient like the synthetic ones (same name list, birth years and identifier scheme), so
-- updates keep the data set's statistics and its identifiers (an update of pat-N keeps M<N>)
local function patient_body(id, n)
  local idpart = ""
  local ident = "B" .. math.random(1, 1000000000)
  if id then
    idpart = '"id":"' .. id .. '",'
    ident = "M" .. n
  end
  return '{"resourceType":"Patient",' .. idpart ..
    '"name":[{"family":"' .. family[math.random(1, #family)] .. '","given":["Load"]}],"gender":"female",' ..
    string.format('"birthDate":"%04d-%02d-%02d",', math.random(2000, 2025), math.random(1, 12), math.random(1, 28)) ..
    '"address":[{"city":"Hartford","state":"CT","postalCode":"06106"}],' ..
    '"identifier":[{"system":"urn:mrn:cc","value":"' .. ident .. '"}]}'
end

request = function()
  counter = counter + 1
  local r = math.random(1, 10)
  local n = math.random(0, patients - 1)
  local h = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/fhir+json" }
  if r <= 4 then
    return wrk.format("GET", "/fhir/Patient/pat-" .. n, h)
  elseif r <= 6 then
    return wrk.format("POST", "/fhir/Patient", h, patient_body(nil, nil))
  elseif r <= 8 then
    return wrk.format("PUT", "/fhir/Patient/pat-" .. n, h, patient_body("pat-" .. n, n))
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
