//! The console page and the browser client, compiled into the binary, so
//! that `herald` runs from any directory with no files beside it.
//!
//! `console_template` and `static_dir` replace them with files of the
//! operator's own when set; `console = false` turns the page off.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The page served at `/` unless `console_template` names another.
pub const CONSOLE_PAGE: &[u8] = include_bytes!("../templates/console.html");

/// A file served under `/static/`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// Every file under `/static/` unless `static_dir` names a directory.
pub const STATIC_FILES: &[Asset] = &[
    Asset {
        name: "herald.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/herald.js"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../static/console.css"),
    },
];

/// Each file's ETag: the start of its SHA-256, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        STATIC_FILES
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.bytes);
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// `GET /static/{name}` from the embedded files: revalidated on every use
/// (`no-cache` with an ETag), so a new herald's client is picked up at once.
pub async fn serve(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let index = STATIC_FILES
        .iter()
        .position(|asset| asset.name == name.as_str())
        .ok_or(ApiError::NotFound)?;
    let asset = &STATIC_FILES[index];
    let etag = &etags()[index];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response.content_type(asset.content_type).body(asset.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_page_uses_only_embedded_files() {
        let page = std::str::from_utf8(CONSOLE_PAGE).unwrap();
        for src in [
            "/static/herald.js",
            "/static/console.js",
            "/static/console.css",
        ] {
            assert!(page.contains(src), "{src}");
            let name = src.trim_start_matches("/static/");
            assert!(STATIC_FILES.iter().any(|a| a.name == name), "{name}");
        }
        assert_eq!(etags().len(), STATIC_FILES.len());
    }
}
