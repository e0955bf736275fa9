//! Versioned schema migrations, applied in order inside one write transaction.
//! `PRAGMA user_version` records how many have run. Append; never edit.

pub const MIGRATIONS: &[&str] = &[
    // 1: tokens
    "CREATE TABLE tokens (
        id            TEXT PRIMARY KEY,
        secret_hash   BLOB NOT NULL UNIQUE,
        fingerprint   TEXT NOT NULL,
        name          TEXT,
        description   TEXT,
        scopes        TEXT NOT NULL DEFAULT '[]',
        labels        TEXT NOT NULL DEFAULT '{}',
        created_at    INTEGER NOT NULL,
        created_by    TEXT,
        expires_at    INTEGER,
        max_uses      INTEGER,
        uses          INTEGER NOT NULL DEFAULT 0,
        last_used_at  INTEGER,
        revoked_at    INTEGER,
        revoked_by    TEXT,
        revoke_reason TEXT,
        rotated_from  TEXT
    ) STRICT;
    CREATE INDEX tokens_created ON tokens (created_at, id);
    CREATE INDEX tokens_expires ON tokens (expires_at) WHERE expires_at IS NOT NULL;",
    // 2: the audit trail of authorization decisions and admin actions
    "CREATE TABLE audit (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        at              INTEGER NOT NULL,
        event           TEXT NOT NULL,
        token_id        TEXT,
        actor           TEXT,
        method          TEXT,
        path            TEXT,
        client          TEXT,
        decision        TEXT,
        reason          TEXT,
        upstream_status INTEGER,
        latency_ms      INTEGER
    ) STRICT;
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX audit_token ON audit (token_id, seq);",
    // 3: the change log the server's admission cache follows: one row per token,
    // its seq raised by every commit that changes what admission reads (a new
    // token, a revoke, a new expiry, scopes or use limit). Use counts and
    // last-used times are not admission facts a cache may hold, so they do not
    // count as changes.
    "CREATE TABLE token_changes (
        token_id TEXT PRIMARY KEY,
        seq      INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX token_changes_seq ON token_changes (seq);
    CREATE TRIGGER tokens_changed_insert AFTER INSERT ON tokens BEGIN
        INSERT INTO token_changes (token_id, seq)
        VALUES (new.id, (SELECT coalesce(max(seq), 0) + 1 FROM token_changes))
        ON CONFLICT (token_id) DO UPDATE SET seq = excluded.seq;
    END;
    CREATE TRIGGER tokens_changed_update
    AFTER UPDATE OF secret_hash, scopes, expires_at, max_uses, revoked_at ON tokens BEGIN
        INSERT INTO token_changes (token_id, seq)
        VALUES (new.id, (SELECT coalesce(max(seq), 0) + 1 FROM token_changes))
        ON CONFLICT (token_id) DO UPDATE SET seq = excluded.seq;
    END;
    CREATE TRIGGER tokens_changed_delete AFTER DELETE ON tokens BEGIN
        INSERT INTO token_changes (token_id, seq)
        VALUES (old.id, (SELECT coalesce(max(seq), 0) + 1 FROM token_changes))
        ON CONFLICT (token_id) DO UPDATE SET seq = excluded.seq;
    END;",
    // 4: repeated identical denials kept as one entry with a count; request
    // and admin entries pruned apart (by event), each with its own caps; a
    // token's successor found by index (one successor per token)
    "ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX audit_event ON audit (event, seq);
    CREATE INDEX tokens_rotated_from ON tokens (rotated_from) WHERE rotated_from IS NOT NULL;",
    // 5: the request id `tok serve` answered as X-Request-Id and logged
    "ALTER TABLE audit ADD COLUMN request_id TEXT;",
    // 6: per-token rate limits and quotas (one JSON column, read only by
    // `store::limits_json`), and each quota's use in its current window,
    // written by the proxy's batch writer rather than per request. A change of
    // the limits is an admission change like a new scope.
    "ALTER TABLE tokens ADD COLUMN limits TEXT;
    CREATE TABLE quota_use (
        token_id     TEXT PRIMARY KEY,
        window_start INTEGER NOT NULL,
        used         INTEGER NOT NULL
    ) STRICT;
    CREATE TRIGGER tokens_changed_limits AFTER UPDATE OF limits ON tokens BEGIN
        INSERT INTO token_changes (token_id, seq)
        VALUES (new.id, (SELECT coalesce(max(seq), 0) + 1 FROM token_changes))
        ON CONFLICT (token_id) DO UPDATE SET seq = excluded.seq;
    END;",
];
