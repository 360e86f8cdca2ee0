-- $find-care requests against the synthetic directory: a random specialty (as a SNOMED CT
-- coding), a Connecticut postal code, an age from 0 to 26 and a modality/urgency mix.
-- Needs TOKEN.
local token = os.getenv("TOKEN")
math.randomseed(os.time())
local codes = { "408459003", "419610006", "418058008", "419365004", "419170002", "418652005",
  "418002000", "419472004", "394588006", "394539006", "419983000", "418862001", "420208008",
  "394579002", "394583002", "394584008", "394589003", "418112009", "394803006", "394593009",
  "394810000", "394587001", "394591006", "394801008", "419192003", "408443003", "419772000",
  "394582007", "394586005", "408439002" }
local zips = { "06320", "06106", "06032", "06033", "06810", "06484", "06385", "06880", "06052",
  "06451", "06360", "06790", "06606", "06226", "06511", "06902", "06708", "06851", "06457", "06415" }
local modalities = { "any", "any", "in-person", "video" }
local urgencies = { "routine", "routine", "routine", "urgent", "asap" }
local year = tonumber(os.date("!%Y"))

request = function()
  local body = string.format(
    '{"resourceType":"Parameters","parameter":[' ..
    '{"name":"birthDate","valueDate":"%04d-%02d-%02d"},' ..
    '{"name":"postalCode","valueString":"%s"},' ..
    '{"name":"service","valueCoding":{"system":"http://snomed.info/sct","code":"%s"}},' ..
    '{"name":"modality","valueCode":"%s"},' ..
    '{"name":"urgency","valueCode":"%s"},' ..
    '{"name":"count","valueInteger":10}]}',
    year - math.random(0, 26), math.random(1, 12), math.random(1, 28),
    zips[math.random(1, #zips)], codes[math.random(1, #codes)],
    modalities[math.random(1, #modalities)], urgencies[math.random(1, #urgencies)])
  return wrk.format("POST", "/fhir/HealthcareService/$find-care",
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/fhir+json" }, body)
end

local errors = 0
response = function(status, headers, body)
  if status >= 400 then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("status " .. status .. ": " .. string.sub(body, 1, 300) .. "\n") end
  end
end
