-- The booking race: every wrk connection walks the same list of slot ids (SLOTS_FILE, one per
-- line) and books each slot for a patient of the demo, so each slot is wanted by several
-- clients at once; a thread stops after TRIES requests per slot. Needs TOKEN and SLOTS_FILE.
local token = os.getenv("TOKEN")
local slots = {}
for line in io.lines(os.getenv("SLOTS_FILE")) do slots[#slots + 1] = line end
local tries = tonumber(os.getenv("TRIES") or "3")
local counter = 0
local t0 = nil

-- wall-clock seconds (10 ms resolution), for the time the thread took to walk the list
local function uptime()
  local f = io.open("/proc/uptime", "r")
  local t = tonumber(f:read("*n"))
  f:close()
  return t
end

request = function()
  if not t0 then t0 = uptime() end
  local i = math.floor(counter / tries) % #slots + 1
  counter = counter + 1
  local body = '{"resourceType":"Parameters","parameter":[' ..
    '{"name":"slot","valueReference":{"reference":"Slot/' .. slots[i] .. '"}},' ..
    '{"name":"patient","valueReference":{"reference":"Patient/demo-pat-' .. math.random(0, 1999) .. '"}}]}'
  return wrk.format("POST", "/fhir/Appointment/$book",
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/fhir+json" }, body)
end

local others = 0
response = function(status, headers, body)
  if status ~= 200 and status ~= 409 then
    others = others + 1
    if others <= 3 then io.stderr:write("status " .. status .. ": " .. string.sub(body, 1, 200) .. "\n") end
  end
  if counter >= #slots * tries and t0 then
    io.stderr:write(string.format("elapsed %.2f\n", uptime() - t0))
    t0 = nil
    wrk.thread:stop()
  end
end
