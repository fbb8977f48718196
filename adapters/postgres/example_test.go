package postgres_test

import (
	"context"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionkit/sessionkit/adapters/postgres"
	"github.com/sessionkit/sessionkit/sessionkit"
)

// A Manager on PostgreSQL, on a pool the program already has. The
// connection string turns synchronous_commit off for the store's
// connections: every session operation writes, and need not wait for a
// WAL flush (docs/backends.md).
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.internal/app?synchronous_commit=off")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(pool, &postgres.Options{TablePrefix: "web_"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // stops the sweeper
	// Once per deployment, or on every start: it does nothing if the
	// tables exist.
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	m, err := sessionkit.New(&sessionkit.Options{Store: store, IdleTimeout: 30 * time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	_ = m // m.Middleware(handler) …
}
