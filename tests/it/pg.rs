//! A database of its own per test, in the throwaway PostgreSQL cluster that
//! scripts/setup/50-postgres.sh starts (TOK_TEST_PG_URL, TOK_TEST_PGPASSWORD).
//! Dropped (WITH FORCE) when the test ends.

#![allow(dead_code)]

use tok::store::postgres::{PgStore, Target};

pub struct TestDb {
    pub name: String,
    /// postgres://tok@127.0.0.1:PORT/NAME, without password.
    pub url: String,
    pub password: String,
    admin: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set, so there is no PostgreSQL to test against. Run the tests \
             with `scripts/test` (scripts/setup/50-postgres.sh starts one), or source that \
             script yourself before `cargo test`."
        )
    })
}

/// Runs `f` on a runtime of its own in a thread of its own, so that it works
/// from sync tests and from inside another runtime alike.
fn block<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .expect("thread")
}

async fn admin_exec(admin: String, sql: String) {
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to the test cluster");
    let driver = tokio::spawn(conn);
    client.batch_execute(&sql).await.expect(&sql);
    drop(client);
    let _ = driver.await;
}

impl TestDb {
    pub fn new() -> TestDb {
        Self::create(None)
    }

    fn create(template: Option<&str>) -> TestDb {
        let base = var("TOK_TEST_PG_URL");
        let password = var("TOK_TEST_PGPASSWORD");
        let name = format!("tok_test_{}", tok::secret::random_handle(12));
        let (prefix, _) = base.rsplit_once('/').expect("a URL with a database");
        let admin = with_password(&base, &password);
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        let a = admin.clone();
        block(move || Box::pin(admin_exec(a, sql)));
        TestDb {
            url: format!("{prefix}/{name}"),
            name,
            password,
            admin,
        }
    }

    /// A database of its own, already migrated: copied (CREATE DATABASE ...
    /// TEMPLATE) from one this test process migrated once, which is quicker
    /// than migrating each. Dropped when the test ends, as `new`'s are.
    pub fn migrated() -> TestDb {
        static TEMPLATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let template = TEMPLATE.get_or_init(|| {
            let t = TestDb::new();
            let target = t.target();
            block(move || {
                Box::pin(async move {
                    drop(
                        PgStore::open(target, "template".into())
                            .await
                            .expect("migrate the template database"),
                    )
                })
            });
            // Kept for the whole run (the cluster goes with it at exit).
            std::mem::ManuallyDrop::new(t).name.clone()
        });
        Self::create(Some(template))
    }

    /// The URL with the password in it, as TOK_STORE may give it.
    pub fn url_with_password(&self) -> String {
        with_password(&self.url, &self.password)
    }

    pub fn target(&self) -> Target {
        Target::parse(&self.url_with_password(), true).expect("test URL")
    }

    /// A store on this database, as node `node`.
    pub async fn store(&self, node: &str) -> PgStore {
        PgStore::open(self.target(), node.to_string())
            .await
            .expect("open the PostgreSQL store")
    }

    /// Runs SQL on this database as the superuser.
    pub fn exec(&self, sql: &str) {
        let url = with_password(&self.url, &self.password);
        let sql = sql.to_string();
        block(move || Box::pin(admin_exec(url, sql)));
    }

    /// Runs SQL as the superuser from another database (for ALTER DATABASE).
    pub fn exec_admin(&self, sql: &str) {
        let (a, sql) = (self.admin.clone(), sql.to_string());
        block(move || Box::pin(admin_exec(a, sql)));
    }

    /// One value (as text) from a query on this database.
    pub fn query_text(&self, sql: &str) -> String {
        let url = with_password(&self.url, &self.password);
        let sql = sql.to_string();
        block(move || {
            Box::pin(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                let driver = tokio::spawn(conn);
                let rows = client.simple_query(&sql).await.expect(&sql);
                drop(client);
                let _ = driver.await;
                rows.iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some(r.get(0).unwrap_or("").to_string())
                        }
                        _ => None,
                    })
                    .unwrap_or_default()
            })
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let a = self.admin.clone();
        block(move || Box::pin(admin_exec(a, sql)));
    }
}

fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, host) = rest.split_once('@').expect("a user in the URL");
    format!("{scheme}://{user}:{password}@{host}")
}
