//! The `Host` check around the whole app (against DNS rebinding): the
//! names herald answers to are [`crate::host`]'s; this is where a request
//! naming another one is answered, before any route, file or upgrade runs.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::error::ApiError;
use crate::host::HostPolicy;

/// Middleware for the whole app: refuses a request naming a host herald
/// does not answer to before any route sees it.
pub async fn check_host(
    policy: web::Data<HostPolicy>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let authority = req.uri().authority().map(|a| a.as_str());
    if let Err(refusal) = policy.check(req.headers(), authority) {
        // Answered here rather than raised, so that the middleware around
        // (the nosniff header) sees the refusal like any other answer.
        let response = ApiError::from(refusal).error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}
