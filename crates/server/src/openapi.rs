//! The OpenAPI 3.1 document, generated from the handlers and types above,
//! served at `/openapi.json` and committed as `openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{connection, deliveries, endpoints, event_types, health, keys, messages, model, portal};
use crate::problem::Problem;

mod contract;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `outhook token new`: `--admin` sees everything, `--owner X` only X's resources",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Outhook", description = "Webhook endpoints, messages and deliveries. Errors are RFC 9457 problem details whose `type` is one of `urn:outhook:problem:*`."),
    paths(
        endpoints::create, endpoints::list, endpoints::read, endpoints::update, endpoints::delete,
        endpoints::secret, endpoints::rotate, deliveries::recover, deliveries::stats,
        connection::read, connection::update,
        event_types::list, event_types::read, event_types::put, event_types::delete,
        event_types::catalog, event_types::apply, event_types::update,
        messages::create, messages::list, messages::read, messages::replay,
        deliveries::list, deliveries::read, deliveries::retry,
        portal::create,
        keys::jwks, keys::list, keys::pem,
        health::live, health::ready, health::metrics,
    ),
    components(schemas(
        Problem, crate::problem::ProblemError, model::EndpointIn, model::EndpointPatchIn, model::EndpointOut, model::EndpointCreatedOut,
        model::EndpointPage, model::SecretOut, model::SecretsOut, model::RotateIn, model::RotateOut,
        model::MessageIn, model::MessageOut, model::MessageCreatedOut, model::MessageDetailOut, model::MessagePage,
        model::ReplayIn, model::ReplayOut, model::DeliveryOut, model::AttemptOut, model::DeliveryDetailOut,
        model::DeliveryPage, model::RecoverIn, model::RequeuedOut, model::StatsBucket, model::StatsOut,
        model::HealthOut, model::PortalLinkIn, model::PortalLinkOut,
        event_types::EventTypeIn, event_types::EventTypeOut, event_types::EventTypeList, event_types::CatalogOut,
        event_types::CatalogEntryIn, event_types::CatalogIn, event_types::AppliedOut, event_types::CatalogPatchIn,
        connection::ConnectionPatchIn, connection::AuthIn, connection::ConnectionOut, connection::AuthOut,
        connection::CertificateOut, connection::TokenOut,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "endpoints", description = "Where webhooks go"),
        (name = "event types", description = "The catalog of events a provider sends, for customers to pick from"),
        (name = "messages", description = "Events to send"),
        (name = "deliveries", description = "One message to one endpoint, with its attempts"),
        (name = "portal", description = "Links that open the delivery portal for one owner"),
        (name = "public keys", description = "The provider's RSA keys, without a token"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

/// The OpenAPI document: the one derived from the handlers and types,
/// with the constraints and links that utoipa cannot derive (see
/// `openapi/contract.rs`).
pub fn openapi() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    contract::refine(&mut value);
    value
}

/// The document as pretty JSON, as committed in `openapi.json`.
pub fn openapi_json() -> String {
    let mut json = serde_json::to_string_pretty(&openapi()).unwrap_or_default();
    json.push('\n');
    json
}
