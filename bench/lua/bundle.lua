-- 100-entry transaction Bundles of new Patients, each posted to the base. Needs TOKEN.
local token = os.getenv("TOKEN")
math.randomseed(os.time())
local entries = {}

local function bundle()
  local parts = {}
  for i = 1, 100 do
    local n = math.random(1, 2000000000)
    parts[i] = '{"fullUrl":"urn:uuid:00000000-0000-4000-8000-' .. string.format("%012d", i) .. '",' ..
      '"request":{"method":"POST","url":"Patient"},' ..
      '"resource":{"resourceType":"Patient","identifier":[{"system":"urn:mrn:bulk","value":"X' .. n .. '"}],' ..
      '"name":[{"family":"Bulk","given":["Load"]}],"gender":"male","birthDate":"2011-02-03",' ..
      '"address":[{"city":"Norwich","state":"CT","postalCode":"06360"}]}}'
  end
  return '{"resourceType":"Bundle","type":"transaction","entry":[' .. table.concat(parts, ",") .. ']}'
end

request = function()
  return wrk.format("POST", "/fhir", { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/fhir+json", ["Prefer"] = "return=minimal" }, bundle())
end

local errors = 0
response = function(status, headers, body)
  if status >= 400 then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("status " .. status .. ": " .. string.sub(body, 1, 200) .. "\n") end
  end
end
