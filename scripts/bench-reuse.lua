-- wrk script for scripts/bench's reuse section. Every request carries $TOKEN
-- as `Authorization: $SCHEME ...`; with $PROOFS, each request takes the next
-- line of that file as its `DPoP` proof (a proof is good once, so wrk must
-- never send one twice). The plain-token peer goes through this same script,
-- so both sides pay the same Lua cost in wrk.
local token, scheme, file = os.getenv("TOKEN"), os.getenv("SCHEME"), os.getenv("PROOFS")
local auth = scheme .. " " .. token
local proofs, i = {}, 0
if file and file ~= "" then
  for line in io.lines(file) do proofs[#proofs + 1] = line end
end

request = function()
  local headers = { ["Authorization"] = auth }
  if #proofs > 0 then
    i = i + 1
    -- Out of proofs: an empty one, refused and counted as non-2xx.
    headers["DPoP"] = proofs[i] or ""
  end
  return wrk.format("GET", "/", headers)
end
