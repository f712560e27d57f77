//! `GET /v1/openapi.json`: the API described as an OpenAPI 3.1 document,
//! generated from the handlers' annotations and the types of `cairn_api`,
//! so the description cannot drift from what the node answers. Refusals
//! every route can give (another origin, a `Host` that is not this API, a
//! missing token, an internal failure) are added to each operation here
//! rather than written on each handler.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr};
use utoipa::{Modify, OpenApi};

use cairn_api as api;

/// Raw bytes (a blob, a transaction's canonical encoding).
pub(super) struct Octets;

impl utoipa::PartialSchema for Octets {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Octets {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn node API",
        description = "A Cairn node's HTTP API: the ledger's state and transactions, and the \
            market's blobs and jobs. Routes marked with the token need `Authorization: Bearer \
            <token>`, the token being the hex in the node's `api.token` file. Every body is JSON \
            unless said otherwise; every refusal is an `ErrorBody` that says what was wrong.",
    ),
    paths(
        super::status,
        super::account,
        super::challenges,
        super::escrow,
        super::block,
        super::events::block_events,
        super::submit,
        super::outcome,
        super::market_stats,
        super::put_blob,
        super::get_blob,
        super::submit_job,
        super::list_jobs,
        super::job_status,
        super::events::job_events,
        super::job_results,
        super::cancel_job,
        super::add_tasks,
        super::end_stream,
        super::judge_job,
        super::providers,
        super::prices,
        super::metrics::metrics,
    ),
    components(schemas(api::ErrorBody)),
    modifiers(&Refusals),
    tags(
        (name = "ledger", description = "The chain's state and transactions: open to any caller"),
        (name = "market", description = "Blobs, providers and prices"),
        (name = "jobs", description = "The node's jobs"),
        (name = "node", description = "The node itself"),
    )
)]
pub(super) struct ApiDoc;

/// Adds the token's scheme, and the refusals any route can give.
struct Refusals;

impl Modify for Refusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The hex in the node's api.token file"))
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_refusals(operation);
            }
        }
    }
}

fn add_refusals(operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut refusals = vec![
        ("403", "A request from another origin (a web page)"),
        ("421", "A Host that does not name this API (DNS rebinding)"),
        (
            "500",
            "The node failed; its log says why, the answer does not",
        ),
    ];
    if secured {
        refusals.push(("401", "No token, or the wrong one"));
    }
    for (status, description) in refusals {
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build();
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert(RefOr::T(response));
    }
}

/// The document, as `GET /v1/openapi.json` serves it.
pub(super) async fn document() -> axum::Json<&'static utoipa::openapi::OpenApi> {
    // Built once: anyone may ask for it, and building it walks every
    // schema.
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    axum::Json(DOCUMENT.get_or_init(ApiDoc::openapi))
}
