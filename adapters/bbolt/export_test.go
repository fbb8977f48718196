package bbolt

import (
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionkit/sessionkit/adaptertest"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// Corrupt damages the session under key the way kind says, as a bug, a
// hand edit with a bbolt tool or a bad restore would. It is the harness's
// Corrupt hook, in a test file so that it does not ship. Garbage cannot
// happen here: a session is not one blob of bytes (junk metadata is
// MetadataMalformed, junk in the session's place is WrongType).
func (s *Store) Corrupt(key string, kind adaptertest.Corruption) error {
	k := []byte(key)
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, sessions, idx := tx.Bucket(bucketMeta), tx.Bucket(bucketSessions), tx.Bucket(bucketExpiry)
		m, ok := parseMeta(meta.Get(k))
		if !ok || sessions.Bucket(k) == nil {
			return sessionkit.ErrNotFound
		}
		unindex := func() error { // the record no longer expires
			if err := idx.Delete(indexKey(m.expires, k)); err != nil {
				return err
			}
			return meta.Delete(k)
		}
		switch kind {
		case adaptertest.MetadataRemoved:
			return unindex()
		case adaptertest.MetadataMalformed:
			// Not 32 bytes: the index entry it had can no longer be found
			// from it, and stays behind.
			return meta.Put(k, []byte("1.5"))
		case adaptertest.WrongType:
			if err := unindex(); err != nil {
				return err
			}
			if err := sessions.DeleteBucket(k); err != nil {
				return err
			}
			return sessions.Put(k, []byte("x"))
		}
		return errors.ErrUnsupported
	})
}

// IndexState counts what the user index keeps in the file, live or not:
// indexes, their entries, bindings, and index deadlines (userdue and
// userexpiry entries, which must agree).
type IndexState struct{ Indexes, Entries, Bindings, Due, DueEntries int }

func (s *Store) IndexState() IndexState {
	var st IndexState
	_ = s.db.View(func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		_ = users.ForEach(func(k, _ []byte) error {
			st.Indexes++
			if b := users.Bucket(k); b != nil {
				st.Entries += b.Stats().KeyN
			}
			return nil
		})
		st.Bindings = tx.Bucket(bucketBound).Stats().KeyN
		st.Due = tx.Bucket(bucketUserDue).Stats().KeyN
		st.DueEntries = tx.Bucket(bucketUserExpiry).Stats().KeyN
		return nil
	})
	return st
}

// IndexDeadline returns the index's deadline, zero if it has none.
func (s *Store) IndexDeadline(index string) time.Time {
	var d int64
	_ = s.db.View(func(tx *bolt.Tx) error {
		d = int64At(tx.Bucket(bucketUserDue).Get([]byte(index)))
		return nil
	})
	if d == 0 {
		return time.Time{}
	}
	return time.UnixMilli(d)
}
