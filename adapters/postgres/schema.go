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
		OR (renamed_to <> '' AND nfields = 0 AND absolute <= {marker_ttl})))
) WITH (fillfactor = 80)`},
	{"{p}sessions_sweep", `CREATE INDEX IF NOT EXISTS {p}sessions_sweep ON {p}sessions (sweep_after)`},
	{"{p}sessions_record", `CREATE INDEX IF NOT EXISTS {p}sessions_record ON {p}sessions (record) WHERE record IS NOT NULL`},
	{"{p}fields", `CREATE TABLE IF NOT EXISTS {p}fields (
	session_id bigint NOT NULL REFERENCES {p}sessions (id) ON DELETE CASCADE,
	name       text   NOT NULL,
	value      bytea  NOT NULL,
	PRIMARY KEY (session_id, name)
)`},
}

// object is a table or an index, and the DDL that makes it.
type object struct{ name, ddl string }

// The migration's own statements.
const (
	// missingSQL: of the names in $1, those the catalog does not have.
	// to_regclass takes no lock.
	missingSQL = `SELECT coalesce(array_agg(n), '{}') FROM unnest($1::text[]) n WHERE to_regclass(n) IS NULL`

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

	// The bounds of int64, for incr.
	minInt64 = `-9223372036854775808`
	maxInt64 = `9223372036854775807`
)

// sweepAfter is sweep_after for an expiry e.
func sweepAfter(e string) string { return binStart + e + binEnd }

// queries are the statements of one table prefix.
type queries struct {
	schema      []object
	objects     []string // the names in schema
	migrateLock string

	create, get, getOne, getAll, keys, has, length, set, incr, pop, del  string
	touch, setExpiry, rename, destroy, count, sweepMarkers, sweepRecords string

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
	marker AS (INSERT INTO {p}sessions (key, created, idle, absolute, expires, sweep_after, nfields, renamed_to, record)
		SELECT $1, now(), {marker_ttl}, {marker_ttl}, least(now() + {marker_ttl}, expires),
			` + sweepAfter(`least(now() + {marker_ttl}, expires)`) + `, 0, $2, id
		FROM moved
		RETURNING 1),
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
		q.objects = append(q.objects, q.schema[i].name)
	}
	for _, s := range []*string{&q.migrateLock, &q.create, &q.get, &q.getOne, &q.getAll, &q.keys, &q.has, &q.length,
		&q.set, &q.incr, &q.pop, &q.del, &q.touch, &q.setExpiry, &q.rename, &q.destroy, &q.count, &q.sweepMarkers, &q.sweepRecords} {
		*s = r.Replace(*s)
	}
	return q
}
