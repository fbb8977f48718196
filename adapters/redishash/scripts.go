package redishash

import (
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts, one per operation. Each touches exactly KEYS[1], so each
// runs on one Redis Cluster slot, and each does its whole job (existence
// check, expiry refresh and the operation) atomically in one round trip.
//
// They are written for Redis's cost model, measured with INFO commandstats
// on Redis 7.0: an EVALSHA costs about 2µs before any work, each
// redis.call about 1-2µs more, a write (PEXPIRE) about 4µs, and TIME or
// defining Lua functions several µs. So the scripts define no functions, do
// not call TIME (ARGV[1] is the client's clock in Unix ms), and read the
// metadata together with the fields asked for in one HMGET.

// guard is the start of every script on an existing record: it reads the
// deadline and idle timeout (with the fields in EXTRA, an HMGET argument
// list) into m, returns NOTFOUND if there is no live record (a key without
// metadata, or one past its deadline, which it deletes so expired means gone
// before Redis evicts it), and otherwise refreshes the TTL to
// min(idle, deadline - now), leaving it in ttl.
const guard = `
local m = redis.call('HMGET', KEYS[1], '` + fieldDeadline + `', '` + fieldIdle + `'EXTRA)
local d, i = tonumber(m[1]), tonumber(m[2])
if not (d and i) then return NOTFOUND end
local ttl = d - tonumber(ARGV[1])
if i < ttl then ttl = i end
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return NOTFOUND
end
redis.call('PEXPIRE', KEYS[1], ttl)
`

// hsetFrom writes the field/value pairs ARGV[FROM..] in chunks that stay
// well inside Lua's stack.
const hsetFrom = `
for j = FROM, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, j, math.min(j + 999, #ARGV)))
end
`

func guarded(notFound, extra, body string) *redis.Script {
	return redis.NewScript(strings.NewReplacer("NOTFOUND", notFound, "EXTRA", extra).Replace(guard) + body)
}

func hset(from string) string { return strings.Replace(hsetFrom, "FROM", from, 1) }

// Results that mean "no live record", "over the field limit" or "exists".
const (
	replyNotFound = -1
	replyTooMany  = -2
	replyExists   = 0
)

var (
	// ARGV: now, idle ms, absolute ms, field, value, …
	createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now, idle, absolute = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HSET', KEYS[1], '` + fieldCreated + `', ARGV[1], '` + fieldDeadline + `', now + absolute, '` + fieldIdle + `', ARGV[2])
` + hset("4") + `
redis.call('PEXPIRE', KEYS[1], math.min(idle, absolute))
return 1
`)

	// ARGV: now, field, … ; the reply is the deadline and idle timeout,
	// then the values asked for; nil when there is no live record.
	getScript = guarded("false", ", unpack(ARGV, 2)", `return m`)

	getAllScript = guarded("false", "", `return redis.call('HGETALL', KEYS[1])`)

	keysScript = guarded("false", "", `return redis.call('HKEYS', KEYS[1])`)

	// ARGV: now, field
	hasScript = guarded("-1", ", ARGV[2]", `
if m[3] then return 1 end
return 0
`)

	lenScript = guarded("-1", "", `return redis.call('HLEN', KEYS[1]) - `+metaCount)

	// ARGV: now, max fields (0: no limit), field, value, …
	// One field: HSET first, and only if it added the field check the
	// count, removing the field again if it went over (it did not exist, so
	// that restores the record exactly). Several fields: count the new ones
	// (an HEXISTS each) first, and only when the write could cross the limit.
	setScript = guarded("-1", "", `
local max = tonumber(ARGV[2])
if #ARGV == 4 then
  local added = redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  if max > 0 and added == 1 and redis.call('HLEN', KEYS[1]) - `+metaCount+` > max then
    redis.call('HDEL', KEYS[1], ARGV[3])
    return -2
  end
  return 1
end
if max > 0 then
  local n = redis.call('HLEN', KEYS[1]) - `+metaCount+`
  if n + (#ARGV - 2) / 2 > max then
    for j = 3, #ARGV, 2 do
      if redis.call('HEXISTS', KEYS[1], ARGV[j]) == 0 then n = n + 1 end
    end
    if n > max then return -2 end
  end
end
`+hset("3")+`
return 1
`)

	// ARGV: now, field, …
	deleteScript = guarded("-1", "", `
redis.call('HDEL', KEYS[1], unpack(ARGV, 2))
return 1
`)

	// Clear rewrites the hash with only its metadata: O(1) script work
	// whatever the session's size (DEL frees the fields).
	clearScript = guarded("-1", ", '"+fieldCreated+"'", `
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '`+fieldDeadline+`', m[1], '`+fieldIdle+`', m[2], '`+fieldCreated+`', m[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`)

	touchScript = guarded("-1", "", `return ttl`)

	// ARGV: now, idle ms, absolute ms. The new deadline counts from creation.
	setExpiryScript = guarded("-1", ", '"+fieldCreated+"'", `
local deadline = tonumber(m[3]) + tonumber(ARGV[3])
local idle = tonumber(ARGV[2])
ttl = deadline - tonumber(ARGV[1])
if idle < ttl then ttl = idle end
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return -1
end
redis.call('HSET', KEYS[1], '`+fieldDeadline+`', deadline, '`+fieldIdle+`', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`)

	// Restore is the second step of Rename: ARGV is now, then the whole hash
	// of the old key, metadata included. It writes them and then runs the
	// guard, which sets the TTL (or removes a record whose deadline passed).
	restoreScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
` + hset("2") + strings.NewReplacer("NOTFOUND", "-1", "EXTRA", "").Replace(guard) + `
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
