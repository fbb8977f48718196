package redishash

import (
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionkit/sessionkit/internal/testhook"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// The Lua scripts, one per operation. Each touches only the keys it
// declares (KEYS[1], and for Rename KEYS[2], which shares KEYS[1]'s hash
// tag), so each runs on one Redis Cluster slot, and each does its whole job
// (existence check, expiry refresh and the operation) atomically in one
// round trip.
//
// Three rules shape them besides Redis's cost model (measured with INFO
// commandstats on Redis 7.0: an EVALSHA costs about 2µs before any work,
// each redis.call about 1-2µs more, a write about 4µs):
//
//   - Time is Redis's. Only Create and SetExpiry read TIME (to store the
//     creation time and deadline); every other script refreshes with
//     PEXPIRE key idle, then PEXPIREAT key deadline LT (Redis 7.0+), which
//     leaves min(now+idle, deadline) with no clock of its own. So a key's
//     TTL never reaches past its deadline, and a key a script can see is
//     always before its deadline: no script compares times.
//   - Out of memory. A script without a shebang is checked against
//     maxmemory only at its first write, and only if that write is a
//     deny-oom command (HSET and HINCRBY are, PEXPIRE, HDEL, DEL and RENAME
//     are not). Every script that grows a record (Create, Set, Rename)
//     makes an HSET its first write, and Incr an HINCRBY, so under
//     noeviction it fails before changing anything; the others (reads,
//     Pop, Delete, Clear, SetExpiry) keep working.
//   - Any size. Lua's unpack fails at about 8000 values, so names and
//     field/value pairs go to HMGET, HSET and HDEL in chunks of at most
//     1000 arguments.

// Reply codes: a script answers a negative integer (written as a literal in
// the Lua) for an outcome that is not a result.
const (
	replyNotFound = -1  // no live record (missing, expired or corrupt, now removed)
	replyTooMany  = -2  // Set would exceed maxFields; nothing written
	replyRenewed  = -3  // the key holds a Rename marker
	replyExists   = -4  // Create or Rename found the target taken
	replyRetry    = -5  // Create removed a corrupt record in its way: run it again
	replyNotInt   = -6  // Incr found a field that does not hold an int64; nothing written
	replyOverflow = -7  // Incr's result would leave int64; nothing written
	replyCap      = -8  // Bind would exceed Binding.Max under Refuse; nothing written
	replySkew     = -9  // Create or Bind got a creation time too far from Redis's clock; nothing written
	replyInFlight = -10 // fixScript followed a marker to a key a login has not written yet
)

// maxSkew bounds how far the creation time of a key's policy may be from
// Redis's clock when the record is created.
const maxSkew = time.Second

// valid is true when the metadata strings d, i and c parse as positive
// integers below 10^15, the only values the scripts write (Unix ms and ms).
// A record whose metadata fails it is corrupt.
const valid = `(d and i and c and d % 1 == 0 and i % 1 == 0 and c % 1 == 0 and
  d > 0 and i > 0 and c > 0 and d < 1e15 and i < 1e15 and c < 1e15)`

// guard starts every script on an existing record. One HMGET reads the
// metadata and the first names of EXTRA (an HMGET argument list) into m,
// through pcall so that a key of another type reads as an error instead of
// failing the script. It leaves the deadline, idle timeout and creation in
// d, i and c, and the names' values from m[4] on. On anything but a live
// record it returns: RENEWED on a marker, NOTFOUND on a missing or corrupt
// record, which it deletes (DEL of a missing key is a no-op). It writes
// nothing on a live record.
//
// The HMGET names only fields a live record has. Redis finds a field of a
// small hash (listpack) by scanning it from the start, so a field that is
// missing costs a scan of the whole record, and the metadata, which Create
// writes first, costs almost nothing: looking up the marker field and the
// binding too made every script on a session of ten 64-byte values cost
// about 1.3 times as much Redis CPU (measured, redis-server 7.0). The
// marker field is read only when the metadata is missing, the binding only
// by the scripts that need it (binding, metaCount).
var guard = `
local m = redis.pcall('HMGET', KEYS[1], '` + fieldDeadline + `', '` + fieldIdle + `', '` + fieldCreated + `'EXTRA)
if m.err then
  redis.call('DEL', KEYS[1])
  return -1
end
local d, i, c = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
if not ` + valid + ` then
  if not m[1] and not m[2] and not m[3] then
    local r = redis.call('HGET', KEYS[1], '` + fieldRenamed + `')
    if r then
` + markerCheck("-3") + `
    end
  end
  redis.call('DEL', KEYS[1])
  return -1
end
`

// binding reads a live record's binding into b (false if unbound).
const binding = `
local b = redis.call('HGET', KEYS[1], '` + fieldBinding + `')
`

// metaCount is the number of reserved fields of a live record, which field
// counts leave out: the metadata, a binding, and a marker field that a hand
// edit may have added (guard does not look for it).
const metaCount = `(3 + redis.call('HEXISTS', KEYS[1], '` + fieldBinding + `') + redis.call('HEXISTS', KEYS[1], '` + fieldRenamed + `'))`

// markerCheck returns reply when r, the marker field of KEYS[1], which has
// no metadata, shows a marker as Rename leaves it: a target and an expiry
// within RenewMarkerTTL. A marker keeps its expiry time in a field too
// (markerExpiry), which it first restores: a plain PEXPIRE of the fast path
// may have stretched it (see fast.go); a time already past removes it. Anything else shaped like one (a hand edit, a PERSIST) is
// corrupt, not a lasting ErrRenewed: the code after it removes the key.
func markerCheck(reply string) string {
	return `
  if r ~= '' then
    local x = tonumber(redis.call('HGET', KEYS[1], '` + fieldMarkerExpiry + `'))
    if x then redis.call('PEXPIREAT', KEYS[1], x, 'LT') end
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 and ttl <= ` + strconv.FormatInt(sessionkit.RenewMarkerTTL.Milliseconds(), 10) + ` then return ` + reply + ` end
  end`
}

// markerExpiry writes the expiry time of the marker at KEYS[1], which has
// just got its TTL, into the marker (see markerCheck).
const markerExpiry = `
redis.call('HSET', KEYS[1], '` + fieldMarkerExpiry + `', redis.call('PEXPIRETIME', KEYS[1]))
`

// refresh sets the TTL to min(idle, deadline - now) on Redis's clock.
const refresh = `
redis.call('PEXPIRE', KEYS[1], i)
redis.call('PEXPIREAT', KEYS[1], d, 'LT')
`

// now reads Redis's clock in Unix ms.
const now = `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
`

// hmgetRest appends to m the values of the names ARGV[FROM..] that guard's
// HMGET did not read, in chunks.
const hmgetRest = `
for j = FROM, #ARGV, 1000 do
  local v = redis.call('HMGET', KEYS[1], unpack(ARGV, j, math.min(j + 999, #ARGV)))
  for x = 1, #v do m[#m + 1] = v[x] end
end
`

// hsetFrom writes the field/value pairs ARGV[FROM..] in chunks.
const hsetFrom = `
for j = FROM, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, j, math.min(j + 999, #ARGV)))
end
`

// hdelFrom deletes the names ARGV[FROM..] in chunks.
const hdelFrom = `
for j = FROM, #ARGV, 1000 do
  redis.call('HDEL', KEYS[1], unpack(ARGV, j, math.min(j + 999, #ARGV)))
end
`

func from(snippet, first string) string { return strings.Replace(snippet, "FROM", first, 1) }

// firstNames is guard's EXTRA for scripts whose ARGV are all names: as many
// as fit in one HMGET of at most 1000 arguments; hmgetRest reads the rest.
const firstNames = ", unpack(ARGV, 1, math.min(#ARGV, 997))"

func guarded(extra, body string) *redis.Script {
	return redis.NewScript(strings.Replace(guard, "EXTRA", extra, 1) + body)
}

var (
	// ARGV: idle ms, absolute ms, creation (Unix ms of the key's policy,
	// or '' for Redis's clock), field, value, … A key that holds a live
	// record or a marker is taken; a corrupt one is removed and the client
	// runs the script again, so that HSET stays the first write. A
	// creation further than 1 s from Redis's clock is refused (SKEW).
	createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  local m = redis.pcall('HMGET', KEYS[1], '` + fieldDeadline + `', '` + fieldIdle + `', '` + fieldCreated + `', '` + fieldRenamed + `')
  if not m.err then
    if m[4] then
      local r = m[4]
` + markerCheck("-4") + `
    else
      local d, i, c = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
      if ` + valid + ` then return -4 end
    end
  end
  redis.call('DEL', KEYS[1])
  return -5
end
` + now + `
if ARGV[3] ~= '' then
  local c = tonumber(ARGV[3])
  if math.abs(c - now) > ` + strconv.FormatInt(maxSkew.Milliseconds(), 10) + ` then return -9 end
  now = c
end
local n = math.min(#ARGV, 997)
redis.call('HSET', KEYS[1], '` + fieldCreated + `', now, '` + fieldDeadline + `', now + ARGV[2], '` + fieldIdle + `', ARGV[1], unpack(ARGV, 4, n))
` + from(hsetFrom, "n + 1") + `
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], now + ARGV[2], 'LT')
return 1
`)

	// ARGV: field, … ; the reply is the values asked for, in order. Guard's
	// three metadata values are shifted out of m in place: every value
	// replied costs the client an allocation or two, and these are not the
	// caller's.
	getScript = guarded(firstNames, from(hmgetRest, "998")+refresh+`
local n = #m
for j = 4, n do m[j - 3] = m[j] end
for j = math.max(n - 2, 1), n do m[j] = nil end
return m`)

	getAllScript = guarded("", refresh+`return redis.call('HGETALL', KEYS[1])`)

	keysScript = guarded("", refresh+`return redis.call('HKEYS', KEYS[1])`)

	// ARGV: field
	hasScript = guarded(", ARGV[1]", refresh+`
if m[4] then return 1 end
return 0
`)

	lenScript = guarded("", refresh+`return redis.call('HLEN', KEYS[1]) - `+metaCount)

	// ARGV: max fields (0: no limit), field, value, …
	// HSET is the first write (see the top of the file). One field: HSET,
	// and only if it added the field check the count, removing the field
	// again if it went over (it did not exist, so that restores the record
	// exactly). Several fields: count the new ones (an HEXISTS each) first,
	// and only when the write could cross the limit.
	setScript = guarded("", `
local max = tonumber(ARGV[1])
if #ARGV == 3 then
  local added = redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  if max > 0 and added == 1 and redis.call('HLEN', KEYS[1]) - `+metaCount+` > max then
    redis.call('HDEL', KEYS[1], ARGV[2])
    `+refresh+`
    return -2
  end
else
  if max > 0 then
    local n = redis.call('HLEN', KEYS[1]) - `+metaCount+`
    if n + (#ARGV - 1) / 2 > max then
      for j = 2, #ARGV, 2 do
        if redis.call('HEXISTS', KEYS[1], ARGV[j]) == 0 then n = n + 1 end
      end
      if n > max then
        `+refresh+`
        return -2
      end
    end
  end
  `+from(hsetFrom, "2")+`
end
`+refresh+`
return 1
`)

	// After a fast write's MULTI (Set or Incr, see fast.go), for what it
	// saw or may have done. ARGV: mode, max fields (0: no limit), the
	// record's field count right after the write (HLEN, metadata
	// included), then for each field written: field, value written, '1'
	// if the field was new, its old value ('' if new).
	//
	// Mode 'n': the MULTI saw no live record, so the write is no
	// session's. On a key without metadata (a marker, or the hash the
	// HSET made where no record was) the fields are removed; then the
	// guard answers as for any operation (a marker gets its own expiry
	// back). A live record found now came back where the write found a
	// marker (a refused login puts it back): the write is not in it, and
	// the answer is RENEWED, as it was when the MULTI ran.
	//
	// Mode 'l': the write landed in a live record (of another policy, or
	// perhaps over the limit). If the record is still here, its expiry is
	// refreshed from its own metadata, and over the limit the write is
	// taken back where a field still holds the value written (a new field
	// removed, an existing one given its old value): TOOMANY. Over the
	// limit means by the count the MULTI saw, so that a second run
	// (go-redis retries a script whose reply was lost) answers the same,
	// or by the count now (a login may have bound the record since: one
	// more metadata field). If the record moved since (a marker), the
	// write moved with it: over the limit the reply is the key it moved
	// to, for the client to run this again there, in mode 'f' (followed).
	// There, no key at all is a login still on its way (Bind's second
	// step has not written it yet), which carries the write: INFLIGHT, for
	// the client to try again shortly. Where there is no record otherwise
	// (a session ended), the write stands: the session took it with it.
	fixScript = redis.NewScript(`
if ARGV[1] == 'n' then
  if redis.pcall('HEXISTS', KEYS[1], '` + fieldDeadline + `') == 0 then
    for j = 4, #ARGV, 4 do redis.call('HDEL', KEYS[1], ARGV[j]) end
  end
` + strings.Replace(guard, "EXTRA", "", 1) + `
  return -3
end
local max, after = tonumber(ARGV[2]), tonumber(ARGV[3])
local m = redis.pcall('HMGET', KEYS[1], '` + fieldDeadline + `', '` + fieldIdle + `', '` + fieldCreated + `')
local d, i, c
if not m.err then d, i, c = tonumber(m[1]), tonumber(m[2]), tonumber(m[3]) end
if not ` + valid + ` then
  if max > 0 and after - 3 > max then
    local r = redis.pcall('HGET', KEYS[1], '` + fieldRenamed + `')
    if type(r) == 'string' and r ~= '' and r ~= '-' then return r end
    if ARGV[1] == 'f' and redis.call('EXISTS', KEYS[1]) == 0 then return -10 end
  end
  return 1
end
` + refresh + `
local meta = ` + metaCount + `
if max > 0 and (after - meta > max or redis.call('HLEN', KEYS[1]) - meta > max) then
  for j = 4, #ARGV, 4 do
    if redis.call('HGET', KEYS[1], ARGV[j]) == ARGV[j + 1] then
      if ARGV[j + 2] == '1' then
        redis.call('HDEL', KEYS[1], ARGV[j])
      else
        redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 3])
      end
    end
  end
  return -2
end
return 1
`)

	// After a fast Incr on a server that wraps around on overflow
	// (miniredis; Redis refuses): puts the old value back if the field
	// still holds the wrapped result. ARGV: field, wrapped, old.
	incrUndoScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
`)

	// ARGV: field, delta, max fields (0: no limit). Guard's HMGET reads the
	// field's current value into m[4].
	//
	// HINCRBY is the first write, and deny-oom (see the top of the file);
	// it runs through pcall so that its refusals become reply codes: a
	// value that is not an integer, a result outside int64. An OOM or any
	// other error is returned as it came. Three places where Redis's
	// HINCRBY and miniredis's differ from strconv.ParseInt, which the
	// in-process stores use (driver.AddInt), are evened out here, so that
	// every backend accepts and refuses the same values:
	//
	//   - Redis accepts only the canonical form (string2ll: no "+", no
	//     leading zeros, no "-0"); ParseInt and miniredis take those too.
	//     On Redis's refusal, a value of ParseInt's form is rewritten in
	//     canonical form (an HSET, deny-oom, is then the first write) and
	//     HINCRBY runs again; if that fails too the value is put back.
	//   - miniredis wraps around on overflow instead of refusing. Overflow
	//     happened exactly when the old value and delta have one sign and
	//     the result the other (the signs read from the decimal text, not
	//     from Lua's doubles); the old value is then put back.
	//   - HINCRBY's integer reply becomes a Lua double, exact only up to
	//     2^53, so a result beyond is read back as text with HGET; the
	//     reply is the result as a string, for the client to parse.
	incrScript = guarded(", ARGV[1]", `
local old, max = m[4], tonumber(ARGV[3])
if not old and max > 0 and redis.call('HLEN', KEYS[1]) - `+metaCount+` >= max then
  `+refresh+`
  return -2
end
local r = redis.pcall('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if type(r) == 'table' and old then
  local sign, digits = string.match(old, '^([+-]?)([0-9]+)$')
  if digits and string.find(r.err, 'not an integer', 1, true) then
    digits = string.gsub(digits, '^0+', '')
    if digits == '' then digits, sign = '0', '' end
    if sign == '+' then sign = '' end
    if sign .. digits ~= old then
      redis.call('HSET', KEYS[1], ARGV[1], sign .. digits)
      r = redis.pcall('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
      if type(r) == 'table' then redis.call('HSET', KEYS[1], ARGV[1], old) end
    end
  end
end
if type(r) == 'table' then
  if string.find(r.err, 'not an integer', 1, true) then
    `+refresh+`
    return -6
  end
  if string.find(r.err, 'overflow', 1, true) then
    `+refresh+`
    return -7
  end
  return r
end
local new = r
if r > -9007199254740992 and r < 9007199254740992 then
  new = string.format('%d', r)
else
  new = redis.call('HGET', KEYS[1], ARGV[1])
end
local function neg(x) return string.sub(x, 1, 1) == '-' end
if old and neg(old) == neg(ARGV[2]) and neg(new) ~= neg(old) then
  redis.call('HSET', KEYS[1], ARGV[1], old)
  `+refresh+`
  return -7
end
`+refresh+`
return new
`)

	// ARGV: field. Guard's HMGET reads the value into m[4]; the reply is
	// an empty array for a missing field, else the value in an array (a
	// nil reply would be indistinguishable from an error for go-redis).
	popScript = guarded(", ARGV[1]", `
if m[4] then redis.call('HDEL', KEYS[1], ARGV[1]) end
`+refresh+`
if m[4] then return {m[4]} end
return {}
`)

	// ARGV: field, …
	deleteScript = guarded("", from(hdelFrom, "1")+refresh+`return 1`)

	// Clear rewrites the hash with only its metadata (the binding
	// included): O(1) script work whatever the session's size (DEL frees
	// the fields).
	clearScript = guarded("", binding+`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '`+fieldCreated+`', m[3], '`+fieldDeadline+`', m[1], '`+fieldIdle+`', m[2])
if b then redis.call('HSET', KEYS[1], '`+fieldBinding+`', b) end
`+refresh+`
return 1
`)

	// The reply is the TTL left, in ms.
	touchScript = guarded("", refresh+`
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return -1 end
return ttl
`)

	// ARGV: idle ms, absolute ms. The new deadline counts from creation, on
	// Redis's clock. A bound record's index entry takes the new deadline as
	// its score, and the index lives at least as long.
	setExpiryScript = guarded("", bindingIndex+indexFuncs+now+`
d = c + ARGV[2]
if d <= now then
  redis.call('DEL', KEYS[1])
  if idx then redis.pcall('ZREM', idx, KEYS[1]) end
  return -1
end
i = ARGV[1]
redis.call('PEXPIRE', KEYS[1], i)
redis.call('HSET', KEYS[1], '`+fieldDeadline+`', d, '`+fieldIdle+`', i)
redis.call('PEXPIREAT', KEYS[1], d, 'LT')
if idx then indexAdd(idx, KEYS[1], d) end
return 1
`)

	// KEYS: old, new (one hash tag, so one slot). After the guard on the
	// old key and the check that the new one is free, the first write is
	// an HSET (a placeholder under the new key, which RENAME then
	// replaces), so an OOM refuses the whole move. RENAME keeps the fields,
	// metadata and TTL; the record's expiry is then refreshed as by any
	// use, and the marker left at the old key expires after
	// sessionkit.RenewMarkerTTL or with the record, whichever is first
	// (PEXPIREAT of the record's PEXPIRETIME, LT: exact, where a PTTL
	// carried over to a later PEXPIRE could land a millisecond late). A
	// bound record's index entry moves from the old key to the new one in
	// the same script (the index shares the hash tag, so the slot).
	renameScript = guarded("", `
if redis.call('EXISTS', KEYS[2]) == 1 then return -4 end
`+bindingIndex+indexFuncs+`
`+move("", "ARGV[1]")+`
if idx then
  redis.pcall('ZREM', idx, KEYS[1])
  if e > 0 then indexAdd(idx, KEYS[2], d) end
end
return 1
`)

	// Destroy removes the key, whatever it holds, and the entry of a bound
	// record in its index, and answers the key a marker named (nil
	// otherwise) for the client to remove next. ARGV: '1' when the key was
	// reached through a marker. Such a key that holds nothing is a session
	// still on its way there (Bind's second step, on another slot, has not
	// run yet): a tombstone, a marker naming "-", takes the key for
	// RenewMarkerTTL, so that the session cannot land after the Destroy
	// returned. Destroy stops at a tombstone, and does not follow a marker
	// field on a record that has metadata (a hand edit: see guard).
	destroyScript = redis.NewScript(`
local m = redis.pcall('HMGET', KEYS[1], '` + fieldRenamed + `', '` + fieldBinding + `', '` + fieldDeadline + `')
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], '` + fieldRenamed + `', '-')
  redis.call('PEXPIRE', KEYS[1], ` + strconv.FormatInt(sessionkit.RenewMarkerTTL.Milliseconds(), 10) + `)
` + markerExpiry + `
  return false
end
redis.call('DEL', KEYS[1])
if m.err then return false end
local idx = m[2] and string.match(m[2], '^([^\n]+)\n')
if idx then redis.pcall('ZREM', idx, KEYS[1]) end
if m[1] and m[1] ~= '-' and not m[3] then return m[1] end
return false
`)
)

// bindingIndex reads the binding into b and its index into idx (nil for an
// unbound record). Its PEXPIRETIME is the script's first access to the
// index: on Redis Cluster, an index in another slot than the record (only a
// hand edit makes one) is refused there, and the record, corrupt, is
// removed and reads as gone.
const bindingIndex = binding + `
local idx = b and string.match(b, '^([^\n]+)\n')
if idx and type(redis.pcall('PEXPIRETIME', idx)) == 'table' then
  redis.call('DEL', KEYS[1])
  return -1
end
`

// move moves the record of KEYS[1] (read by guard: d, i) to KEYS[2], for
// Rename and Bind within one slot. The first write is an HSET of a
// placeholder under the new key (deny-oom), which RENAME replaces, keeping
// the fields, metadata and TTL; then after runs, the record's expiry is
// refreshed as by any use, and the marker left at the old key expires
// after the ms in markerTTL (an ARGV) or with the record, whichever is
// first. It leaves e, the record's expiry time (positive when it lives).
func move(after, markerTTL string) string {
	return `
redis.call('HSET', KEYS[2], '` + fieldRenamed + `', '')
redis.call('RENAME', KEYS[1], KEYS[2])
` + after + `
redis.call('PEXPIRE', KEYS[2], i)
redis.call('PEXPIREAT', KEYS[2], d, 'LT')
local e = redis.call('PEXPIRETIME', KEYS[2])
if e > 0 then
  redis.call('HSET', KEYS[1], '` + fieldRenamed + `', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ` + markerTTL + `)
  redis.call('PEXPIREAT', KEYS[1], e, 'LT')
` + markerExpiry + `
end
`
}

// indexFuncs defines the index helpers. An index is a sorted set: member,
// the current key of a bound record; score, its deadline (Unix ms).
//
//   - indexAdd(idx, k, d) adds or moves k's entry to score d, and makes the
//     index live at least until the latest deadline it lists. PEXPIRETIME
//     is -1 for a key without TTL, so a fresh index gets one too (PEXPIREAT
//     GT would count it as infinite). A key of another type under the
//     index's name is corrupt, and replaced.
//   - liveMember(idx, k) is the HMGET of k (metadata, marker, binding) when
//     k holds a live record bound to idx, nil when the entry is dead: the
//     record is missing or expired (a script sees an expired key as
//     missing), a marker, corrupt, or bound elsewhere.
const indexFuncs = `
local function indexAdd(idx, k, d)
  d = tonumber(d)
  if type(redis.pcall('ZADD', idx, d, k)) == 'table' then
    redis.call('DEL', idx)
    redis.call('ZADD', idx, d, k)
  end
  if redis.call('PEXPIRETIME', idx) < d then
    local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', idx, math.max(d, tonumber(top[2])))
  end
end
-- capApply removes the entries past their deadline and the dead ones,
-- and ends the evicted sessions with their entries.
local function capApply(idx, dead, evict, now)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. now)
  for _, k in ipairs(dead) do redis.call('ZREM', idx, k) end
  for _, k in ipairs(evict) do
    redis.call('DEL', k)
    redis.call('ZREM', idx, k)
  end
end
local function inFlight(k)
  local r = redis.pcall('HGET', k, '` + fieldRenamed + `')
  return type(r) == 'string' and r ~= '' and r ~= '-'
end
local function liveMember(idx, k)
  local m = redis.pcall('HMGET', k, '` + fieldDeadline + `', '` + fieldIdle + `', '` + fieldCreated + `', '` + fieldRenamed + `', '` + fieldBinding + `')
  if m.err or m[4] or not m[5] or string.sub(m[5], 1, #idx + 1) ~= idx .. '\n' then return nil end
  local d, i, c = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  if not ` + valid + ` then return nil end
  return m
end
-- capCheck reads the index idx for a Bind of a user whose cap is max
-- (0: none), not counting self (the session being bound, if it is
-- already one of the user's). With a max, every entry not past its
-- deadline is checked and counted; over the max it refuses (refused, after
-- removing the dead entries) or picks the oldest by creation in evict.
-- Without one, two random entries are checked, so that entries of records
-- that idled out do not pile up between listings. Entries of sessions on
-- their way to another user (inFlight) are neither counted nor removed.
local function capCheck(idx, self, max, refuse, now)
  local dead, evict = {}, {}
  if max > 0 then
    local alive = {}
    for _, k in ipairs(redis.call('ZRANGEBYSCORE', idx, now, '+inf')) do
      if k ~= self then
        local m = liveMember(idx, k)
        if m then alive[#alive + 1] = {tonumber(m[3]), k} elseif not inFlight(k) then dead[#dead + 1] = k end
      end
    end
    if #alive >= max then
      if refuse then
        capApply(idx, dead, {}, now)
        return dead, evict, true
      end
      table.sort(alive, function(a, b) return a[1] < b[1] or a[1] == b[1] and a[2] < b[2] end)
      for j = 1, #alive - max + 1 do evict[j] = alive[j][2] end
    end
  else
    for _, k in ipairs(redis.call('ZRANDMEMBER', idx, 2)) do
      if k ~= self and not liveMember(idx, k) and not inFlight(k) then dead[#dead + 1] = k end
    end
  end
  return dead, evict, false
end
`

// indexOpen starts the scripts on an index (KEYS[1] for UserSessions and
// Revoke): it reads the clock, answers EMPTY if there is no index (a key
// of another type under its name is corrupt and removed), and drops the
// entries whose deadline has passed, counting in gone the entries removed.
const indexOpen = now + indexFuncs + `
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'zset' then
  if t ~= 'none' then redis.call('DEL', KEYS[1]) end
  return EMPTY
end
local gone = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
`

// indexClose removes the index once its last entry is gone, and rebuilds
// it when most of a large index's entries went: Redis keeps a sorted set's
// hash table and encoding at the size it grew to (measured: 148 KB for 2
// entries left of 10,000), and a rebuild of n entries (n < gone, so
// amortized over the removals) brings it back to the compact listpack.
// Below 128 entries (zset-max-listpack-entries' default) it is listpack
// already.
const indexClose = `
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then
  redis.call('DEL', KEYS[1])
elseif gone > left and gone + left > 128 then
  local e = redis.call('PEXPIRETIME', KEYS[1])
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  redis.call('DEL', KEYS[1])
  for j = 1, #all, 2 do redis.call('ZADD', KEYS[1], all[j + 1], all[j]) end
  if e > 0 then redis.call('PEXPIREAT', KEYS[1], e) end
end
`

// info is the reply of Info and of Scan for one live record (guard's m,
// d, and its binding b): its binding (nil if unbound), creation, expiry
// (PEXPIRETIME; the deadline for a key a hand edit left without TTL) and
// idle timeout.
const info = `
local e = redis.call('PEXPIRETIME', KEYS[1])
if e < 0 then e = d end
return {b, m[3], e, m[2]}
`

var (
	// Bind, step 1, on the old key. ARGV: new key, marker TTL ms. It reads
	// the whole record and replaces it with a marker naming the new key,
	// as Rename leaves. A bound record's entry stays in its old index,
	// naming the marker: while the session is on its way, a Revoke of its
	// former user still finds it (and ends it by deleting the marker), and
	// no cleaning removes it (inFlight); once the move is done, it is a
	// dead entry like any other. The first write is an HSET, so under OOM
	// it is refused before anything changes. The reply is the record's
	// HGETALL.
	bindOutScript = guarded("", bindingIndex+`
local all = redis.call('HGETALL', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
redis.call('HSET', KEYS[1], '`+fieldRenamed+`', ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '`+fieldRenamed+`', ARGV[1])
if ttl < 0 or ttl > tonumber(ARGV[2]) then ttl = ARGV[2] end
redis.call('PEXPIRE', KEYS[1], ttl)
`+markerExpiry+`
return all
`)

	// Bind, step 2, on the new key and the user's index (one hash tag, so
	// one slot). ARGV: idle ms, creation ('' for a new record: now; for a
	// new record under a key's policy, '~' and its creation, refused with
	// SKEW beyond 1 s of Redis's clock), deadline (for a new record: the
	// absolute lifetime, counted from the creation), max, '1' to refuse
	// over max, binding, field, value, …
	//
	// Reads first: the clock, the new key (taken: EXISTS), and the index.
	// With a max, every entry not past its deadline is checked (a live
	// record, bound to this index) and counted; over the max, it refuses,
	// or picks the oldest by creation for eviction. Without one, two random
	// entries are checked, so that entries of records that idled out do not
	// pile up between listings. A refusal writes nothing but the removal of
	// dead entries. Otherwise the first write is the HSET of the new record
	// (deny-oom: under OOM nothing changes), then its expiry, the
	// evictions, the removal of dead entries, and the new entry.
	bindInScript = redis.NewScript(now + indexFuncs + `
local i, c, d = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[2] == '' then
  c, d = now, now + d
elseif string.sub(ARGV[2], 1, 1) == '~' then
  c = tonumber(string.sub(ARGV[2], 2))
  if math.abs(c - now) > ` + strconv.FormatInt(maxSkew.Milliseconds(), 10) + ` then return -9 end
  d = c + d
elseif d <= now then
  return -1
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.pcall('HGET', KEYS[1], '` + fieldBinding + `') == ARGV[6] then return 1 end
  return -4
end
local t = redis.call('TYPE', KEYS[2])['ok']
local dead, evict, refused = {}, {}, false
if t == 'zset' then dead, evict, refused = capCheck(KEYS[2], '', tonumber(ARGV[4]), ARGV[5] == '1', now) end
if refused then return -8 end
redis.call('HSET', KEYS[1], '` + fieldCreated + `', c, '` + fieldDeadline + `', d, '` + fieldIdle + `', i, '` + fieldBinding + `', ARGV[6])
` + from(hsetFrom, "7") + `
redis.call('PEXPIRE', KEYS[1], i)
redis.call('PEXPIREAT', KEYS[1], d, 'LT')
if t == 'zset' then
  capApply(KEYS[2], dead, evict, now)
elseif t ~= 'none' then
  redis.call('DEL', KEYS[2])
end
indexAdd(KEYS[2], KEYS[1], d)
return 1
`)

	// Bind within one slot (the session already carries the user's tag:
	// a login again, or by another user of the same tag), in one script on
	// the old key, the new key and the index (one hash tag). ARGV: max, '1'
	// to refuse over max, binding, marker TTL ms. The guard on the old key,
	// then reads: the clock, the new key (taken: EXISTS), the index, whose
	// live entries other than the old key are counted against the max, as
	// in bindIn. The first write is the HSET of a placeholder under the new
	// key (deny-oom), which RENAME replaces; the record gets its binding,
	// its expiry is refreshed, the marker is left as Rename leaves it, the
	// record's former entry goes, then the evictions, the removal of dead
	// entries, and the new entry. There is no moment at which the session
	// is outside every index, so neither a Revoke nor the cap can miss it.
	bindSameScript = guarded("", bindingIndex+now+indexFuncs+`
if redis.call('EXISTS', KEYS[2]) == 1 then return -4 end
local t = redis.call('TYPE', KEYS[3])['ok']
local dead, evict, refused = {}, {}, false
if t == 'zset' then dead, evict, refused = capCheck(KEYS[3], KEYS[1], tonumber(ARGV[1]), ARGV[2] == '1', now) end
if refused then
  `+refresh+`
  return -8
end
`+move("redis.call('HSET', KEYS[2], '"+fieldBinding+"', ARGV[3])", "ARGV[4]")+`
if idx then redis.call('ZREM', idx, KEYS[1]) end
if t == 'zset' then
  capApply(KEYS[3], dead, evict, now)
elseif t ~= 'none' then
  redis.call('DEL', KEYS[3])
end
if e > 0 then indexAdd(KEYS[3], KEYS[2], d) end
return 1
`)

	// Bind, step 3, only when step 2 refused: on the old key. ARGV: new key,
	// creation, deadline, idle, binding ('' if none), max, field, value, …
	// If the old key still holds the marker step 1 left (naming the new
	// key), the record is put back, with its index entry; otherwise
	// something (Destroy) removed the marker, and the session stays ended.
	// A record bound to an index that has filled up meanwhile (its user
	// logged in elsewhere under the same cap) is not put back: the marker
	// is removed and the session ends, so that the cap holds and nothing
	// lives outside its index.
	bindBackScript = redis.NewScript(now + indexFuncs + `
local m = redis.pcall('HMGET', KEYS[1], '` + fieldDeadline + `', '` + fieldRenamed + `')
if m.err or m[1] or m[2] ~= ARGV[1] then return 0 end
local bidx = string.match(ARGV[5], '^([^\n]+)\n')
local max = tonumber(ARGV[6])
if bidx and max > 0 and redis.call('TYPE', bidx)['ok'] == 'zset' then
  local n = 0
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', bidx, now, '+inf')) do
    if k ~= KEYS[1] and liveMember(bidx, k) then n = n + 1 end
  end
  if n >= max then
    redis.call('DEL', KEYS[1])
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '` + fieldCreated + `', ARGV[2], '` + fieldDeadline + `', ARGV[3], '` + fieldIdle + `', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], '` + fieldBinding + `', ARGV[5]) end
` + from(hsetFrom, "7") + `
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3], 'LT')
local idx = string.match(ARGV[5], '^([^\n]+)\n')
if idx and redis.call('EXISTS', KEYS[1]) == 1 then indexAdd(idx, KEYS[1], ARGV[3]) end
return 1
`)

	// UserSessions, on the index: one info (key, then as info) per live
	// entry; dead entries are removed. Nothing is refreshed.
	listScript = redis.NewScript(strings.Replace(indexOpen, "EMPTY", "{}", 1) + `
local out = {}
for _, k in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local m = liveMember(KEYS[1], k)
  if m then
    local e = redis.call('PEXPIRETIME', k)
    if e < 0 then e = tonumber(m[1]) end
    out[#out + 1] = {k, m[5], m[3], e, m[2]}
  elseif not inFlight(k) then
    redis.call('ZREM', KEYS[1], k)
    gone = gone + 1
  end
end
` + indexClose + `
return out
`)

	// Revoke, on the index. ARGV: except ('' for none), '1' for all, id, …
	// Every live record selected is deleted with its entry, dead entries
	// are removed; the reply is the number of records deleted.
	revokeScript = redis.NewScript(strings.Replace(indexOpen, "EMPTY", "0", 1) + `
local want = {}
for j = 3, #ARGV do want[ARGV[j]] = true end
local n = 0
for _, k in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local m = liveMember(KEYS[1], k)
  if not m then
    -- A marker still listed is a session on its way out of the index (a
    -- login as another user, Bind's step 1 done): ending the marker ends
    -- it, unless it lands in the other user's index; a refused login
    -- then finds nothing to put back.
    if inFlight(k) then redis.call('DEL', k) end
    redis.call('ZREM', KEYS[1], k)
    gone = gone + 1
  else
    local id = string.match(m[5], '^[^\n]*\n([^\n]*)')
    if (ARGV[1] == '' or id ~= ARGV[1]) and (ARGV[2] == '1' or want[id]) then
      redis.call('DEL', k)
      redis.call('ZREM', KEYS[1], k)
      n, gone = n + 1, gone + 1
    end
  end
end
` + indexClose + `
return n
`)

	// Info: the guard (a marker answers RENEWED, which Info reports as not
	// found), then info. Nothing is refreshed.
	infoScript = guarded("", binding+info)

	// Scan and Count, on each key SCAN found: info for a live record, 0
	// for anything else (a marker, a corrupt record, a hash that is not
	// sessionkit's), which it leaves alone: the prefix may be shared.
	peekScript = redis.NewScript(`
local m = redis.pcall('HMGET', KEYS[1], '` + fieldDeadline + `', '` + fieldIdle + `', '` + fieldCreated + `', '` + fieldRenamed + `', '` + fieldBinding + `')
if m.err or m[4] then return 0 end
local d, i, c = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
if not ` + valid + ` then return 0 end
local b = m[5]
` + info)

	// DestroyAll, on each key SCAN found: it deletes a record (1 if it
	// was live), a marker, or an index (a sorted set whose name has the
	// "}u:" of Manager.UserIndex), and leaves anything else alone.
	destroyAllScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'zset' then
  if string.find(KEYS[1], '}u:', 1, true) then redis.call('DEL', KEYS[1]) end
  return 0
end
if t ~= 'hash' then return 0 end
local m = redis.call('HMGET', KEYS[1], '` + fieldDeadline + `', '` + fieldIdle + `', '` + fieldCreated + `', '` + fieldRenamed + `')
if not (m[1] or m[2] or m[3] or m[4]) then return 0 end
redis.call('DEL', KEYS[1])
local d, i, c = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
if not m[4] and ` + valid + ` then return 1 end
return 0
`)
)

// The scripts by operation, for tools that must send exactly the commands
// the Store sends, such as the raw go-redis floor in bench/; they reach
// them through internal/testhook, not through this package's API.
func init() {
	testhook.RegisterRedisScripts(map[string]any{
		"create": createScript, "get": getScript, "getall": getAllScript, "keys": keysScript,
		"has": hasScript, "len": lenScript, "set": setScript, "incr": incrScript, "pop": popScript,
		"delete": deleteScript, "clear": clearScript, "touch": touchScript, "setexpiry": setExpiryScript,
		"rename": renameScript, "destroy": destroyScript,
		"bind-out": bindOutScript, "bind-in": bindInScript, "bind-back": bindBackScript, "bind-same": bindSameScript,
		"list": listScript, "revoke": revokeScript, "info": infoScript, "peek": peekScript,
		"destroyall": destroyAllScript, "fix": fixScript,
	})
}
