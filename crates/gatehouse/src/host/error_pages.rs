//! The error documents of a configuration (`error_documents`, Apache's `ErrorDocument`),
//! read into memory when the host is built: the bodies the daemon's own error answers get
//! (and, with `error_override`, an app's error replies), per alias and for requests no
//! alias serves.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::web::Bytes;
use gatehouse_config::{Config, ErrorDocuments};

/// One error document.
#[derive(Debug)]
pub(crate) struct Page {
    /// The file's bytes.
    pub(crate) body: Bytes,
    /// Its type, from its name's extension (HTML unless it says otherwise).
    pub(crate) content_type: &'static str,
}

/// Every alias's error documents, and the global ones.
#[derive(Debug, Default)]
pub(crate) struct ErrorPages {
    global: BTreeMap<u16, Arc<Page>>,
    mounts: Vec<BTreeMap<u16, Arc<Page>>>,
}

impl ErrorPages {
    /// Reads the documents `config` names, each file once; one that cannot be read is
    /// logged and left out (its status keeps the daemon's own body).
    pub(crate) fn load(config: &Config) -> ErrorPages {
        if config.error_documents.is_empty()
            && config.aliases.iter().all(|a| a.error_documents.is_empty())
        {
            return ErrorPages::default();
        }
        let mut read: HashMap<PathBuf, Option<Arc<Page>>> = HashMap::new();
        let mut pages = |docs: &ErrorDocuments| -> BTreeMap<u16, Arc<Page>> {
            docs.iter()
                .filter_map(|(&status, file)| {
                    let page = read.entry(file.clone()).or_insert_with(|| page(file)).clone();
                    page.map(|p| (status, p))
                })
                .collect()
        };
        let global = pages(&config.error_documents);
        let mounts = config.aliases.iter().map(|a| pages(&a.error_documents)).collect();
        ErrorPages { global, mounts }
    }

    /// The document for `status` on alias `mount` (or for a request no alias serves).
    pub(crate) fn page(&self, mount: Option<usize>, status: u16) -> Option<&Page> {
        let pages = match mount {
            Some(m) => self.mounts.get(m)?,
            None => &self.global,
        };
        pages.get(&status).map(|p| &**p)
    }
}

/// Largest error document read (a page, not a download).
const MAX_PAGE: u64 = 1 << 20;

fn page(file: &Path) -> Option<Arc<Page>> {
    let read = std::fs::metadata(file).and_then(|m| {
        if m.len() > MAX_PAGE {
            Err(std::io::Error::other(format!("it is larger than {} KiB", MAX_PAGE >> 10)))
        } else {
            std::fs::read(file)
        }
    });
    match read {
        Ok(bytes) => Some(Arc::new(Page { body: Bytes::from(bytes), content_type: type_of(file) })),
        Err(e) => {
            log::error!(
                "error document {} cannot be read ({e}); its status keeps the daemon's own body",
                file.display()
            );
            None
        }
    }
}

/// The Content-Type of an error document, by its extension.
fn type_of(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        _ => "text/html; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_extension() {
        for (name, want) in [
            ("404.html", "text/html; charset=utf-8"),
            ("404.HTM", "text/html; charset=utf-8"),
            ("oops", "text/html; charset=utf-8"),
            ("503.txt", "text/plain; charset=utf-8"),
            ("500.json", "application/json"),
        ] {
            assert_eq!(type_of(Path::new(name)), want, "{name}");
        }
    }
}
