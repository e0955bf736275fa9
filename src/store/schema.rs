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
    // 3: the request id `tok serve` answered as X-Request-Id and logged
    "ALTER TABLE audit ADD COLUMN request_id TEXT;",
];
