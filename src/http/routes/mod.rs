//! The route table: path → route (with its metric label and allowed methods) → handler.

mod acks;
mod aliases;
mod callbacks;
mod events;
mod matrix;
mod messages;
mod mock;
mod ops;

use std::sync::Arc;

use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper::Request;

use super::request::segment;
use super::response::{ApiError, HttpResponse};
use super::ApiState;

/// A matched route with its decoded path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    DeviceAcks,
    AliasDevices {
        app: String,
        alias: String,
    },
    Alias {
        app: String,
        alias: String,
    },
    AliasDevice {
        app: String,
        alias: String,
        provider: String,
        cid: String,
    },
    Device {
        app: String,
        provider: String,
        cid: String,
    },
    Messages {
        app: String,
    },
    Message {
        app: String,
        id: String,
    },
    Events {
        app: String,
    },
    Receipts {
        provider: String,
    },
    Upstream {
        provider: String,
    },
    MockInbox {
        provider: String,
        cid: String,
    },
    MockUpstream {
        provider: String,
        cid: String,
    },
    MatrixNotify,
}

impl Route {
    /// Matches a path; `Ok(None)` if nothing matches.
    pub fn parse(path: &str) -> Result<Option<Route>, ApiError> {
        let parts: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let s = |i: usize| segment(parts[i]);
        let route = match parts.as_slice() {
            ["healthz"] => Route::Healthz,
            ["readyz"] => Route::Readyz,
            ["metrics"] => Route::Metrics,
            ["openapi.json"] => Route::OpenApi,
            ["v1", "apps", _, "aliases", _, "devices"] => Route::AliasDevices {
                app: s(2)?,
                alias: s(4)?,
            },
            ["v1", "apps", _, "aliases", _] => Route::Alias {
                app: s(2)?,
                alias: s(4)?,
            },
            ["v1", "apps", _, "aliases", _, "devices", _, _] => Route::AliasDevice {
                app: s(2)?,
                alias: s(4)?,
                provider: s(6)?,
                cid: s(7)?,
            },
            ["v1", "apps", _, "devices", _, _] => Route::Device {
                app: s(2)?,
                provider: s(4)?,
                cid: s(5)?,
            },
            ["v1", "apps", _, "messages"] => Route::Messages { app: s(2)? },
            ["v1", "apps", _, "events"] => Route::Events { app: s(2)? },
            ["v1", "apps", _, "messages", _] => Route::Message {
                app: s(2)?,
                id: s(4)?,
            },
            ["v1", "device-acks"] => Route::DeviceAcks,
            ["_matrix", "push", "v1", "notify"] => Route::MatrixNotify,
            ["v1", "callbacks", _, "receipts"] => Route::Receipts { provider: s(2)? },
            ["v1", "callbacks", _, "upstream"] => Route::Upstream { provider: s(2)? },
            ["v1", "mock", _, "devices", _, "upstream"] => Route::MockUpstream {
                provider: s(2)?,
                cid: s(4)?,
            },
            ["v1", "mock", _, "devices", _, "inbox"] => Route::MockInbox {
                provider: s(2)?,
                cid: s(4)?,
            },
            _ => return Ok(None),
        };
        Ok(Some(route))
    }

    /// The low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::DeviceAcks => "/v1/device-acks",
            Route::AliasDevices { .. } => "/v1/apps/{app}/aliases/{alias}/devices",
            Route::Alias { .. } => "/v1/apps/{app}/aliases/{alias}",
            Route::AliasDevice { .. } => "/v1/apps/{app}/aliases/{alias}/devices/{provider}/{cid}",
            Route::Device { .. } => "/v1/apps/{app}/devices/{provider}/{cid}",
            Route::Messages { .. } => "/v1/apps/{app}/messages",
            Route::Message { .. } => "/v1/apps/{app}/messages/{message_id}",
            Route::Events { .. } => "/v1/apps/{app}/events",
            Route::Receipts { .. } => "/v1/callbacks/{provider}/receipts",
            Route::Upstream { .. } => "/v1/callbacks/{provider}/upstream",
            Route::MockUpstream { .. } => "/v1/mock/{provider}/devices/{cid}/upstream",
            Route::MockInbox { .. } => "/v1/mock/{provider}/devices/{cid}/inbox",
            Route::MatrixNotify => "/_matrix/push/v1/notify",
        }
    }

    fn allowed(&self) -> &'static str {
        match self {
            Route::AliasDevices { .. }
            | Route::Messages { .. }
            | Route::DeviceAcks
            | Route::MatrixNotify
            | Route::Receipts { .. }
            | Route::Upstream { .. }
            | Route::MockUpstream { .. } => "POST",
            Route::Alias { .. } => "GET, DELETE",
            Route::AliasDevice { .. } => "DELETE",
            _ => "GET",
        }
    }

    /// The app whose API key the route needs, if any.
    pub fn app(&self) -> Option<&str> {
        match self {
            Route::AliasDevices { app, .. }
            | Route::Alias { app, .. }
            | Route::AliasDevice { app, .. }
            | Route::Device { app, .. }
            | Route::Messages { app }
            | Route::Message { app, .. }
            | Route::Events { app } => Some(app),
            _ => None,
        }
    }
}

fn method_not_allowed(route: &Route) -> HttpResponse {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} accepts {}", route.label(), route.allowed()),
    )
    .into_response();
    if let Ok(v) = http::HeaderValue::from_str(route.allowed()) {
        response.headers_mut().insert(http::header::ALLOW, v);
    }
    response
}

/// Runs the handler for a matched route.
pub async fn dispatch(
    state: &Arc<ApiState>,
    route: Route,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let method = request.method().clone();
    if let Some(app) = route.app() {
        state.keys.check(app, request.headers())?;
    }
    let response = match (method, route) {
        (Method::GET, Route::Healthz) => ops::healthz(),
        (Method::GET, Route::Readyz) => ops::readyz(state),
        (Method::GET, Route::Metrics) => ops::metrics(state),
        (Method::GET, Route::OpenApi) => ops::openapi(),
        (Method::POST, Route::AliasDevices { app, alias }) => {
            aliases::bind(state, &app, &alias, request).await?
        }
        (Method::GET, Route::Alias { app, alias }) => aliases::get(state, &app, &alias).await?,
        (Method::DELETE, Route::Alias { app, alias }) => {
            aliases::unbind_all(state, &app, &alias).await?
        }
        (
            Method::DELETE,
            Route::AliasDevice {
                app,
                alias,
                provider,
                cid,
            },
        ) => aliases::unbind_one(state, &app, &alias, provider, cid).await?,
        (Method::GET, Route::Device { app, provider, cid }) => {
            aliases::device(state, &app, provider, cid).await?
        }
        (Method::POST, Route::Messages { app }) => messages::send(state, &app, request).await?,
        (Method::GET, Route::Message { app, id }) => messages::get(state, &app, &id).await?,
        (Method::GET, Route::Events { app }) => events::stream(state, &app, request).await?,
        (Method::POST, Route::DeviceAcks) => acks::post(state, request).await?,
        (Method::POST, Route::MatrixNotify) => matrix::notify(state, request).await?,
        (Method::POST, Route::Receipts { provider }) => {
            callbacks::receipts(state, &provider, request).await?
        }
        (Method::POST, Route::Upstream { provider }) => {
            callbacks::upstream(state, &provider, request).await?
        }
        (Method::GET, Route::MockInbox { provider, cid }) => mock::inbox(state, &provider, &cid)?,
        (Method::POST, Route::MockUpstream { provider, cid }) => {
            mock::upstream(state, &provider, &cid, request).await?
        }
        (_, route) => method_not_allowed(&route),
    };
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One route of each kind. The match below stops compiling when a kind is added, so
    /// it is added here too (and so checked against the document).
    fn every_route() -> Vec<Route> {
        let app = || "demo".to_string();
        let x = || "x".to_string();
        let all = vec![
            Route::Healthz,
            Route::Readyz,
            Route::Metrics,
            Route::OpenApi,
            Route::DeviceAcks,
            Route::AliasDevices {
                app: app(),
                alias: x(),
            },
            Route::Alias {
                app: app(),
                alias: x(),
            },
            Route::AliasDevice {
                app: app(),
                alias: x(),
                provider: x(),
                cid: x(),
            },
            Route::Device {
                app: app(),
                provider: x(),
                cid: x(),
            },
            Route::Messages { app: app() },
            Route::Message {
                app: app(),
                id: x(),
            },
            Route::Events { app: app() },
            Route::Receipts { provider: x() },
            Route::Upstream { provider: x() },
            Route::MockInbox {
                provider: x(),
                cid: x(),
            },
            Route::MockUpstream {
                provider: x(),
                cid: x(),
            },
            Route::MatrixNotify,
        ];
        for route in &all {
            match route {
                Route::Healthz
                | Route::Readyz
                | Route::Metrics
                | Route::OpenApi
                | Route::DeviceAcks
                | Route::AliasDevices { .. }
                | Route::Alias { .. }
                | Route::AliasDevice { .. }
                | Route::Device { .. }
                | Route::Messages { .. }
                | Route::Message { .. }
                | Route::Events { .. }
                | Route::Receipts { .. }
                | Route::Upstream { .. }
                | Route::MockInbox { .. }
                | Route::MockUpstream { .. }
                | Route::MatrixNotify => {}
            }
        }
        all
    }

    fn methods(allowed: &str) -> Vec<String> {
        let mut m: Vec<String> = allowed.split(", ").map(str::to_lowercase).collect();
        m.sort();
        m
    }

    #[test]
    fn the_openapi_document_has_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(ops::OPENAPI).expect("docs/openapi.json");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        let documented = |path: &str| -> Vec<String> {
            let mut m: Vec<String> = paths[path]
                .as_object()
                .map(|ops| {
                    ops.keys()
                        .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            m.sort();
            m
        };
        let routes = every_route();
        for route in &routes {
            let label = route.label();
            assert!(
                paths.contains_key(label),
                "{label} is routed but not in docs/openapi.json"
            );
            assert_eq!(
                documented(label),
                methods(route.allowed()),
                "methods of {label}"
            );
        }
        for path in paths.keys() {
            // The path with each parameter filled in routes to the route it documents.
            let concrete: String = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let route = Route::parse(&concrete).ok().flatten();
            assert_eq!(
                route.as_ref().map(Route::label),
                Some(path.as_str()),
                "{path} is in docs/openapi.json but not routed"
            );
        }
        assert_eq!(paths.len(), routes.len());
    }

    #[test]
    fn routes_match_and_decode() {
        assert_eq!(
            Route::parse("/v1/apps/demo/aliases/%E7%94%A8%E6%88%B7/devices")
                .ok()
                .flatten(),
            Some(Route::AliasDevices {
                app: "demo".into(),
                alias: "用户".into()
            })
        );
        assert_eq!(
            Route::parse("/v1/apps/demo/messages/").ok().flatten(),
            Some(Route::Message {
                app: "demo".into(),
                id: "".into()
            })
        );
        assert_eq!(Route::parse("/v1/apps/demo").ok().flatten(), None);
        assert_eq!(Route::parse("/nope").ok().flatten(), None);
        assert!(Route::parse("/v1/apps/demo/aliases/%FF/devices").is_err());
    }
}
