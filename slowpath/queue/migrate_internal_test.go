package queue

import (
	"context"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/gate"
	"github.com/sluice-ci/sluice/internal/testdb"
)

// TestMigrationIndexesEarlierJobsByDigest: a queue made before the digest
// index (schema version 5) gets its image jobs indexed when a newer sluice
// opens it, so a lookup by digest still finds them.
func TestMigrationIndexesEarlierJobsByDigest(t *testing.T) {
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			url := testdb.For(t, driver)
			q, err := Open(ctx, url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			digest := "sha256:" + strings.Repeat("ab", 32)
			if _, err := q.Enqueue(ctx, []Job{{Kind: KindImageScan, Subject: "reg.example/app@" + digest, Control: "image-scan"}}); err != nil {
				t.Fatal(err)
			}
			// As a queue from before version 5: no digest rows.
			if err := q.inTx(ctx, func(tx txn) error {
				if _, err := tx.exec(ctx, "DELETE FROM sluice_job_digest"); err != nil {
					return err
				}
				_, err := tx.exec(ctx, "DELETE FROM sluice_schema WHERE version >= 5")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			other := "mirror.example/app@" + digest
			if st, err := q.Lookup(ctx, KindImageScan, other); err != nil || st.State != gate.ResultMissing {
				t.Fatalf("before the migration: %+v, %v; want missing (the index is empty)", st, err)
			}
			q.Close()

			q, err = Open(ctx, url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			if st, err := q.Lookup(ctx, KindImageScan, other); err != nil || st.State != gate.ResultPending {
				t.Fatalf("after the migration: %+v, %v; want the queued job found by digest (pending)", st, err)
			}
		})
	}
}
