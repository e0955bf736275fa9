//! The store's change feed, for caches of admission facts (the server's
//! admission cache follows it; see `server::admission`).
//!
//! Two cheap signals, both seen across processes:
//! - `PRAGMA data_version` moves on a connection whenever any *other*
//!   connection commits (<https://sqlite.org/pragma.html#pragma_data_version>):
//!   reading it costs no table read, so it can be asked on every request;
//! - the `token_changes` table (migration 3), kept by triggers inside the same
//!   transaction as the change, says which tokens changed, in `seq` order.

use super::{Result, Store};
use rusqlite::params;

impl Store {
    /// This connection's `PRAGMA data_version`: it differs from the last value
    /// read on the same connection exactly when another connection committed.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?)
    }

    /// The newest change's `seq` (0 when nothing has changed yet).
    pub fn last_change(&self) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM token_changes")?
            .query_row([], |r| r.get(0))?)
    }

    /// The ids of the tokens changed after `seq`, and the newest `seq` seen.
    pub fn changes_since(&self, seq: i64) -> Result<(Vec<String>, i64)> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT token_id, seq FROM token_changes WHERE seq > ?1")?;
        let mut rows = stmt.query(params![seq])?;
        let (mut ids, mut newest) = (Vec::new(), seq);
        while let Some(r) = rows.next()? {
            ids.push(r.get(0)?);
            newest = newest.max(r.get(1)?);
        }
        Ok((ids, newest))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::NewToken;
    use crate::store::Store;
    use chrono::{TimeDelta, Utc};

    #[test]
    fn another_connections_commit_moves_data_version_and_names_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let follower = Store::open(dir.path()).unwrap();
        let writer = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let (v0, seq0) = (
            follower.data_version().unwrap(),
            follower.last_change().unwrap(),
        );
        assert_eq!(follower.data_version().unwrap(), v0, "nothing committed");

        let c = writer.create(&NewToken::default(), None, now).unwrap();
        let v1 = follower.data_version().unwrap();
        assert_ne!(v1, v0);
        let (ids, seq1) = follower.changes_since(seq0).unwrap();
        assert_eq!(ids, std::slice::from_ref(&c.token.id));

        // A spent use is not an admission fact: no change is logged for it.
        writer.spend(&c.token.id, now).unwrap().unwrap();
        assert_eq!(
            follower.changes_since(seq1).unwrap().0,
            Vec::<String>::new()
        );

        writer.revoke(&c.token.id, None, None, now).unwrap();
        assert_ne!(follower.data_version().unwrap(), v1);
        let (ids, seq2) = follower.changes_since(seq1).unwrap();
        assert_eq!(ids, std::slice::from_ref(&c.token.id));
        assert!(seq2 > seq1);

        let r = writer
            .rotate(
                &writer
                    .create(&NewToken::default(), None, now)
                    .unwrap()
                    .token
                    .id,
                Some(60),
                None,
                now + TimeDelta::seconds(1),
            )
            .unwrap();
        let (ids, _) = follower.changes_since(seq2).unwrap();
        assert_eq!(ids.len(), 2, "the old and the new token: {ids:?}");
        assert!(ids.contains(&r.1.id) && ids.contains(&r.0.token.id));
    }
}
