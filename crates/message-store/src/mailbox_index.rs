//! Which messages belong to a mailbox, filed in runs instead of one index entry per deposit.
//!
//! An index on `message(mailbox_id, …)` gets one entry per deposit, and with many mailboxes
//! the entries of one commit land on as many different leaves: every leaf is a page the commit
//! writes to the WAL, some 4 KiB for a 100-byte message, and that was half of the writer's
//! time per row (docs/benchmarks.md, finding 2). The mailbox row, which the counting trigger
//! rewrites on every deposit anyway, instead keeps the ids of its newest messages
//! (`mailbox.recent`, each id followed by a comma); once a run has gathered, the trigger files
//! them into `mailbox_message` together, one leaf written for the run. A mailbox's messages
//! are the filed ones and the recent ones, every recent id newer than every filed one. All of
//! it is kept by triggers inside each statement's transaction, so every writer (server, admin
//! CLI, tests) keeps it right and a crash loses nothing.
//!
//! A run is 16 + the mailbox's id % 32 deposits (16–47, 31.5 on average; schema 4), not the
//! same length for every mailbox: mailboxes whose deposits come in step (a message fanned out
//! to many, or steady callers) would otherwise all file in the same commit, every run, and
//! that commit holds up every caller in it (docs/benchmarks.md, Fix 24).

/// Ids mailbox `mailbox_id` gathers before they are filed (`SCHEMA_V4`'s condition). Runs of
/// 32 measured at 30,000 deposits/s into 1,000 mailboxes: 12.8–13.5 µs of writer CPU per row
/// against 18–22 with the per-row index, store p99 5.4–6.1 ms against 12.1 ms.
#[cfg(test)]
pub(crate) fn filing_run(mailbox_id: i64) -> usize {
    16 + mailbox_id.rem_euclid(32) as usize
}

/// Schema step 3: `mailbox_message` and `mailbox.recent` replace the index
/// `message_by_mailbox`; the counting triggers keep them.
pub(crate) const SCHEMA_V3: &str = r#"
CREATE TABLE mailbox_message (
    mailbox_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, id)
) WITHOUT ROWID;
INSERT INTO mailbox_message SELECT mailbox_id, id FROM message;
DROP INDEX message_by_mailbox;
ALTER TABLE mailbox ADD COLUMN recent TEXT NOT NULL DEFAULT '';
ALTER TABLE mailbox ADD COLUMN recent_count INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER message_counted;
CREATE TRIGGER message_counted AFTER INSERT ON message BEGIN
    UPDATE mailbox
       SET new_count = new_count + (NEW.state = 'new'),
           old_count = old_count + (NEW.state = 'delivered'),
           urgent_new = urgent_new + (NEW.state = 'new' AND NEW.urgent),
           urgent_old = urgent_old + (NEW.state = 'delivered' AND NEW.urgent),
           total_bytes = total_bytes + length(NEW.body),
           recent = recent || NEW.id || ',',
           recent_count = recent_count + 1
     WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER mailbox_filed AFTER UPDATE OF recent_count ON mailbox
WHEN NEW.recent_count >= 32 BEGIN
    INSERT INTO mailbox_message
        SELECT NEW.id, value FROM json_each('[' || rtrim(NEW.recent, ',') || ']');
    UPDATE mailbox SET recent = '', recent_count = 0 WHERE id = NEW.id;
END;

DROP TRIGGER message_uncounted;
CREATE TRIGGER message_uncounted AFTER DELETE ON message BEGIN
    UPDATE mailbox
       SET new_count = new_count - (OLD.state = 'new'),
           old_count = old_count - (OLD.state = 'delivered'),
           urgent_new = urgent_new - (OLD.state = 'new' AND OLD.urgent),
           urgent_old = urgent_old - (OLD.state = 'delivered' AND OLD.urgent),
           total_bytes = total_bytes - length(OLD.body),
           recent = CASE WHEN instr(',' || recent, ',' || OLD.id || ',') > 0
                         THEN substr(replace(',' || recent, ',' || OLD.id || ',', ','), 2)
                         ELSE recent END,
           recent_count = recent_count - (instr(',' || recent, ',' || OLD.id || ',') > 0)
     WHERE id = OLD.mailbox_id;
    DELETE FROM mailbox_message WHERE mailbox_id = OLD.mailbox_id AND id = OLD.id;
END;
"#;

/// Schema step 4: each mailbox files its recent ids at its own run length, 16 + its id % 32,
/// so that mailboxes filled in step do not all file in one commit.
pub(crate) const SCHEMA_V4: &str = r#"
DROP TRIGGER mailbox_filed;
CREATE TRIGGER mailbox_filed AFTER UPDATE OF recent_count ON mailbox
WHEN NEW.recent_count >= 16 + NEW.id % 32 BEGIN
    INSERT INTO mailbox_message
        SELECT NEW.id, value FROM json_each('[' || rtrim(NEW.recent, ',') || ']');
    UPDATE mailbox SET recent = '', recent_count = 0 WHERE id = NEW.id;
END;
"#;

/// The ids of the messages of mailbox `b` (an alias in scope) as a one-column subquery, for
/// `m.id IN (…)`.
pub(crate) fn ids_of(b: &str) -> String {
    format!(
        "SELECT id FROM mailbox_message WHERE mailbox_id = {b}.id \
         UNION ALL SELECT value FROM json_each('[' || rtrim({b}.recent, ',') || ']')"
    )
}

/// `LIMIT ?2` for [`messages_of`]'s tail. A bare `LIMIT ?` is a value the query planner reads,
/// so SQLite re-prepares the statement whenever a different limit is bound (every claim of a
/// fetch, whose window refills by varying amounts: the parse and plan of this compound query
/// were ~7 % of the writer's time in a fetch); as an expression it is only evaluated.
pub(crate) const LIMIT_2: &str = "LIMIT ?2 + 0";

/// Messages of the mailbox whose AoR is `?1`, selecting the message id then `columns` (over
/// `m`, the message, and `b`, the mailbox; may be empty) where `condition` holds, ordered by id
/// (`order` is `ASC`, `DESC`, or empty for any order), then `tail` (`LIMIT …` or nothing). The
/// filed run is read in id order off `mailbox_message`'s key and merged with the few recent
/// ids, so a `LIMIT` stops early.
pub(crate) fn messages_of(columns: &str, condition: &str, order: &str, tail: &str) -> String {
    let columns = if columns.is_empty() {
        String::new()
    } else {
        format!(", {columns}")
    };
    let order = if order.is_empty() {
        String::new()
    } else {
        format!("ORDER BY 1 {order}")
    };
    format!(
        "SELECT x.id{columns} FROM mailbox b JOIN mailbox_message x ON x.mailbox_id = b.id \
             JOIN message m ON m.id = x.id WHERE b.aor = ?1 AND ({condition}) \
         UNION ALL \
         SELECT m.id{columns} FROM mailbox b, \
             json_each('[' || rtrim(b.recent, ',') || ']') j JOIN message m ON m.id = j.value \
             WHERE b.aor = ?1 AND ({condition}) \
         {order} {tail}"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::row::MESSAGE_COLUMNS_AFTER_ID;
    use crate::schema::open_writer;
    use rusqlite::Connection;

    /// Inserts a new message with `body` into mailbox `mailbox_id` with plain SQL.
    pub(crate) fn insert_body(conn: &Connection, mailbox_id: i64, body: &[u8]) {
        conn.execute(
            "INSERT INTO message(mailbox_id, sender_aor, sender_verified, recipient,
                 content_type, body, received_at, source, state, urgent)
             VALUES (?1, 'sip:a@x', 1, 'sip:b@x', 'text/plain', ?2, 0, 'msrp', 'new', 0)",
            rusqlite::params![mailbox_id, body],
        )
        .unwrap();
    }

    /// A fresh database (dropped with the directory) holding the mailboxes `aors`, ids 1, 2, …
    pub(crate) fn with_mailboxes(aors: &[&str]) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&StoreConfig::new(dir.path().join("s.db"))).unwrap();
        for aor in aors {
            conn.execute("INSERT INTO mailbox(aor) VALUES (?1)", [aor])
                .unwrap();
        }
        (dir, conn)
    }

    fn insert(conn: &Connection, mailbox_id: i64, n: usize) {
        for _ in 0..n {
            insert_body(conn, mailbox_id, b"x");
        }
    }

    fn listed(conn: &Connection, aor: &str, order: &str) -> Vec<i64> {
        let sql = messages_of(MESSAGE_COLUMNS_AFTER_ID, "1", order, "");
        let mut stmt = conn.prepare(&sql).unwrap();
        let ids = stmt
            .query_map([aor], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<i64>, _>>()
            .unwrap();
        ids
    }

    /// How many of mailbox `mailbox_id`'s ids are filed, and how many recent.
    pub(crate) fn filed_and_recent(conn: &Connection, mailbox_id: i64) -> (i64, i64) {
        conn.query_row(
            "SELECT (SELECT count(*) FROM mailbox_message WHERE mailbox_id = ?1), recent_count
             FROM mailbox WHERE id = ?1",
            [mailbox_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn deposits_are_filed_in_runs_and_listed_in_order_across_both_parts() {
        let (_dir, conn) = with_mailboxes(&["sip:bob@x", "sip:carol@x"]);
        let run = filing_run(1);
        // Interleaved, as deposits to two mailboxes are.
        for _ in 0..(2 * run + 5) {
            insert(&conn, 1, 1);
            insert(&conn, 2, 1);
        }
        assert_eq!(
            filed_and_recent(&conn, 1),
            (2 * run as i64, 5),
            "two runs filed, five recent"
        );
        let bob = listed(&conn, "sip:bob@x", "ASC");
        let expected: Vec<i64> = (0..(2 * run as i64 + 5)).map(|i| 2 * i + 1).collect();
        assert_eq!(bob, expected);
        let mut newest_first = expected.clone();
        newest_first.reverse();
        assert_eq!(listed(&conn, "sip:bob@x", "DESC"), newest_first);

        // Deleting filed and recent messages takes them out of either part.
        let (filed, recent) = (expected[3], expected[expected.len() - 2]);
        conn.execute("DELETE FROM message WHERE id IN (?1, ?2)", [filed, recent])
            .unwrap();
        assert_eq!(filed_and_recent(&conn, 1), (2 * run as i64 - 1, 4));
        let left: Vec<i64> = expected
            .iter()
            .copied()
            .filter(|i| *i != filed && *i != recent)
            .collect();
        assert_eq!(listed(&conn, "sip:bob@x", "ASC"), left);
        // The other mailbox is untouched.
        assert_eq!(listed(&conn, "sip:carol@x", "ASC").len(), 2 * run + 5);

        // The next run fills up from four, then files.
        insert(&conn, 1, run - 4);
        assert_eq!(filed_and_recent(&conn, 1), (3 * run as i64 - 1, 0));
        assert_eq!(listed(&conn, "sip:bob@x", "ASC").len(), 3 * run - 1);
    }

    #[test]
    fn mailboxes_filled_in_step_file_in_different_commits() {
        let aors: Vec<String> = (1..=32).map(|i| format!("sip:u{i}@x")).collect();
        let aors: Vec<&str> = aors.iter().map(String::as_str).collect();
        let (_dir, conn) = with_mailboxes(&aors);
        conn.pragma_update(None, "synchronous", "OFF").unwrap();
        // A message for every mailbox per round, as a fan-out deposits it; count the
        // mailboxes that filed in each round (their recent list is empty again).
        let mut most = 0;
        for _ in 0..200 {
            for id in 1..=32 {
                insert(&conn, id, 1);
            }
            let filed: i64 = conn
                .query_row(
                    "SELECT count(*) FROM mailbox WHERE recent_count = 0",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            most = most.max(filed);
        }
        // With one run length for all, the 32 would file together every 32 rounds.
        assert!(most <= 6, "{most} mailboxes filed in one round");
        for id in 1..=32 {
            let (filed, recent) = filed_and_recent(&conn, id);
            let run = filing_run(id) as i64;
            assert_eq!(
                (filed, recent),
                (200 / run * run, 200 % run),
                "mailbox {id}"
            );
        }
    }

    #[test]
    fn a_new_limit_reuses_the_prepared_statement() {
        let (_dir, conn) = with_mailboxes(&["sip:bob@x"]);
        // Filed and recent ids, more than the largest limit below.
        insert(&conn, 1, 2 * filing_run(1) + 1);
        let sql = messages_of(MESSAGE_COLUMNS_AFTER_ID, "m.state = 'new'", "ASC", LIMIT_2);
        let mut stmt = conn.prepare(&sql).unwrap();
        for limit in [32, 5, 17, 1] {
            let n = stmt
                .query_map(rusqlite::params!["sip:bob@x", limit], |_| Ok(()))
                .unwrap()
                .count();
            assert_eq!(n, limit);
        }
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "no re-prepare for a new LIMIT"
        );
    }

    #[test]
    fn a_mailbox_read_walks_its_own_key_not_every_message() {
        let (_dir, conn) = with_mailboxes(&[]);
        let sql = messages_of(MESSAGE_COLUMNS_AFTER_ID, "m.state = 'new'", "ASC", LIMIT_2);
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params!["sip:bob@x", 32], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("MERGE"), "{plan}");
        assert!(!plan.contains("SCAN m"), "no scan of message: {plan}");
        assert!(
            !plan.contains("SCAN x"),
            "no scan of mailbox_message: {plan}"
        );
        assert!(
            plan.contains("SEARCH x USING PRIMARY KEY (mailbox_id=?)"),
            "{plan}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any mix of deposits into three mailboxes and deletes of any message (filed or
        /// recent): each mailbox lists exactly its messages, in id order both ways, and its
        /// recent count is the length of its recent list.
        #[test]
        fn listing_follows_any_inserts_and_deletes(
            steps in proptest::collection::vec((0u8..4, 0usize..1000), 1..300),
        ) {
            let aors = ["sip:a@x", "sip:b@x", "sip:c@x"];
            let (_dir, conn) = with_mailboxes(&aors);
            // Durability is not what this tests.
            conn.pragma_update(None, "synchronous", "OFF").unwrap();
            let mut model: Vec<Vec<i64>> = vec![Vec::new(); aors.len()];
            for (op, pick) in steps {
                if let Some(mailbox) = model.get_mut(usize::from(op)) {
                    insert_body(&conn, i64::from(op) + 1, b"x");
                    mailbox.push(conn.last_insert_rowid());
                } else {
                    let all: Vec<(usize, usize)> = model
                        .iter()
                        .enumerate()
                        .flat_map(|(m, ids)| (0..ids.len()).map(move |i| (m, i)))
                        .collect();
                    if all.is_empty() {
                        continue;
                    }
                    let (m, i) = all[pick % all.len()];
                    let id = model[m].remove(i);
                    conn.execute("DELETE FROM message WHERE id = ?1", [id]).unwrap();
                }
            }
            for (m, aor) in aors.iter().enumerate() {
                proptest::prop_assert_eq!(&listed(&conn, aor, "ASC"), &model[m]);
                let mut newest_first = model[m].clone();
                newest_first.reverse();
                proptest::prop_assert_eq!(listed(&conn, aor, "DESC"), newest_first);
                let (recent, count): (String, i64) = conn
                    .query_row(
                        "SELECT recent, recent_count FROM mailbox WHERE aor = ?1",
                        [aor],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                proptest::prop_assert_eq!(recent.matches(',').count() as i64, count);
                proptest::prop_assert!(count < filing_run(m as i64 + 1) as i64);
            }
        }
    }
}
