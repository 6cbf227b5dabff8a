//! The `Host` check around the whole app (against DNS rebinding): the
//! names herald answers to are [`crate::host`]'s; this is where a request
//! naming another one is answered, before any route, file or upgrade runs.
//!
//! A middleware of its own rather than `from_fn`: every request passes
//! through it, and this one boxes no future and allocates nothing.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, ResponseError};
use futures_util::future::{Either, MapOk, TryFutureExt};

use crate::error::ApiError;
use crate::host::HostPolicy;

/// Middleware for the whole app: refuses a request naming a host herald
/// does not answer to before any route sees it.
pub struct CheckHost {
    policy: Arc<HostPolicy>,
}

impl CheckHost {
    pub fn new(policy: Arc<HostPolicy>) -> Self {
        Self { policy }
    }
}

impl<S, B> Transform<S, ServiceRequest> for CheckHost
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = CheckHostService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CheckHostService {
            service,
            policy: self.policy.clone(),
        }))
    }
}

pub struct CheckHostService<S> {
    service: S,
    policy: Arc<HostPolicy>,
}

/// The inner service's answer, its body marked as the route's.
type Passed<F, B> = MapOk<F, fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>>>;

impl<S, B> Service<ServiceRequest> for CheckHostService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Either<Passed<S::Future, B>, Ready<Result<Self::Response, Error>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let authority = req.uri().authority().map(|a| a.as_str());
        if let Err(refusal) = self.policy.check(req.headers(), authority) {
            // Answered here rather than raised, so that the middleware
            // around (the nosniff header) sees the refusal like any other
            // answer.
            let response = ApiError::from(refusal).error_response();
            return Either::Right(ready(Ok(req.into_response(response).map_into_right_body())));
        }
        let passed: fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> =
            ServiceResponse::map_into_left_body;
        Either::Left(self.service.call(req).map_ok(passed))
    }
}
