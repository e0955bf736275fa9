//! `tok store copy`: tokens (hashes only, no secret is ever needed) and the
//! audit trail from one store to another, SQLite to PostgreSQL or back.
//!
//! Written once over the store interface. Rows are keyed (tokens by id,
//! audit entries by sequence number) and a row already in the target is kept,
//! so running a copy again adds nothing. Afterwards every source row is read
//! back from the target and compared field by field, and the counts must add
//! up; any difference is an error, never a warning. A target that holds
//! anything is refused unless forced.

use super::audit::Entry;
use super::backend::{Backend, Counts, Error, Result, TokenRow};
use std::collections::VecDeque;

const BATCH: u32 = 500;

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// What the source held.
    pub source: Counts,
    /// What the target held before.
    pub before: Counts,
    /// Rows the copy added (the rest were there already).
    pub added: Counts,
}

pub async fn copy<S: Backend, T: Backend>(from: &S, to: &T, force: bool) -> Result<Report> {
    let before = to.counts().await?;
    if (before.tokens > 0 || before.audit > 0) && !force {
        return Err(Error::NotEmpty {
            target: to.describe(),
            tokens: before.tokens,
            audit: before.audit,
        });
    }
    let mut report = Report {
        before,
        ..Report::default()
    };
    let mut after: Option<String> = None;
    loop {
        let rows = from.token_rows(after.as_deref(), BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.token.id.clone());
        report.source.tokens += rows.len() as u64;
        report.added.tokens += to.put_token_rows(&rows).await?;
    }
    let mut seq = 0;
    loop {
        let rows = from.audit_rows(seq, BATCH).await?;
        let Some(last) = rows.last() else { break };
        seq = last.seq;
        report.source.audit += rows.len() as u64;
        report.added.audit += to.put_audit_rows(&rows).await?;
    }
    verify(from, to, &report).await?;
    Ok(report)
}

/// Every source row is in the target, equal field by field; the target's
/// counts are what it held plus what was added.
async fn verify<S: Backend, T: Backend>(from: &S, to: &T, report: &Report) -> Result<()> {
    let mismatch = |message: String| Error::CopyMismatch {
        target: to.describe(),
        message,
    };
    let after = to.counts().await?;
    let want = Counts {
        tokens: report.before.tokens + report.added.tokens,
        audit: report.before.audit + report.added.audit,
    };
    if after != want {
        return Err(mismatch(format!(
            "it holds {} tokens and {} audit entries, expected {} and {} \
             (is a node writing to it? copy into a store no node is using)",
            after.tokens, after.audit, want.tokens, want.audit
        )));
    }

    // Tokens, merged in id order: the target may hold more than the source.
    let (mut s_after, mut t_after) = (None::<String>, None::<String>);
    let mut theirs: VecDeque<TokenRow> = VecDeque::new();
    let mut t_done = false;
    loop {
        let ours = from.token_rows(s_after.as_deref(), BATCH).await?;
        let Some(last) = ours.last() else { break };
        s_after = Some(last.token.id.clone());
        for mine in ours {
            loop {
                if theirs.is_empty() && !t_done {
                    let next = to.token_rows(t_after.as_deref(), BATCH).await?;
                    match next.last() {
                        Some(l) => t_after = Some(l.token.id.clone()),
                        None => t_done = true,
                    }
                    theirs.extend(next);
                }
                match theirs.front() {
                    Some(t) if t.token.id < mine.token.id => {
                        theirs.pop_front();
                    }
                    Some(t) if t.token.id == mine.token.id => {
                        if !same_token(t, &mine) {
                            return Err(mismatch(format!(
                                "token {} differs between the two stores \
                                 (it was there before the copy, with other fields)",
                                mine.token.id
                            )));
                        }
                        theirs.pop_front();
                        break;
                    }
                    _ => {
                        return Err(mismatch(format!(
                            "token {} is missing after the copy",
                            mine.token.id
                        )))
                    }
                }
            }
        }
    }

    // Audit entries, merged in sequence order.
    let (mut s_seq, mut t_seq) = (0i64, 0i64);
    let mut theirs: VecDeque<Entry> = VecDeque::new();
    let mut t_done = false;
    loop {
        let ours = from.audit_rows(s_seq, BATCH).await?;
        let Some(last) = ours.last() else { break };
        s_seq = last.seq;
        for mine in ours {
            loop {
                if theirs.is_empty() && !t_done {
                    let next = to.audit_rows(t_seq, BATCH).await?;
                    match next.last() {
                        Some(l) => t_seq = l.seq,
                        None => t_done = true,
                    }
                    theirs.extend(next);
                }
                match theirs.front() {
                    Some(t) if t.seq < mine.seq => {
                        theirs.pop_front();
                    }
                    Some(t) if t.seq == mine.seq => {
                        if *t != mine {
                            return Err(mismatch(format!(
                                "audit entry {} differs between the two stores \
                                 (the target already had an entry with that number)",
                                mine.seq
                            )));
                        }
                        theirs.pop_front();
                        break;
                    }
                    _ => {
                        return Err(mismatch(format!(
                            "audit entry {} is missing after the copy",
                            mine.seq
                        )))
                    }
                }
            }
        }
    }
    Ok(())
}

/// Equal in every stored field. The state is derived at read time, so two
/// reads a moment apart may differ on it; the fields it derives from may not.
fn same_token(a: &TokenRow, b: &TokenRow) -> bool {
    let mut a = a.clone();
    a.token.state = b.token.state;
    a == *b
}
