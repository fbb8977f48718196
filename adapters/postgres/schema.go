package postgres

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sessionkit/sessionkit/sessionkit"
)

// schema is the tables and indexes, each with the DDL that makes it, in
// the order to make them. Migrate looks each name up in the catalog and
// runs the DDL of the missing ones only: DDL on a table takes a lock that
// waits for every transaction using the table, and PostgreSQL queues every
// later user of the table behind the waiting DDL (even CREATE INDEX IF NOT
// EXISTS takes it when the index exists), so DDL that need not run must not.
//
// Every operation refreshes its session's expiry, so a session's row is
// updated on every read. The schema keeps that update "HOT" (heap-only: the
// new row version goes on the same page and no index changes, about a
// quarter of the write-ahead log of an update that touches three indexes):
// no index covers expires, and the page keeps room for the new version
// (fillfactor 80). The sweeper goes by sweep_after instead, expires rounded
// up to the next minute, which changes (and costs an index entry) at most
// once a minute per session: a session is swept within a minute of its
// expiry, plus the sweep interval. Expiry itself, as every statement sees
// it, is exact to the microsecond.
//
// Indexes, and why each:
//
//   - sessions primary key (id): the fields' foreign key and the markers'
//     point at it; every statement reaches a session's row by id after
//     finding it by key.
//   - sessions_key (unique key): every operation finds its session by key,
//     and uniqueness is what makes Create and Rename refuse a taken key.
//   - sessions_sweep (sweep_after): the sweeper takes expired rows, oldest
//     first, without reading the table.
//   - sessions_record (record, markers only): deleting a record cascades to
//     the Rename markers that point at it; without it every delete would
//     scan the table. Markers are few, and so is this index.
//   - sessions_user (user_index, bound sessions only): a user's sessions,
//     for Bind's cap, UserSessions and Revoke (see below).
//   - fields primary key (session_id, name): a read or write of a field is
//     one index probe, a whole session one range scan, and deleting a
//     session cascades to its fields through it.
var schema = []object{
	{"{p}sessions", `CREATE TABLE IF NOT EXISTS {p}sessions (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	key         text        NOT NULL,
	created     timestamptz NOT NULL,
	idle        interval    NOT NULL,
	absolute    interval    NOT NULL,
	expires     timestamptz NOT NULL,
	sweep_after timestamptz NOT NULL,
	nfields     integer     NOT NULL,
	renamed_to  text,
	record      bigint REFERENCES {p}sessions (id) ON DELETE CASCADE,
	CONSTRAINT {p}sessions_key UNIQUE (key),
	CONSTRAINT {p}sessions_policy CHECK (idle > interval '0' AND absolute > interval '0'
		AND isfinite(created) AND expires <= created + absolute AND sweep_after >= expires),
	CONSTRAINT {p}sessions_nfields CHECK (nfields >= 0),
	CONSTRAINT {p}sessions_marker CHECK ((renamed_to IS NULL) = (record IS NULL) AND (record IS NULL
		OR (renamed_to <> '' AND nfields = 0 AND absolute <= {marker_ttl}))),
	` + bindingColumns("") + `,
	CONSTRAINT {p}sessions_binding ` + bindingCheck + `
) WITH (fillfactor = 80)`, ""},
	{"{p}sessions_sweep", `CREATE INDEX IF NOT EXISTS {p}sessions_sweep ON {p}sessions (sweep_after)`, ""},
	{"{p}sessions_record", `CREATE INDEX IF NOT EXISTS {p}sessions_record ON {p}sessions (record) WHERE record IS NOT NULL`, ""},
	{"{p}fields", `CREATE TABLE IF NOT EXISTS {p}fields (
	session_id bigint NOT NULL REFERENCES {p}sessions (id) ON DELETE CASCADE,
	name       text   NOT NULL,
	value      bytea  NOT NULL,
	PRIMARY KEY (session_id, name)
)`, ""},
	// The binding of a session to a user (sessionkit.Users), on the
	// session's own row: user_index (Binding.Index, the user's opaque
	// identifier), public_id, user_id, device and ip, all NULL on a session
	// bound to no user and on a Rename marker. On the row, Rename keeps the
	// binding (it changes only the key), Destroy and the sweeper remove it
	// with the session, and a user's index is the rows that name it: it
	// cannot list a session that is gone, nor miss a live one. A new table
	// has them from its CREATE; a table made before the binding gets them
	// here: nullable columns without a default rewrite nothing, and the
	// check is NOT VALID, which skips a scan of the table under its lock
	// (the rows there are all NULL, which it allows; every row written is
	// checked).
	{"{p}sessions.user_index", `ALTER TABLE {p}sessions
	` + bindingColumns("ADD COLUMN IF NOT EXISTS ") + `,
	ADD CONSTRAINT {p}sessions_binding ` + bindingCheck + ` NOT VALID`, "{p}sessions"},
	// sessions_user: a user's sessions, for the cap in Bind, UserSessions
	// and Revoke. Partial, so that sessions bound to no user cost no entry;
	// the refresh never changes user_index, so it stays heap-only. On a
	// large table made before the binding, CREATE INDEX blocks writes while
	// it builds: make it by hand first with CREATE INDEX CONCURRENTLY (same
	// name and definition), and Migrate finds it.
	{"{p}sessions_user", `CREATE INDEX IF NOT EXISTS {p}sessions_user ON {p}sessions (user_index) WHERE user_index IS NOT NULL`, ""},
}

// object is a table, an index or a column, and the DDL that makes it. An
// object that a table made before it lacks names the table (in): its
// DDL adds it to such a table, and does not run when the migration makes
// the table, whose CREATE has it.
type object struct{ name, ddl, in string }

// bindingColumns is the DDL of the binding's columns (all text), each
// after verb.
func bindingColumns(verb string) string {
	var cols []string
	for _, c := range []string{"user_index", "public_id", "user_id", "device", "ip"} {
		cols = append(cols, verb+c+" text")
	}
	return strings.Join(cols, ",\n\t")
}

// bindingCheck: the binding is all NULL (bound to no user) or all set,
// and never on a Rename marker.
const bindingCheck = `CHECK (num_nulls(user_index, public_id, user_id, device, ip) IN (0, 5)
		AND (user_index IS NULL OR record IS NULL AND public_id <> '' AND user_id <> ''))`

// The migration's own statements.
const (
	// missingSQL: of the names in $1, those the catalog does not have: a
	// table or index, or a column written "table.column". to_regclass and
	// reading pg_attribute take no lock on the table.
	missingSQL = `SELECT coalesce(array_agg(n), '{}') FROM unnest($1::text[]) n
	WHERE CASE WHEN strpos(n, '.') = 0 THEN to_regclass(n) IS NULL
		ELSE NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass(split_part(n, '.', 1))
			AND attname = split_part(n, '.', 2) AND attnum > 0 AND NOT attisdropped) END`

	// migrateLockSQL keeps two processes from migrating at once, which
	// could collide in the catalog (concurrent CREATE TABLE IF NOT EXISTS
	// can fail on pg_type's unique index).
	migrateLockSQL = `SELECT pg_advisory_xact_lock(hashtext('sessionkit migrate {p}'))`
)

// The statements. Every operation is one of them: one round trip, one
// implicit transaction. $1 is always the key.
//
// Reading under READ COMMITTED: a statement sees the tables as of its start,
// but a row it locks or updates it sees as of when it got the lock (after
// waiting for another writer to commit). So a statement finds the session's
// id by key in its snapshot (snap), then locks that row by id, re-checking
// that it is still live and still under the key: if a Rename moved it
// meanwhile, the key differs and the answer is ErrRenewed. Whatever must be
// exact once the lock is held, such as the field count that Set's limit
// checks, comes from the locked row (nfields), never from counting fields in
// the snapshot, which can predate a writer that committed while this
// statement waited. (Measured: under a waiting FOR UPDATE, count(*) of the
// fields misses the field the lock holder just inserted.)
const (
	// snap: the row under the key, as the statement's snapshot sees it.
	snapCTE = `snap AS (SELECT id, record IS NOT NULL AND expires > now() AS marker FROM {p}sessions WHERE key = $1)`

	// lockCTE locks the live record found in snap; here is false when a
	// Rename moved it away while this statement waited for the lock.
	lockCTE = `s AS (SELECT id, key = $1 AS here FROM {p}sessions
		WHERE id = (SELECT id FROM snap) AND record IS NULL AND expires > now() FOR UPDATE)`

	// touchCTE locks the live record and refreshes its expiry in one
	// update, for the statements that only read fields. A record moved away
	// meanwhile keeps its expiry.
	touchCTE = `s AS (UPDATE {p}sessions t
		SET expires = CASE WHEN key = $1 THEN ` + refresh + ` ELSE expires END,
			sweep_after = CASE WHEN key = $1 THEN ` + refreshSweep + ` ELSE sweep_after END
		WHERE id = (SELECT id FROM snap) AND record IS NULL AND expires > now()
		RETURNING id, key = $1 AS here, nfields, expires)`

	// refresh is the new expiry of a record t: its idle timeout from now,
	// or its absolute deadline if sooner.
	refresh = `least(now() + t.idle, t.created + t.absolute)`

	// durableCTE makes the statement's own transaction commit durably
	// (synchronous_commit on, for this transaction only) whatever the
	// connection's setting. Create, Rename and Destroy use it: storeurl runs
	// the pool with synchronous_commit off, since every read writes, and a
	// database crash must not undo an acknowledged login (a Renew: the old
	// token would live again) or logout. The statement must read it.
	durableCTE   = `durable AS (SELECT set_config('synchronous_commit', 'on', true))`
	refreshSweep = binStart + refresh + binEnd
	setRefresh   = `expires = ` + refresh + `, sweep_after = ` + refreshSweep

	// binStart + e + binEnd is sweep_after for an expiry e.
	binStart = `date_bin(interval '1 minute', `
	binEnd   = `, timestamptz '2000-01-01') + interval '1 minute'`

	// status: 0 done, 1 no live record (ErrNotFound), 2 a Rename marker or
	// a record that a Rename moved meanwhile (ErrRenewed).
	status = `CASE WHEN (SELECT here FROM s) THEN 0
		WHEN (SELECT marker FROM snap) OR EXISTS (SELECT FROM s) THEN 2
		ELSE 1 END`

	statusOK       = 0
	statusNotFound = 1
	statusRenewed  = 2
	statusExists   = 3
	statusDecode   = 4 // incr: the field holds no int64, or the sum leaves int64
	statusTooMany  = 5 // bind: the user is at the cap and the binding refuses

	// The bounds of int64, for incr.
	minInt64 = `-9223372036854775808`
	maxInt64 = `9223372036854775807`
)

// markerCTE leaves at the old key ($1) the marker of a record that a
// previous CTE, moved, gave the new key ($2): Rename and Bind.
var markerCTE = `marker AS (INSERT INTO {p}sessions (key, created, idle, absolute, expires, sweep_after, nfields, renamed_to, record)
		SELECT $1, now(), {marker_ttl}, {marker_ttl}, least(now() + {marker_ttl}, expires),
			` + sweepAfter(`least(now() + {marker_ttl}, expires)`) + `, 0, $2, id
		FROM moved
		RETURNING 1),`

// sweepAfter is sweep_after for an expiry e.
func sweepAfter(e string) string { return binStart + e + binEnd }

// queries are the statements of one table prefix.
type queries struct {
	schema      []object
	objects     []string // the names in schema
	migrateLock string

	create, get, getOne, getAll, keys, has, length, set, incr, pop, del  string
	touch, setExpiry, rename, destroy, count, sweepMarkers, sweepRecords string

	userLock, bind, bindNew, userSessions, revoke, info, scan, destroyAll string

	nfieldsCheck string // the constraint that Set's limit trips
	keyUnique    string // the constraint that a taken key trips
}

func newQueries(prefix string) *queries {
	q := &queries{
		schema:       slices.Clone(schema),
		migrateLock:  migrateLockSQL,
		nfieldsCheck: prefix + "sessions_nfields",
		keyUnique:    prefix + "sessions_key",

		// create: $2 idle, $3 absolute, $4 names, $5 values. An expired row
		// under the key (not swept yet) is deleted first, with what cascades
		// from it, so that the key can be used again; a live record or
		// marker makes the insert do nothing: ErrExists.
		create: `WITH gone AS (DELETE FROM {p}sessions WHERE key = $1 AND expires <= now() RETURNING 1),
	ins AS (INSERT INTO {p}sessions (key, created, idle, absolute, expires, sweep_after, nfields)
		SELECT $1, now(), $2::interval, $3::interval, now() + least($2::interval, $3::interval),
			` + sweepAfter(`now() + least($2::interval, $3::interval)`) + `, coalesce(cardinality($4::text[]), 0)
		WHERE (SELECT count(*) FROM gone) >= 0 -- after gone
		ON CONFLICT (key) DO NOTHING
		RETURNING id),
	f AS (INSERT INTO {p}fields (session_id, name, value)
		SELECT ins.id, u.name, u.value FROM ins, unnest($4::text[], $5::bytea[]) AS u(name, value)),
	` + durableCTE + `
	SELECT CASE WHEN EXISTS (SELECT FROM ins) THEN 0 ELSE 3 END FROM durable`,

		get: `WITH ` + snapCTE + `, ` + touchCTE + `
	SELECT ` + status + `, (SELECT array_agg(f.value ORDER BY n.i)
		FROM unnest($2::text[]) WITH ORDINALITY AS n(name, i)
		LEFT JOIN {p}fields f ON f.session_id = (SELECT id FROM s WHERE here) AND f.name = n.name)`,

		// getOne is get for one name, the common case, without the arrays.
		getOne: `WITH ` + snapCTE + `, ` + touchCTE + `
	SELECT ` + status + `, (SELECT value FROM {p}fields WHERE session_id = (SELECT id FROM s WHERE here) AND name = $2)`,

		getAll: `WITH ` + snapCTE + `, ` + touchCTE + `
	SELECT ` + status + `, a.names, a.vals
	FROM (SELECT array_agg(name) AS names, array_agg(value) AS vals
		FROM {p}fields WHERE session_id = (SELECT id FROM s WHERE here)) a`,

		keys: `WITH ` + snapCTE + `, ` + touchCTE + `
	SELECT ` + status + `, (SELECT array_agg(name) FROM {p}fields WHERE session_id = (SELECT id FROM s WHERE here))`,

		has: `WITH ` + snapCTE + `, ` + touchCTE + `
	SELECT ` + status + `, EXISTS (SELECT FROM {p}fields WHERE session_id = (SELECT id FROM s WHERE here) AND name = $2)`,

		length: `WITH ` + snapCTE + `, ` + touchCTE + `
	SELECT ` + status + `, coalesce((SELECT nfields FROM s), 0)`,

		touch: `WITH ` + snapCTE + `, ` + touchCTE + `
	SELECT ` + status + `, coalesce((SELECT expires FROM s WHERE here) - now(), interval '0')`,

		// set: $2 names, $3 values, $4 the field limit (0: none). It adds the
		// fields it inserted (xmax = 0 marks an inserted row, as opposed to
		// one that ON CONFLICT updated) to the locked count. Over the limit
		// it writes -1, which the nfields check refuses: the error undoes the
		// whole statement, so nothing is written (ErrTooManyFields).
		set: `WITH ` + snapCTE + `, ` + lockCTE + `,
	w AS (INSERT INTO {p}fields (session_id, name, value)
		SELECT s.id, u.name, u.value FROM s, unnest($2::text[], $3::bytea[]) AS u(name, value) WHERE s.here
		ON CONFLICT (session_id, name) DO UPDATE SET value = excluded.value
		RETURNING xmax = 0 AS inserted),
	n AS (SELECT count(*) FILTER (WHERE inserted) AS added FROM w),
	u AS (UPDATE {p}sessions t SET ` + setRefresh + `,
		nfields = CASE WHEN $4::int > 0 AND t.nfields + n.added > $4::int THEN -1 ELSE t.nfields + n.added END
		FROM s, n WHERE t.id = s.id AND s.here)
	SELECT ` + status,

		// incr: $2 the name, $3 delta, $4 the field limit (0: none). Like set,
		// one field: a new field holds $3's decimal text and counts against
		// the limit. A field that exists is updated by ON CONFLICT, which sees
		// its latest committed value (not the snapshot's, which may predate an
		// Incr that committed while this one waited for the lock), but only if
		// that value is the decimal text of an int64 (what strconv.ParseInt
		// takes: a sign, then ASCII digits) and the sum stays in int64: else
		// nothing is written, the expiry included, and the status is 4
		// (ErrDecode). The text is checked on encode(…, 'escape'), which turns
		// NUL, backslash and every byte over 0x7F into a backslash escape and
		// never fails (convert_from fails on bytes that are not UTF-8), and
		// before any cast (CASE, not AND, fixes the order): 0* and {1,19} keep
		// the numeric cast from failing on a long string of digits.
		incr: `WITH ` + snapCTE + `, ` + lockCTE + `,
	w AS (INSERT INTO {p}fields AS f (session_id, name, value)
		SELECT s.id, $2, convert_to($3::bigint::text, 'UTF8') FROM s WHERE s.here
		ON CONFLICT (session_id, name) DO UPDATE
			SET value = convert_to((encode(f.value, 'escape')::numeric + $3::bigint)::text, 'UTF8')
			WHERE CASE WHEN encode(f.value, 'escape') ~ '^[+-]?0*[0-9]{1,19}$'
				THEN encode(f.value, 'escape')::numeric BETWEEN ` + minInt64 + ` AND ` + maxInt64 + `
					AND encode(f.value, 'escape')::numeric + $3::bigint BETWEEN ` + minInt64 + ` AND ` + maxInt64 + `
				ELSE false END
		RETURNING xmax = 0 AS inserted, value),
	u AS (UPDATE {p}sessions t SET ` + setRefresh + `,
		nfields = CASE WHEN NOT w.inserted THEN t.nfields WHEN $4::int > 0 AND t.nfields + 1 > $4::int THEN -1
			ELSE t.nfields + 1 END
		FROM s, w WHERE t.id = s.id AND s.here)
	SELECT CASE WHEN (SELECT here FROM s) AND NOT EXISTS (SELECT FROM w) THEN 4 ELSE ` + status + ` END,
		coalesce((SELECT convert_from(value, 'UTF8')::bigint FROM w), 0)`,

		// pop: $2 the name. It deletes the field, returning its value, and
		// subtracts it from the count as del does. Of two Pops of one field,
		// the second waits for the first's lock, then finds the field gone
		// (a deleted row is not deleted twice) and returns NULL.
		pop: `WITH ` + snapCTE + `, ` + lockCTE + `,
	d AS (DELETE FROM {p}fields WHERE session_id = (SELECT id FROM s WHERE here) AND name = $2 RETURNING value),
	u AS (UPDATE {p}sessions t SET ` + setRefresh + `, nfields = greatest(t.nfields - (SELECT count(*) FROM d), 0)
		FROM s WHERE t.id = s.id AND s.here)
	SELECT ` + status + `, (SELECT value FROM d)`,

		// del: $2 the names, or NULL for every field (Clear). It subtracts
		// what it deleted from the count rather than recounting: a field
		// that a writer committed while this statement waited for the lock
		// is not in its snapshot, so it survives, and must stay counted. The
		// count never goes below zero, however a hand edit left it.
		del: `WITH ` + snapCTE + `, ` + lockCTE + `,
	d AS (DELETE FROM {p}fields WHERE session_id = (SELECT id FROM s WHERE here)
		AND ($2::text[] IS NULL OR name = ANY ($2::text[])) RETURNING 1),
	u AS (UPDATE {p}sessions t SET ` + setRefresh + `, nfields = greatest(t.nfields - (SELECT count(*) FROM d), 0)
		FROM s WHERE t.id = s.id AND s.here)
	SELECT ` + status,

		// setExpiry: $2 idle, $3 absolute. A lifetime that has already run
		// out (counted from creation) deletes the record.
		setExpiry: `WITH ` + snapCTE + `, ` + lockCTE + `,
	gone AS (DELETE FROM {p}sessions t USING s WHERE t.id = s.id AND s.here
		AND t.created + $3::interval <= now() RETURNING 1),
	u AS (UPDATE {p}sessions t SET idle = $2::interval, absolute = $3::interval,
			expires = least(now() + $2::interval, t.created + $3::interval),
			sweep_after = ` + sweepAfter(`least(now() + $2::interval, t.created + $3::interval)`) + `
		FROM s WHERE t.id = s.id AND s.here AND t.created + $3::interval > now())
	SELECT CASE WHEN EXISTS (SELECT FROM gone) THEN 1 ELSE ` + status + ` END`,

		// rename: $2 the new key. The record's row changes key (its id, and
		// so its fields, stay) and a marker row takes the old key, naming the
		// new one; the marker's own lifetime (absolute, from its creation) is
		// RenewMarkerTTL, which the marker check holds it to. An expired row under the new
		// key is deleted first; a live one refuses (ErrExists), as does the
		// unique key if one appears meanwhile. Of two Renames of one key, the
		// second finds the row under another key once it has the lock:
		// ErrRenewed.
		rename: `WITH ` + snapCTE + `, ` + lockCTE + `,
	dst AS (SELECT id, expires > now() AS live FROM {p}sessions WHERE key = $2),
	gone AS (DELETE FROM {p}sessions WHERE id = (SELECT id FROM dst WHERE NOT live) AND (SELECT here FROM s) RETURNING 1),
	moved AS (UPDATE {p}sessions t SET key = $2, ` + setRefresh + `
		FROM s WHERE t.id = s.id AND s.here AND NOT EXISTS (SELECT FROM dst WHERE live)
			AND (SELECT count(*) FROM gone) >= 0 -- after gone
		RETURNING t.id, t.created, t.idle, t.absolute, t.expires),
	` + markerCTE + `
	` + durableCTE + `
	SELECT CASE WHEN EXISTS (SELECT FROM marker) THEN 0 WHEN (SELECT here FROM s) THEN 3 ELSE ` + status + ` END FROM durable`,

		// destroy deletes the row under the key or, if it is a live marker,
		// the record it points at, and the cascade takes the fields and every
		// marker pointing at the record, this one included. One row, then its
		// dependents: every Destroy locks in that order, so two of them (one
		// through the old key, one through the new) cannot deadlock.
		destroy: `WITH snap AS (SELECT id, CASE WHEN expires > now() THEN record END AS follow FROM {p}sessions WHERE key = $1),
	` + durableCTE + `
	DELETE FROM {p}sessions WHERE id = (SELECT coalesce(follow, id) FROM snap CROSS JOIN durable)`,

		// count: a live row's sweep_after is in the future, so the index
		// narrows the scan when many rows await the sweeper.
		count: `SELECT count(*) FROM {p}sessions WHERE sweep_after > now() AND expires > now() AND record IS NULL AND starts_with(key, $1)`,

		// sweepMarkers and sweepRecords delete up to $1 expired markers, or
		// records, skipping rows another transaction holds, so that several
		// processes can sweep at once. Deleting a record deletes its markers
		// (the foreign key's cascade), which waits for a sweep that holds
		// one of them: a statement that held markers and records both could
		// wait so for another holding the reverse, a deadlock. Markers go in
		// statements of their own, which delete nothing else and so never
		// wait; a statement on records waits at most for one of those.
		sweepMarkers: `DELETE FROM {p}sessions WHERE id IN (SELECT id FROM {p}sessions
		WHERE sweep_after <= now() AND record IS NOT NULL ORDER BY sweep_after LIMIT $1 FOR UPDATE SKIP LOCKED)`,
		sweepRecords: `DELETE FROM {p}sessions WHERE id IN (SELECT id FROM {p}sessions
		WHERE sweep_after <= now() AND record IS NULL ORDER BY sweep_after LIMIT $1 FOR UPDATE SKIP LOCKED)`,
	}
	r := strings.NewReplacer("{p}", prefix,
		"{marker_ttl}", fmt.Sprintf("interval '%d microseconds'", sessionkit.RenewMarkerTTL.Microseconds()))
	for i := range q.schema {
		q.schema[i].name = r.Replace(q.schema[i].name)
		q.schema[i].ddl = r.Replace(q.schema[i].ddl)
		q.schema[i].in = r.Replace(q.schema[i].in)
		q.objects = append(q.objects, q.schema[i].name)
	}
	q.userStatements()
	for _, s := range []*string{&q.migrateLock, &q.create, &q.get, &q.getOne, &q.getAll, &q.keys, &q.has, &q.length,
		&q.set, &q.incr, &q.pop, &q.del, &q.touch, &q.setExpiry, &q.rename, &q.destroy, &q.count, &q.sweepMarkers, &q.sweepRecords,
		&q.userLock, &q.bind, &q.bindNew, &q.userSessions, &q.revoke, &q.info, &q.scan, &q.destroyAll} {
		*s = r.Replace(*s)
	}
	return q
}

// The statements of sessionkit.Users and sessionkit.Scanner.
//
// A user's index is the rows whose user_index names it (sessions_user). Of
// the statements that change which rows those are, Bind adds one, or moves
// one from another user, and enforces the cap; Revoke removes them. Both
// must see every Bind of the user that came before them, which one
// statement cannot: its snapshot is taken when it starts, so a statement
// that waited for a lock inside itself would still miss what the lock
// holder committed, and count the user's sessions short. So each runs in a
// transaction of two statements, sent together in one round trip (a pgx
// batch: one pipeline, one Sync, one implicit transaction): userLock takes
// the user's transaction-scoped advisory lock, and the statement after it
// takes its snapshot once it has the lock, after the previous holder has
// committed (a commit is visible before its locks are released). The lock
// is held until the commit, one statement later. Nothing else takes it:
// ordinary operations on a bound session run as on any other, and Rename,
// which moves a session's row to another key, leaves its user_index alone.
//
// The lock is an advisory lock on a hash of the table prefix and the index
// key; two users whose hashes collide only wait for each other. A Bind
// that moves a session from one user to another locks both, in the order
// of their hashes, so that two such Binds in opposite directions cannot
// deadlock.
const (
	// infoColumns are the columns of a SessionInfo, in its order; empty
	// strings for a session bound to no user.
	infoColumns = `key, coalesce(public_id, '') AS public_id, coalesce(user_id, '') AS user_id,
	coalesce(device, '') AS device, coalesce(ip, '') AS ip, created, expires, idle`

	// mineCTE locks the user's live sessions but the one being bound, in
	// the order of their ids as every statement that locks several
	// sessions does, when there is a cap to enforce. $max and $index are
	// replaced, {self} is the id of the session being bound (or NULL).
	mineCTE = `mine AS (SELECT id, created FROM {p}sessions
		WHERE $max::int > 0 AND user_index = $index AND record IS NULL AND expires > now()
			AND id IS DISTINCT FROM {self}
		ORDER BY id FOR UPDATE)`

	// evictCTE deletes the oldest of mine (by creation) until one more
	// fits under the cap, when the binding goes ahead (ok).
	evictCTE = `evict AS (DELETE FROM {p}sessions WHERE id IN (SELECT id FROM mine ORDER BY created, id
		LIMIT greatest((SELECT count(*) FROM mine) - $max::int + 1, 0)) AND (SELECT go FROM ok) RETURNING 1)`

	// refusedExpr: the user is at the cap and the binding refuses.
	refusedExpr = `($refuse::bool AND $max::int > 0 AND (SELECT count(*) FROM mine) >= $max::int)`
)

func (q *queries) userStatements() {
	// userLock: $1 the user's index, $2 a key (or NULL) whose session's
	// current user is locked too. It answers how many locks it took.
	//
	// It also sets plan_cache_mode for the transaction, so for the
	// statement after it: generic plans. PostgreSQL plans a prepared
	// statement afresh for its first five runs, then keeps a generic plan
	// only if its estimate is no worse than theirs; bind's and bindNew's
	// custom plans fold away the cap's subqueries when $max is 0, so their
	// estimate is always better, and every Bind paid for planning a dozen
	// CTEs: measured, Bind of a new session took 2.4 times a Create, and
	// 1.2 times with generic plans, which use the same indexes.
	q.userLock = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
	count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtextextended('sessionkit user {p}' || i, 0) AS h
	FROM unnest(ARRAY[$1::text, (SELECT user_index FROM {p}sessions WHERE key = $2::text)]) i
	WHERE i IS NOT NULL ORDER BY h) l`

	// bind: $1 the old key, $2 the new key, $3 the index, $4 the public
	// ID, $5 the user, $6 the device, $7 the IP, $8 the cap (0: none), $9
	// whether to refuse over it. Rename (see rename) that also writes the
	// binding, after the checks in order: the old key (ErrNotFound,
	// ErrRenewed), the new key (ErrExists), the cap (ErrTooManySessions);
	// any of them fails it whole. Over the cap without refusing, it deletes
	// the user's oldest sessions, in the same statement.
	r := strings.NewReplacer("$max", "$8", "$refuse", "$9", "$index", "$3", "{self}", "(SELECT id FROM snap)")
	q.bind = `WITH ` + snapCTE + `, ` + lockCTE + `,
	dst AS (SELECT id, expires > now() AS live FROM {p}sessions WHERE key = $2),
	` + r.Replace(mineCTE) + `,
	ok AS (SELECT coalesce((SELECT here FROM s), false) AND NOT EXISTS (SELECT FROM dst WHERE live)
		AND NOT ` + r.Replace(refusedExpr) + ` AS go),
	gone AS (DELETE FROM {p}sessions WHERE id = (SELECT id FROM dst WHERE NOT live) AND (SELECT go FROM ok) RETURNING 1),
	` + r.Replace(evictCTE) + `,
	moved AS (UPDATE {p}sessions t SET key = $2, ` + setRefresh + `,
			user_index = $3, public_id = $4, user_id = $5, device = $6, ip = $7
		FROM s WHERE t.id = s.id AND (SELECT go FROM ok)
			AND (SELECT count(*) FROM gone) >= 0 -- after gone
		RETURNING t.id, t.expires),
	` + markerCTE + `
	` + durableCTE + `
	SELECT CASE WHEN EXISTS (SELECT FROM marker) THEN 0
		WHEN (SELECT here FROM s) AND EXISTS (SELECT FROM dst WHERE live) THEN 3
		WHEN (SELECT here FROM s) THEN 5
		ELSE ` + status + ` END FROM durable`

	// bindNew: $1 the new key, $2 the index, $3 the public ID, $4 the
	// user, $5 the device, $6 the IP, $7 the cap, $8 whether to refuse, $9
	// idle, $10 absolute. Create of an empty session that carries the
	// binding, with bind's cap. A key that a concurrent Create takes trips
	// the unique key, which undoes the statement (ErrExists).
	r = strings.NewReplacer("$max", "$7", "$refuse", "$8", "$index", "$2", "{self}", "NULL::bigint")
	q.bindNew = `WITH dst AS (SELECT id, expires > now() AS live FROM {p}sessions WHERE key = $1),
	` + r.Replace(mineCTE) + `,
	ok AS (SELECT NOT EXISTS (SELECT FROM dst WHERE live) AND NOT ` + r.Replace(refusedExpr) + ` AS go),
	gone AS (DELETE FROM {p}sessions WHERE id = (SELECT id FROM dst WHERE NOT live) AND (SELECT go FROM ok) RETURNING 1),
	` + r.Replace(evictCTE) + `,
	ins AS (INSERT INTO {p}sessions (key, created, idle, absolute, expires, sweep_after, nfields,
			user_index, public_id, user_id, device, ip)
		SELECT $1, now(), $9::interval, $10::interval, now() + least($9::interval, $10::interval),
			` + sweepAfter(`now() + least($9::interval, $10::interval)`) + `, 0, $2, $3, $4, $5, $6
		WHERE (SELECT go FROM ok) AND (SELECT count(*) FROM gone) >= 0 -- after gone
		RETURNING 1),
	` + durableCTE + `
	SELECT CASE WHEN EXISTS (SELECT FROM ins) THEN 0 WHEN EXISTS (SELECT FROM dst WHERE live) THEN 3 ELSE 5 END FROM durable`

	// userSessions: $1 the index. It refreshes nothing, and writes only
	// to delete the user's expired rows (the index's dead entries), which
	// would otherwise wait for the sweeper: rows that another statement
	// holds are skipped, so it never waits for a lock, and can deadlock
	// with nothing.
	q.userSessions = `WITH dead AS (DELETE FROM {p}sessions WHERE id IN (SELECT id FROM {p}sessions
		WHERE user_index = $1 AND record IS NULL AND expires <= now() FOR UPDATE SKIP LOCKED))
	SELECT ` + infoColumns + ` FROM {p}sessions
	WHERE user_index = $1 AND record IS NULL AND expires > now()`

	// revoke: $1 the index, $2 the public IDs (NULL: all), $3 the one to
	// spare. It deletes the sessions, live or expired, locking them in the
	// order of their ids (as bind's cap does, so the two cannot deadlock),
	// and answers how many of them were live once locked. The cascade takes
	// their fields and Rename markers.
	q.revoke = `WITH v AS (SELECT id, expires > now() AS live FROM {p}sessions
		WHERE user_index = $1 AND record IS NULL AND ($2::text[] IS NULL OR public_id = ANY ($2::text[]))
			AND public_id <> $3
		ORDER BY id FOR UPDATE),
	d AS (DELETE FROM {p}sessions t USING v WHERE t.id = v.id RETURNING v.live),
	` + durableCTE + `
	SELECT (SELECT count(*) FILTER (WHERE live) FROM d) FROM durable`

	// info: $1 the key. A read, like userSessions.
	q.info = `SELECT ` + infoColumns + ` FROM {p}sessions WHERE key = $1 AND record IS NULL AND expires > now()`

	// scan: $1 the prefix, $2 the id to continue after, $3 the page size.
	// It walks the rows in the order of their ids (the primary key), which
	// neither Rename nor Bind changes, so a session that lives through the
	// walk is met exactly once however often it is renewed. Each page reads
	// $3 rows, whatever they are, and answers the sessions among them, with
	// the last id read and how many rows it read: a prefix that few rows
	// match costs pages with few sessions, never a page that reads the
	// table. The summary comes on every row, and on a row of NULLs when no
	// session matches.
	q.scan = `WITH w AS MATERIALIZED (SELECT * FROM {p}sessions WHERE id > $2 ORDER BY id LIMIT $3),
	m AS (SELECT id, ` + infoColumns + ` FROM w
		WHERE starts_with(key, $1) AND record IS NULL AND expires > now())
	SELECT t.last, t.n, m.* FROM (SELECT max(id) AS last, count(*) AS n FROM w) t LEFT JOIN m ON true ORDER BY m.id`

	// destroyAll: $1 the prefix, $2 the id to continue after, $3 the
	// batch size. It deletes up to $3 rows under the prefix (sessions,
	// live or not, and markers), locking them in the order of their ids,
	// and answers the last id, how many rows and how many live sessions it
	// deleted. A row that another statement deletes meanwhile is skipped,
	// and the batch filled from the rows after it.
	q.destroyAll = `WITH v AS (SELECT id, record IS NULL AND expires > now() AS live FROM {p}sessions
		WHERE id > $2 AND starts_with(key, $1) ORDER BY id LIMIT $3 FOR UPDATE),
	d AS (DELETE FROM {p}sessions t USING v WHERE t.id = v.id RETURNING v.id, v.live),
	` + durableCTE + `
	SELECT coalesce((SELECT max(id) FROM v), 0), (SELECT count(*) FROM v), (SELECT count(*) FILTER (WHERE live) FROM d)
	FROM durable`
}
