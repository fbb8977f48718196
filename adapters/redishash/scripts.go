package redishash

import "github.com/redis/go-redis/v9"

// The Lua scripts, one per operation. Each touches exactly KEYS[1], so each
// runs on one Redis Cluster slot, and each does its whole job (existence
// check, expiry refresh and the operation) atomically in one round trip.
//
// Redis 6.2+ replicates the effects of a script, not the script, so TIME
// inside a write script is safe.

// prelude holds what every script shares. live(key) returns the record's
// refreshed time to live in ms, or nil if there is no live record: a key
// without the metadata fields, or one past its absolute deadline (deleted
// at once, so expired means gone even before Redis evicts it).
const prelude = `
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
local function ttl_of(created, idle, absolute)
  return math.min(idle, created + absolute - now_ms())
end
local function live(key)
  local m = redis.call('HMGET', key, '` + fieldCreated + `', '` + fieldIdle + `', '` + fieldAbsolute + `')
  local c, i, a = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  if not (c and i and a) then return nil end
  local ttl = ttl_of(c, i, a)
  if ttl <= 0 then
    redis.call('DEL', key)
    return nil
  end
  redis.call('PEXPIRE', key, ttl)
  return ttl
end
-- hset writes the field/value pairs ARGV[from..], in chunks that stay
-- well inside Lua's stack.
local function hset(key, from)
  for i = from, #ARGV, 1000 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end
`

func script(body string) *redis.Script { return redis.NewScript(prelude + body) }

// Results that mean "no live record" or "over the field limit".
const (
	replyNotFound = -1
	replyTooMany  = -2
	replyExists   = 0
)

var (
	// ARGV: idle ms, absolute ms, field, value, …
	createScript = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '` + fieldCreated + `', now_ms(), '` + fieldIdle + `', ARGV[1], '` + fieldAbsolute + `', ARGV[2])
hset(KEYS[1], 3)
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[1]), tonumber(ARGV[2])))
return 1
`)

	// ARGV: field, … ; nil reply when there is no live record.
	getScript = script(`
if not live(KEYS[1]) then return false end
return redis.call('HMGET', KEYS[1], unpack(ARGV))
`)

	getAllScript = script(`
if not live(KEYS[1]) then return false end
return redis.call('HGETALL', KEYS[1])
`)

	keysScript = script(`
if not live(KEYS[1]) then return false end
return redis.call('HKEYS', KEYS[1])
`)

	// ARGV: field
	hasScript = script(`
if not live(KEYS[1]) then return -1 end
return redis.call('HEXISTS', KEYS[1], ARGV[1])
`)

	lenScript = script(`
if not live(KEYS[1]) then return -1 end
return redis.call('HLEN', KEYS[1]) - ` + metaCount + `
`)

	// ARGV: max fields (0: no limit), field, value, …
	setScript = script(`
if not live(KEYS[1]) then return -1 end
local max = tonumber(ARGV[1])
if max > 0 then
  local n = redis.call('HLEN', KEYS[1]) - ` + metaCount + `
  for i = 2, #ARGV, 2 do
    if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then n = n + 1 end
  end
  if n > max then return -2 end
end
hset(KEYS[1], 2)
return 1
`)

	// ARGV: field, …
	deleteScript = script(`
if not live(KEYS[1]) then return -1 end
redis.call('HDEL', KEYS[1], unpack(ARGV))
return 1
`)

	// Clear rewrites the hash with only its metadata: O(1) script work
	// whatever the session's size (DEL frees the fields).
	clearScript = script(`
local ttl = live(KEYS[1])
if not ttl then return -1 end
local m = redis.call('HMGET', KEYS[1], '` + fieldCreated + `', '` + fieldIdle + `', '` + fieldAbsolute + `')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '` + fieldCreated + `', m[1], '` + fieldIdle + `', m[2], '` + fieldAbsolute + `', m[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`)

	touchScript = script(`
return live(KEYS[1]) or -1
`)

	// ARGV: idle ms, absolute ms
	setExpiryScript = script(`
if not live(KEYS[1]) then return -1 end
local ttl = ttl_of(tonumber(redis.call('HGET', KEYS[1], '` + fieldCreated + `')), tonumber(ARGV[1]), tonumber(ARGV[2]))
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return -1
end
redis.call('HSET', KEYS[1], '` + fieldIdle + `', ARGV[1], '` + fieldAbsolute + `', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`)

	// Restore is the second step of Rename: ARGV is the whole hash of the
	// old key, metadata included.
	restoreScript = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
hset(KEYS[1], 1)
local ttl = live(KEYS[1])
if not ttl then
  redis.call('DEL', KEYS[1])
  return -1
end
return 1
`)
)

// Script returns the script the Store runs for op ("get", "set", …), for
// tools that must send exactly the commands the Store sends, such as the
// raw go-redis floor in bench/. It returns nil for an unknown op.
func Script(op string) *redis.Script {
	return map[string]*redis.Script{
		"create": createScript, "get": getScript, "getall": getAllScript, "keys": keysScript,
		"has": hasScript, "len": lenScript, "set": setScript, "delete": deleteScript,
		"clear": clearScript, "touch": touchScript, "setexpiry": setExpiryScript, "restore": restoreScript,
	}[op]
}
