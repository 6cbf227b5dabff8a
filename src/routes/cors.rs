//! Cross-origin reads of `/events` and `/poll` (CORS): the one place where
//! herald tells a browser that a page of another origin may read an answer.
//!
//! The origins are those [`crate::auth::OriginPolicy`] lets in: listed in
//! `allowed_origins` (or any with `"*"`), or herald's own. Every answer of
//! these two routes to a request from such an origin carries
//! `Access-Control-Allow-Origin: <that origin>`: the event stream, the poll
//! answer, and the errors too (400, 401, 403 for a private channel, 429,
//! 503, 405), so that the page can read why it was refused.
//! `Retry-After` is exposed to it. Every answer carries `Vary: Origin`, so
//! that no cache hands one origin's answer to another. A foreign origin gets
//! no CORS header at all, and its request is refused (403) by the route's own
//! Origin check, as before: the browser then hides even that answer from the
//! page.
//!
//! No `Access-Control-Allow-Credentials`: herald reads no cookies (a client
//! gives its id or token in the URL), so the browser sends none.
//!
//! Preflights: browsers send none for `EventSource`, not even for its
//! reconnects with `Last-Event-ID` (the Fetch standard exempts that header),
//! nor for herald.js's polls (plain `GET`s without headers of their own). A
//! client that sets `Last-Event-ID` itself (an SSE reader built on `fetch`)
//! does trigger one: `OPTIONS` with `Access-Control-Request-Method: GET` and
//! at most `Last-Event-ID` in `Access-Control-Request-Headers`, from an
//! allowed origin, is answered 204 with what it may do; any other preflight
//! (a foreign origin, another method or header) is refused 403 `forbidden`.
//! An `OPTIONS` without `Access-Control-Request-Method` is no preflight and
//! goes to the route (405).
//!
//! Not here: `/ws` (WebSockets are outside CORS; the upgrade checks Origin
//! itself), and `POST /`, `/health`, `/metrics`, `/stats`, which send no
//! CORS header, so that other sites cannot read them.
//!
//! Written here rather than with `actix-cors`: that crate answers refusals
//! with plain-text 400s of its own and judges origins by its own list,
//! where herald answers every refusal as a JSON error ([`ApiError`]) and has
//! one origin rule (`OriginPolicy`, with its care about DNS rebinding).
//! There is nothing to parse but a comma-separated list of header names.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};

use super::AppState;
use crate::error::ApiError;

/// The request headers a cross-origin client may send: what an SSE reader
/// resumes with. (`EventSource` itself needs no permission for it.)
pub const ALLOWED_HEADERS: &str = "Last-Event-ID";

/// Response headers a cross-origin page may read besides the safelisted
/// ones: how long to wait after a 429 or 503.
pub const EXPOSED_HEADERS: &str = "Retry-After";

/// How long a browser may reuse a preflight answer, in seconds (Chromium
/// caps it at 7200).
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 3600;

/// Middleware for `/events` and `/poll`: answers preflights, and adds the
/// CORS headers to every answer of the route.
pub async fn cross_origin(
    state: web::Data<AppState>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let allowed = state.origins.allowed_origin(req.headers());
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let response = preflight(req.headers(), allowed);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    decorate(response.headers_mut(), allowed);
    Ok(response.map_into_left_body())
}

/// The answer to a preflight: 204 with the permissions for an allowed
/// origin asking for `GET` and at most [`ALLOWED_HEADERS`]; else 403.
fn preflight(headers: &HeaderMap, allowed: Option<HeaderValue>) -> HttpResponse {
    let refusal = match &allowed {
        None => Some(ApiError::Forbidden(
            "requests from this web origin are not allowed: add it to allowed_origins".into(),
        )),
        Some(_) => unsupported_request(headers).map(ApiError::Forbidden),
    };
    let mut response = match refusal {
        Some(error) => error.error_response(),
        None => {
            let mut ok = HttpResponse::NoContent();
            ok.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE_SECS));
            ok.finish()
        }
    };
    decorate(response.headers_mut(), allowed);
    response
}

/// Why a preflight from an allowed origin asks for more than these routes
/// allow, or `None` when it asks for `GET` and known headers only.
fn unsupported_request(headers: &HeaderMap) -> Option<String> {
    let method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    if method.as_bytes() != b"GET" {
        let shown = String::from_utf8_lossy(method.as_bytes()).into_owned();
        return Some(format!(
            "cross-origin requests here may only GET, not {shown:?}"
        ));
    }
    for value in headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let names = text.split(',').map(str::trim).filter(|n| !n.is_empty());
        for name in names {
            if !name.eq_ignore_ascii_case(ALLOWED_HEADERS) {
                let shown: String = name.chars().take(64).collect();
                return Some(format!(
                    "cross-origin requests here may send no header {shown:?}: \
                     only {ALLOWED_HEADERS}"
                ));
            }
        }
    }
    None
}

/// `Vary: Origin` on every answer; the origin's permission when it is
/// allowed.
fn decorate(headers: &mut HeaderMap, allowed: Option<HeaderValue>) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_preflight_may_ask_for_get_and_last_event_id_only() {
        let ask = |pairs: &[(&str, &str)]| unsupported_request(&headers(pairs));
        assert_eq!(ask(&[("access-control-request-method", "GET")]), None);
        assert_eq!(
            ask(&[
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "last-event-id"),
            ]),
            None
        );
        assert_eq!(
            ask(&[
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", " Last-Event-ID , "),
            ]),
            None
        );
        let post = ask(&[("access-control-request-method", "POST")]).unwrap();
        assert!(post.contains("\"POST\""), "{post}");
        let custom = ask(&[
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "last-event-id, x-custom"),
        ])
        .unwrap();
        assert!(custom.contains("x-custom"), "{custom}");
        let twice = ask(&[
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "last-event-id"),
            ("access-control-request-headers", "authorization"),
        ]);
        assert!(twice.is_some());
    }
}
