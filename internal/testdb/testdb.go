// Package testdb gives tests a queue database of each kind: a SQLite file
// in t.TempDir(), and a PostgreSQL database created on the local server for
// the test and dropped at its end.
//
// The server is SLUICE_TEST_POSTGRES_URL, else
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. When it
// cannot be reached the test fails, unless SLUICE_TEST_POSTGRES=skip.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultServer is the local PostgreSQL the tests use.
const DefaultServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Drivers are the names For accepts, in test order.
var Drivers = []string{"sqlite", "postgres"}

// For returns a fresh, empty queue URL for driver ("sqlite" or "postgres").
func For(t testing.TB, driver string) string {
	t.Helper()
	if driver == "sqlite" {
		return filepath.Join(t.TempDir(), "queue.db")
	}
	return Postgres(t)
}

// Postgres creates a database sluice_test_<random> and returns its URL; the
// database is dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	server := os.Getenv("SLUICE_TEST_POSTGRES_URL")
	if server == "" {
		server = DefaultServer
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		if os.Getenv("SLUICE_TEST_POSTGRES") == "skip" {
			t.Skipf("PostgreSQL unreachable and SLUICE_TEST_POSTGRES=skip: %v", err)
		}
		t.Fatalf("PostgreSQL unreachable at %s (start it, or set SLUICE_TEST_POSTGRES=skip): %v", server, err)
	}
	defer conn.Close(context.Background())
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "sluice_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
