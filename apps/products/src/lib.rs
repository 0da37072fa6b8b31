//! The seed's `myapp.py` as a Gatehouse app: look a product up by `id`, sent as a GET query
//! parameter or a POST form field (urlencoded or multipart, as a browser form sends it), and
//! reply `{"name": ..., "price": ...}` as `application/json`, byte for byte as the seed's
//! `json.dumps` writes it.
//!
//! Products live in an SQLite file opened in `init`: `env: {PRODUCTS_DB: path}` on the alias
//! (relative to `hosting.yaml`'s folder; default `products.sqlite3` there). A new file is
//! created with the seed's two products. Where the seed crashes with a `KeyError` (unknown or
//! missing id), this app answers 404 or 400 with a JSON error.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use gatehouse_app::{App, Init, Request, Response};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// The seed's product table, written into a new store.
const SEED: [(&str, &str, i64); 2] = [("A001", "clock", 30), ("A002", "watch", 120)];

/// Most connections kept open for reuse; more are opened under load and closed after use.
const POOL_SIZE: usize = 16;

struct Products {
    db: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl Products {
    fn open(path: &Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    fn create(path: &Path) -> Result<Connection, String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                format!("cannot create the folder for PRODUCTS_DB {}: {e}", parent.display())
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| format!("cannot open PRODUCTS_DB {}: {e}", path.display()))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS products (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL)",
        )
        .and_then(|()| {
            let mut insert = conn
                .prepare("INSERT OR IGNORE INTO products (id, name, price) VALUES (?1, ?2, ?3)")?;
            for (id, name, price) in SEED {
                insert.execute((id, name, price))?;
            }
            Ok(())
        })
        .map_err(|e| format!("cannot set up the products table in {}: {e}", path.display()))?;
        Ok(conn)
    }

    fn lookup(&self, id: &str) -> rusqlite::Result<Option<(String, i64)>> {
        let conn = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match conn {
            Some(c) => c,
            None => Self::open(&self.db)?,
        };
        let found = conn
            .prepare_cached("SELECT name, price FROM products WHERE id = ?1")?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional();
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_SIZE {
            pool.push(conn);
        }
        found
    }
}

/// `{"name": "clock", "price": 30}`: the seed's `json.dumps` layout.
fn product_json(name: &str, price: i64) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
    format!("{{\"name\": {name}, \"price\": {price}}}")
}

fn json_reply(status: u16, body: String) -> Response {
    Response::new(status).header("Content-type", "application/json").body(body.into_bytes())
}

fn error_reply(status: u16, message: &str, id: Option<&str>) -> Response {
    let mut body = serde_json::json!({ "error": message });
    if let Some(id) = id {
        body["id"] = serde_json::Value::String(id.to_owned());
    }
    json_reply(status, body.to_string())
}

impl App for Products {
    /// A lookup reads a small local SQLite file (from the page cache once warm) and takes
    /// microseconds; nothing else here waits. A lookup slowed by a cold disk or a writer
    /// holding the file's lock breaks the promise once, and the daemon then runs this app on
    /// its threads for a while.
    const NEVER_BLOCKS: bool = true;

    fn init(init: &Init<'_>) -> Result<Self, String> {
        let db = init.resolve(init.env("PRODUCTS_DB").unwrap_or("products.sqlite3"));
        let conn = Self::create(&db)?;
        Ok(Products { db, pool: Mutex::new(vec![conn]) })
    }

    fn handle(&self, req: &Request<'_>) -> Response {
        match req.method() {
            "GET" | "HEAD" => {
                req.debug_log(format!("QUERY_STRING: {}", req.query_string()), false);
            }
            "POST" => {
                let len = req.var("CONTENT_LENGTH").unwrap_or("0");
                req.debug_log(format!("content_len: {len}"), true);
                let params: Vec<_> = req.params().collect();
                req.debug_log(format!("POST data: {params:?}"), false);
            }
            other => {
                return error_reply(
                    405,
                    &format!("method {other} is not allowed here; use GET or POST"),
                    None,
                )
                .header("Allow", "GET, HEAD, POST");
            }
        }
        let id = match req.param("id") {
            Some(id) if !id.is_empty() => id,
            _ => {
                return error_reply(
                    400,
                    "missing parameter id: send ?id=A001 or a form field id",
                    None,
                );
            }
        };
        match self.lookup(id) {
            Ok(Some((name, price))) => json_reply(200, product_json(&name, price)),
            Ok(None) => error_reply(404, &format!("no product with id {id:?}"), Some(id)),
            Err(e) => {
                req.log_error(format!(
                    "product lookup for {id:?} in {} failed: {e}",
                    self.db.display()
                ));
                error_reply(500, "the product store could not be read", Some(id))
            }
        }
    }
}

gatehouse_app::export!(app: Products);

#[cfg(test)]
mod tests {
    use super::product_json;

    #[test]
    fn json_matches_the_seeds_layout() {
        assert_eq!(product_json("clock", 30), r#"{"name": "clock", "price": 30}"#);
        assert_eq!(product_json("a\"b", 1), r#"{"name": "a\"b", "price": 1}"#);
    }
}
