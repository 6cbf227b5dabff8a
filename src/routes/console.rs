//! `GET /`: the console page, a live view of what this server pushes.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::AppState;
use crate::error::ApiError;

/// Scripts may come from herald only and connections go to herald only, so a
/// message that slipped into the page as markup still could not run code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The page, or 404 with `console = false`.
pub async fn page(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(page) = &state.console_page else {
        return Err(ApiError::NotFound);
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(page.clone()))
}
