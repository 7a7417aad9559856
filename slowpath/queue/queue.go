// Package queue owns the slow path's durable queue and its results store,
// one database for both: River's tables for jobs, and sluice's tables for
// recorded verdicts, deferred work, results (findings, SBOMs, timings), the
// ledger of control runs and the exposure window. It runs on a SQLite file
// (the embedded default) or on PostgreSQL, with the same semantics on both.
package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// DefaultPath is the SQLite file used when no queue URL is given, relative
// to the workspace (the repository root).
const DefaultPath = ".sluice/queue.db"

// Options configure Open. The zero value is usable.
type Options struct {
	// Logger receives River's logs; nil discards them.
	Logger *slog.Logger
	// DBVersion is the vulnerability DB version jobs are keyed by ("" when
	// unknown): the same subject and policy with a new DB is queued again.
	DBVersion string
	// MaxAttempts is how many times a job runs before it is reported
	// failed; 0 means 5.
	MaxAttempts int
	// DeferredBudget is the budget of a "deferred" job; 0 means 10m.
	DeferredBudget time.Duration
	// Budgets are the slow-path budgets of the policy's slow controls, by
	// control name; a control not listed gets 10m.
	Budgets map[string]time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Repository is the GitHub repository ("owner/name") a check runs in,
	// recorded with the jobs its verdict defers on a commit so that the
	// worker can publish their check runs there; "" records none.
	Repository string
}

// Queue is an open queue database. It is safe for concurrent use.
type Queue struct {
	be     backend
	opts   Options
	url    string
	logger *slog.Logger
}

// Driver names the database behind a queue: "sqlite" or "postgres".
func (q *Queue) Driver() string { return q.be.name() }

// URL is where the queue is, as given to Open (a Postgres URL's password
// is masked).
func (q *Queue) URL() string { return redactURL(q.url) }

// Open opens (creating if needed) the queue at url and applies River's and
// sluice's migrations; both are idempotent. url is "postgres://..." (or
// "postgresql://..."), "sqlite:PATH", or a plain SQLite file path; the
// file's directory is created.
func Open(ctx context.Context, url string, opts Options) (*Queue, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.DeferredBudget <= 0 {
		opts.DeferredBudget = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var (
		be  backend
		err error
	)
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		be, err = openPostgres(ctx, url, opts.Logger)
	case url == "":
		return nil, errors.New("opening queue: no queue URL or path given")
	default:
		be, err = openSQLite(ctx, strings.TrimPrefix(url, "sqlite:"), opts.Logger)
	}
	if err != nil {
		return nil, fmt.Errorf("opening queue %s: %w", redactURL(url), err)
	}
	q := &Queue{be: be, opts: opts, url: url, logger: opts.Logger}
	if err := q.migrate(ctx); err != nil {
		be.close()
		return nil, fmt.Errorf("migrating queue %s: %w", redactURL(url), err)
	}
	return q, nil
}

// Close releases the database.
func (q *Queue) Close() { q.be.close() }

func (q *Queue) migrate(ctx context.Context) error {
	latest, err := q.be.riverLatest()
	if err != nil {
		return fmt.Errorf("reading River's migrations: %w", err)
	}
	if q.schemaCurrent(ctx, latest) {
		return nil
	}
	// Processes opening a new queue at once take turns: on SQLite River's
	// migrations and sluice's schema share one BEGIN IMMEDIATE transaction;
	// on Postgres (where River's migrations cannot all share one
	// transaction) a session advisory lock is held around both.
	unlock, err := q.be.lock(ctx)
	if err != nil {
		return fmt.Errorf("locking for migrations: %w", err)
	}
	defer unlock()
	return q.inTx(ctx, func(tx txn) error {
		if err := q.be.migrateRiver(ctx, tx); err != nil {
			return fmt.Errorf("applying River's migrations: %w", err)
		}
		for _, stmt := range schema(q.be.name()) {
			if _, err := tx.exec(ctx, stmt); err != nil {
				return fmt.Errorf("applying sluice's schema: %w", err)
			}
		}
		_, err := tx.exec(ctx, "INSERT INTO sluice_schema (version) VALUES ($1) ON CONFLICT (version) DO NOTHING", schemaVersion)
		return err
	})
}

// schemaCurrent reports, in one query, whether River's tables are at
// riverLatest and sluice's at schemaVersion: the common case, where a
// check opening the queue need not migrate anything.
func (q *Queue) schemaCurrent(ctx context.Context, riverLatest int) bool {
	current := false
	_ = q.inTx(ctx, func(tx txn) error {
		r, err := tx.query(ctx, `SELECT (SELECT max(version) FROM river_migration WHERE line = 'main'), (SELECT max(version) FROM sluice_schema)`)
		if err != nil {
			return err
		}
		defer r.Close()
		var rv, sv sql.NullInt64
		if r.Next() && r.Scan(&rv, &sv) == nil {
			current = rv.Int64 >= int64(riverLatest) && sv.Int64 >= schemaVersion
		}
		return errors.New("read only: roll back")
	})
	return current
}

// inTx runs fn in one transaction, committed when fn returns nil.
func (q *Queue) inTx(ctx context.Context, fn func(tx txn) error) error {
	tx, err := q.be.begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.rollback(ctx)
		return err
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

func latestVersion(ms []rivermigrate.Migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Client is the part of a River client the worker uses, whichever the
// driver.
type Client interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	JobGet(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
}

// NewClient makes a River client on the queue's database with config
// (workers, queues, rescue and retry settings).
func (q *Queue) NewClient(config *river.Config) (Client, error) {
	if config.Logger == nil {
		config.Logger = q.logger
	}
	return q.be.newClient(config)
}

// backend is what differs between SQLite and Postgres.
type backend interface {
	name() string
	begin(ctx context.Context) (txn, error)
	// migrateRiver applies River's migrations in tx.
	migrateRiver(ctx context.Context, tx txn) error
	// lock serialises migrations between processes until the returned
	// function is called.
	lock(ctx context.Context) (func(), error)
	// riverLatest is the latest River migration this build knows.
	riverLatest() (int, error)
	newClient(config *river.Config) (Client, error)
	client() Client
	close()
}

// txn is one transaction: sluice's tables and River inserts share it.
type txn interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	query(ctx context.Context, query string, args ...any) (rows, error)
	insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	commit(ctx context.Context) error
	rollback(ctx context.Context)
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// --- SQLite ---

type sqliteBackend struct {
	db     *sql.DB
	driver *riversqlite.Driver
	ins    *river.Client[*sql.Tx]
}

func openSQLite(ctx context.Context, path string, logger *slog.Logger) (*sqliteBackend, error) {
	if err := mkdirFor(path); err != nil {
		return nil, err
	}
	// One writer at a time (riversqlite's advice), WAL so readers in other
	// processes do not block, a busy timeout for those other processes,
	// and BEGIN IMMEDIATE so a transaction never fails upgrading to write.
	// The busy timeout comes first: the pragmas run in order, and switching
	// a new file to WAL while another process creates it is busy too.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	// Switching a file to WAL needs it to itself: when processes open a
	// new queue at once, SQLite may answer busy without waiting (a lock
	// upgrade that would deadlock is refused at once), so the first
	// connection is retried for as long as the busy timeout would wait.
	for wait, deadline := 5*time.Millisecond, time.Now().Add(10*time.Second); ; wait = min(2*wait, 200*time.Millisecond) {
		err = db.PingContext(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			db.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	b := &sqliteBackend{db: db, driver: riversqlite.New(db)}
	ins, err := river.NewClient(b.driver, &river.Config{Logger: logger})
	if err != nil {
		db.Close()
		return nil, err
	}
	b.ins = ins
	return b, nil
}

// isBusy reports whether err is SQLite's "database is locked".
func isBusy(err error) bool {
	return strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked")
}

func (b *sqliteBackend) name() string   { return "sqlite" }
func (b *sqliteBackend) client() Client { return b.ins }
func (b *sqliteBackend) close()         { b.db.Close() }

func (b *sqliteBackend) migrateRiver(ctx context.Context, tx txn) error {
	m, err := rivermigrate.New(b.driver, nil)
	if err != nil {
		return err
	}
	_, err = m.MigrateTx(ctx, tx.(*sqliteTx).tx, rivermigrate.DirectionUp, nil)
	return err
}

// lock does nothing: the migrations' BEGIN IMMEDIATE transaction
// serialises them.
func (b *sqliteBackend) lock(context.Context) (func(), error) { return func() {}, nil }

func (b *sqliteBackend) riverLatest() (int, error) {
	m, err := rivermigrate.New(b.driver, nil)
	if err != nil {
		return 0, err
	}
	return latestVersion(m.AllVersions()), nil
}

func (b *sqliteBackend) newClient(config *river.Config) (Client, error) {
	return river.NewClient(b.driver, config)
}

func (b *sqliteBackend) begin(ctx context.Context) (txn, error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqliteTx{tx: tx, ins: b.ins}, nil
}

type sqliteTx struct {
	tx  *sql.Tx
	ins *river.Client[*sql.Tx]
}

func (t *sqliteTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *sqliteTx) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (t *sqliteTx) insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	return t.ins.InsertTx(ctx, t.tx, args, opts)
}
func (t *sqliteTx) commit(context.Context) error { return t.tx.Commit() }
func (t *sqliteTx) rollback(context.Context)     { _ = t.tx.Rollback() }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// --- PostgreSQL ---

type pgBackend struct {
	pool   *pgxpool.Pool
	driver *riverpgxv5.Driver
	ins    *river.Client[pgx.Tx]
}

func openPostgres(ctx context.Context, url string, logger *slog.Logger) (*pgBackend, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, errors.New("parsing the Postgres URL failed (check its syntax)")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	b := &pgBackend{pool: pool, driver: riverpgxv5.New(pool)}
	ins, err := river.NewClient(b.driver, &river.Config{Logger: logger})
	if err != nil {
		pool.Close()
		return nil, err
	}
	b.ins = ins
	return b, nil
}

func (b *pgBackend) name() string   { return "postgres" }
func (b *pgBackend) client() Client { return b.ins }
func (b *pgBackend) close()         { b.pool.Close() }

func (b *pgBackend) migrateRiver(ctx context.Context, tx txn) error {
	m, err := rivermigrate.New(b.driver, nil)
	if err != nil {
		return err
	}
	// Outside tx: River's Postgres migrations add enum values and use them,
	// which one transaction cannot do. The advisory lock serialises.
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// migrationLock is the advisory lock key sluice's migrations hold.
const migrationLock = 7255161017

func (b *pgBackend) lock(ctx context.Context) (func(), error) {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		conn.Release()
		return nil, err
	}
	return func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)
		conn.Release()
	}, nil
}

func (b *pgBackend) riverLatest() (int, error) {
	m, err := rivermigrate.New(b.driver, nil)
	if err != nil {
		return 0, err
	}
	return latestVersion(m.AllVersions()), nil
}

func (b *pgBackend) newClient(config *river.Config) (Client, error) {
	return river.NewClient(b.driver, config)
}

func (b *pgBackend) begin(ctx context.Context) (txn, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &pgTx{tx: tx, ins: b.ins}, nil
}

type pgTx struct {
	tx  pgx.Tx
	ins *river.Client[pgx.Tx]
}

func (t *pgTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t *pgTx) query(ctx context.Context, q string, args ...any) (rows, error) {
	return t.tx.Query(ctx, q, args...)
}

func (t *pgTx) insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	return t.ins.InsertTx(ctx, t.tx, args, opts)
}
func (t *pgTx) commit(ctx context.Context) error { return t.tx.Commit(ctx) }
func (t *pgTx) rollback(ctx context.Context)     { _ = t.tx.Rollback(ctx) }
