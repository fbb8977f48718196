package sessionkit

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// EventKind says what happened to a session.
type EventKind int

// The lifecycle events that the Manager emits. They come from the Manager,
// not from the store's notifications, so they are the same on every
// adapter and on Redis Cluster.
const (
	// EventCreated: a session was stored for the first time.
	EventCreated EventKind = iota + 1
	// EventRenewed: a session got a new token (Session.Renew); LogID is the
	// new token's and OldLogID the old one's.
	EventRenewed
	// EventDestroyed: a session was ended by Session.Destroy (logout).
	EventDestroyed
	// EventGone: a request carried a well-formed token whose session no
	// longer exists (expired, destroyed elsewhere, or never issued).
	EventGone
	// EventRejected: a request carried a session cookie or header, or Load
	// got a token, that is not shaped like an issued token.
	EventRejected
	// EventStoreError: a store operation failed for the store's own
	// reasons, an error matching ErrUnavailable (Err says how). The
	// caller's bad input, a renewed session and a done context are not
	// reported.
	EventStoreError
	// EventBound: a session was bound to a user (Bind) under a new token;
	// LogID is the new token's, OldLogID the old one's (empty when Bind
	// created the session).
	EventBound
	// EventRevoked: sessions were ended by RevokeSession, RevokeUser,
	// RevokeOthers or RevokeAll; Sessions says how many. LogID is empty:
	// a revocation names no token.
	EventRevoked
)

func (k EventKind) String() string {
	switch k {
	case EventCreated:
		return "created"
	case EventRenewed:
		return "renewed"
	case EventDestroyed:
		return "destroyed"
	case EventGone:
		return "gone"
	case EventRejected:
		return "rejected"
	case EventStoreError:
		return "store_error"
	case EventBound:
		return "bound"
	case EventRevoked:
		return "revoked"
	}
	return "unknown"
}

// Event is one lifecycle event of a session. It never carries a token.
type Event struct {
	Kind EventKind
	// LogID identifies the session's token (see LogID); empty for
	// EventRejected, whose token is not one.
	LogID string
	// OldLogID is the previous token's LogID, for EventRenewed.
	OldLogID string
	// Time is the Manager's clock at the event.
	Time time.Time
	// Context is the context of the call that caused the event: the
	// request's, inside the middleware.
	Context context.Context
	// Err is the store's error, for EventStoreError.
	Err error
	// Sessions is how many sessions ended, for EventRevoked.
	Sessions int
}

// emit sends an event to Options.OnEvent and logs it at Debug level. With
// no hook and Debug disabled it costs a nil check and a level check, and
// builds nothing.
func (m *Manager) emit(ctx context.Context, kind EventKind, token, oldToken string, err error) {
	logging := m.logger.Enabled(ctx, slog.LevelDebug)
	if m.onEvent == nil && !logging {
		return
	}
	ev := Event{Kind: kind, Time: m.now(), Context: ctx, Err: err}
	if token != "" {
		ev.LogID = LogID(token)
	}
	if oldToken != "" {
		ev.OldLogID = LogID(oldToken)
	}
	if m.onEvent != nil {
		m.onEvent(ev)
	}
	if logging {
		attrs := []slog.Attr{slog.String("event", kind.String()), slog.String("session", ev.LogID)}
		if ev.OldLogID != "" {
			attrs = append(attrs, slog.String("old_session", ev.OldLogID))
		}
		if err != nil {
			attrs = append(attrs, slog.Any("error", err))
		}
		m.logger.LogAttrs(ctx, slog.LevelDebug, "sessionkit: "+kind.String(), attrs...)
	}
}

// storeError reports a store operation that failed for the store's own
// reasons: the contract marks those ErrUnavailable. The caller's input, a
// renewed session and a done context are not the store's failures.
func (m *Manager) storeError(ctx context.Context, token string, err error) {
	if errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
		m.emit(ctx, EventStoreError, token, "", err)
	}
}
