-- wrk script: Omaha update checks from a pool of 100,000 machines running the release.
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/xml"
local head = '<?xml version="1.0" encoding="UTF-8"?>\n<request protocol="3.0" version="pivot-0.1" updaterversion="pivot-0.1" installsource="scheduler" ismachine="1">\n <os version="1.3.0" platform="Pivot" sp="1.3.0_x86_64"></os>\n <app appid="{b9606f32-42ac-4029-aef4-20ed435e8c45}" version="1.3.0" track="stable" bootid="{00000000-0000-4000-8000-000000000001}" machineid="'
local tail = '" oem="" alephversion="1.0.0" lang="en-US" board="amd64-usr" delta_okay="false">\n  <ping active="1"></ping>\n  <updatecheck></updatecheck>\n </app>\n</request>\n'
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local id = string.format("%032x", math.random(1, 100000))
  return wrk.format(nil, "/v1/update/", nil, head .. id .. tail)
end
