//! What the derived document cannot say by itself: the rules on a request's
//! form that the administration layer checks ([`crate::admin::rules`]), a
//! scheme's secret and settings, which of two fields a message needs, and
//! the links from a created resource to its operations. Applied to the
//! document as JSON, after utoipa made it.

use outhook_signer::{KeyForm, KeyKind, Scheme};
use serde_json::{Value, json};

use crate::admin::rules;

/// Adds the constraints and links to the document.
pub fn refine(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    endpoint_in(&mut schemas["EndpointIn"]);
    endpoint_patch_in(&mut schemas["EndpointPatchIn"]);
    message_in(&mut schemas["MessageIn"]);
    connection_patch_in(schemas);
    owner_required(&mut schemas["PortalLinkIn"]);
    for name in ["EventTypeIn", "CatalogEntryIn"] {
        event_type_in(&mut schemas[name]);
    }
    // Any JSON whose keys and strings hold no NUL (jsonb cannot store it).
    schemas["JsonWithoutNul"] = json!({
        "description": "Any JSON value whose keys and strings hold no U+0000.",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            {"type": "string", "pattern": rules::TEXT_PATTERN},
            {"type": "array", "items": {"$ref": "#/components/schemas/JsonWithoutNul"}},
            {"type": "object", "propertyNames": {"pattern": rules::TEXT_PATTERN},
             "additionalProperties": {"$ref": "#/components/schemas/JsonWithoutNul"}},
        ],
    });
    // Strict mode needs the file to list event types.
    schemas["CatalogIn"]["anyOf"] = json!([
        {"properties": {"strict": {"enum": [false, null]}}},
        {"properties": {"event_types": {"minItems": 1}}},
    ]);
    for name in ["MessageOut", "MessageDetailOut"] {
        if schemas[name]["properties"].get("payload").is_some() {
            set(&mut schemas[name], "payload", json!({"type": ["object", "array"]}));
        }
    }
    name_param(doc);
    links(doc);
}

fn name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": rules::NAME_MAX, "pattern": rules::NAME_PATTERN})
}

fn text(nullable: bool) -> Value {
    json!({"type": if nullable { json!(["string", "null"]) } else { json!("string") },
           "maxLength": rules::TEXT_MAX, "pattern": rules::TEXT_PATTERN})
}

fn event_type_name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": rules::EVENT_TYPE_PATTERN})
}

fn header_name() -> Value {
    json!({"type": "string", "pattern": rules::HEADER_NAME_PATTERN})
}

fn headers(nullable: bool) -> Value {
    json!({
        "type": if nullable { json!(["object", "null"]) } else { json!("object") },
        "propertyNames": header_name(),
        "additionalProperties": {"type": "string", "pattern": rules::HEADER_VALUE_PATTERN},
    })
}

/// Sets `field`'s schema, keeping its description.
fn set(object: &mut Value, field: &str, mut schema: Value) {
    let property = &mut object["properties"][field];
    if let Some(description) = property.get("description").cloned() {
        schema["description"] = description;
    }
    *property = schema;
}

fn nullable(mut schema: Value) -> Value {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        schema["type"] = json!([t, "null"]);
    }
    schema
}

/// Fields an endpoint's creation and its update share.
fn endpoint_fields(object: &mut Value, update: bool) {
    let url = json!({"type": "string", "pattern": rules::url_pattern()});
    set(object, "url", if update { nullable(url) } else { url });
    let types = json!({"type": "array", "items": event_type_name()});
    set(object, "event_types", if update { nullable(types) } else { types });
    set(object, "headers", headers(update));
    set(object, "description", text(update));
    set(
        object,
        "message_id_header",
        json!({"type": ["string", "null"], "pattern": format!("^({})?$", rules::HEADER_NAME_PATTERN.trim_matches(['^', '$']))}),
    );
    set(
        object,
        "filter",
        json!({"type": ["string", "null"], "maxLength": 4096, "pattern": rules::filter_pattern()}),
    );
}

/// A proxy's URL, `worker` or `none`: the forms the server takes.
fn proxy_pattern() -> String {
    let endpoint = rules::url_pattern();
    // The endpoint URL's host and port, without a path or query.
    let authority = endpoint
        .trim_start_matches("^https?://")
        .split("(/[")
        .next()
        .unwrap_or_default()
        .to_owned();
    format!("^(worker|none|(https?|socks5h?)://{authority}/?)$")
}

/// The connection settings' texts: no NUL, header-safe tokens, a Basic
/// username without `:`, the proxy's and the token endpoint's URL forms;
/// each credential's fields closed.
fn connection_patch_in(schemas: &mut Value) {
    let object = &mut schemas["ConnectionPatchIn"];
    set(
        object,
        "proxy",
        json!({"type": ["string", "null"], "maxLength": 2048, "pattern": proxy_pattern()}),
    );
    for (field, max) in [
        ("client_certificate", 65536),
        ("client_key", 65536),
        ("ca_certificates", 65536),
        ("pinned_certificates", 65536),
    ] {
        set(
            object,
            field,
            json!({"type": ["string", "null"], "maxLength": max, "pattern": rules::TEXT_PATTERN}),
        );
    }
    let Some(branches) = schemas["AuthIn"]["oneOf"].as_array_mut() else {
        return;
    };
    for branch in branches {
        branch["additionalProperties"] = json!(false);
        let kind = branch["properties"]["type"]["enum"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "basic" => {
                set(
                    branch,
                    "username",
                    json!({"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"^[^\u0000:]+$"}),
                );
                set(
                    branch,
                    "password",
                    json!({"type": ["string", "null"], "maxLength": 4096, "pattern": rules::TEXT_PATTERN}),
                );
            }
            "bearer" => set(
                branch,
                "token",
                json!({"type": ["string", "null"], "minLength": 1, "maxLength": 8192, "pattern": rules::HEADER_VALUE_PATTERN}),
            ),
            "oauth2" => {
                set(
                    branch,
                    "token_url",
                    json!({"type": "string", "maxLength": 2048, "pattern": rules::url_pattern()}),
                );
                set(
                    branch,
                    "client_id",
                    json!({"type": "string", "minLength": 1, "maxLength": 512, "pattern": r"^[^\u0000]+$"}),
                );
                set(
                    branch,
                    "client_secret",
                    json!({"type": ["string", "null"], "minLength": 1, "maxLength": 4096, "pattern": r"^[^\u0000]+$"}),
                );
                for field in ["scope", "audience"] {
                    set(
                        branch,
                        field,
                        json!({"type": ["string", "null"], "maxLength": 1024, "pattern": rules::TEXT_PATTERN}),
                    );
                }
            }
            _ => {}
        }
    }
}

/// The settings of scheme `hmac`, and the combinations that sign.
fn hmac_settings() -> Value {
    let optional_header = json!({"type": ["string", "null"], "pattern": rules::HEADER_NAME_PATTERN});
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["header"],
        "properties": {
            "header": header_name(),
            "layout": {"enum": ["prefixed", "versioned", "stripe"]},
            "prefix": {"type": "string", "pattern": rules::HEADER_VALUE_PATTERN},
            "encoding": {"enum": ["hex", "base64"]},
            "content": {"enum": ["body", "id.timestamp.body", "timestamp.body"]},
            "body": {"enum": ["raw", "js"]},
            "key": {"enum": ["utf8", "whsec"]},
            "id_header": optional_header,
            "timestamp_header": optional_header,
            "tolerance_seconds": {"type": ["integer", "null"], "minimum": 0,
                                  "maximum": outhook_signer::MAX_TOLERANCE_SECONDS},
        },
        // The body alone, in any layout but `stripe`; a timestamp from the
        // `stripe` layout or a header; and the id, from a header.
        "anyOf": [
            {"properties": {"content": {"const": "body"}, "layout": {"enum": ["prefixed", "versioned"]}}},
            {"required": ["content", "layout"],
             "properties": {"content": {"const": "timestamp.body"}, "layout": {"const": "stripe"}}},
            {"required": ["content", "timestamp_header"],
             "properties": {"content": {"const": "timestamp.body"}, "timestamp_header": {"type": "string"}}},
            {"required": ["content", "id_header", "layout"],
             "properties": {"content": {"const": "id.timestamp.body"}, "id_header": {"type": "string"},
                            "layout": {"const": "stripe"}}},
            {"required": ["content", "id_header", "timestamp_header"],
             "properties": {"content": {"const": "id.timestamp.body"}, "id_header": {"type": "string"},
                            "timestamp_header": {"type": "string"}}},
        ],
    })
}

fn secret_for(form: KeyForm) -> Value {
    match form {
        KeyForm::WhsecBase64 => json!({"type": ["string", "null"], "pattern": rules::whsec_pattern()}),
        _ => json!({"type": ["string", "null"], "minLength": 1}),
    }
}

/// One branch per scheme: what its secret looks like, and that only
/// `hmac` takes settings.
fn scheme_branches() -> Vec<Value> {
    let none = json!({"type": "null"});
    let mut branches: Vec<Value> = Scheme::NAMES
        .iter()
        .filter_map(|name| {
            let scheme = Scheme::by_name(name).ok()?;
            let secret = match (&scheme, scheme.key_kind()) {
                (_, KeyKind::Rsa) => none.clone(),
                (_, KeyKind::Ed25519) => json!({"type": ["string", "null"], "pattern": rules::WHSK_PATTERN}),
                (Scheme::Hmac(h), _) => secret_for(h.key_form()),
                _ => return None,
            };
            Some(json!({"properties": {"scheme": {"const": name}, "secret": secret, "scheme_settings": none}}))
        })
        .collect();
    let settings_with = |key: Value, form: KeyForm| {
        let mut settings = hmac_settings();
        settings["properties"]["key"] = key;
        json!({"required": ["scheme_settings"],
               "properties": {"scheme": {"const": "hmac"}, "scheme_settings": settings, "secret": secret_for(form)}})
    };
    branches.push(settings_with(json!({"const": "utf8"}), KeyForm::Utf8));
    let mut whsec = settings_with(json!({"const": "whsec"}), KeyForm::WhsecBase64);
    whsec["properties"]["scheme_settings"]["required"] = json!(["header", "key"]);
    branches.push(whsec);
    branches
}

fn endpoint_in(object: &mut Value) {
    owner_required(object);
    endpoint_fields(object, false);
    let mut names: Vec<&str> = Scheme::NAMES.to_vec();
    names.push("hmac");
    set(object, "scheme", json!({"type": "string", "enum": names}));
    set(object, "scheme_settings", json!({"type": ["object", "null"]}));
    set(object, "signing_key", text(true));
    let base = object.take();
    *object = json!({"allOf": [base, {"oneOf": scheme_branches()}, burst_needs_rate(false)]});
}

/// A burst (above 0) needs a rate limit: given with it, or for an update,
/// not lifted by it (an update's burst for an endpoint without a rate is a
/// conflict with its state, 409).
fn burst_needs_rate(update: bool) -> Value {
    let rate = if update {
        json!({"anyOf": [{"type": "null"}, {"exclusiveMinimum": 0}]})
    } else {
        json!({"type": "number", "exclusiveMinimum": 0})
    };
    let mut with_rate = json!({"properties": {"rate_limit": rate}});
    if !update {
        with_rate["required"] = json!(["rate_limit"]);
    }
    json!({"anyOf": [{"properties": {"rate_limit_burst": {"enum": [0, null]}}}, with_rate]})
}

fn endpoint_patch_in(object: &mut Value) {
    object["anyOf"] = burst_needs_rate(true)["anyOf"].take();
    endpoint_fields(object, true);
    set(object, "disabled_reason", text(true));
    set(object, "scheme_settings", nullable(hmac_settings()));
}

fn owner_required(object: &mut Value) {
    set(object, "owner", name());
    if let Some(required) = object["required"].as_array_mut() {
        required.insert(0, json!("owner"));
    } else {
        object["required"] = json!(["owner"]);
    }
}

fn message_in(object: &mut Value) {
    set(object, "event_type", event_type_name());
    set(object, "owner", nullable(name()));
    set(object, "event_id", nullable(name()));
    set(object, "payload", json!({"type": ["object", "array"]}));
    // Fan out to an owner, or send to one endpoint: one of the two.
    object["oneOf"] = json!([
        {"required": ["owner"], "properties": {"owner": {"type": "string"}, "endpoint_id": {"type": "null"}}},
        {"required": ["endpoint_id"], "properties": {"endpoint_id": {"type": "string"}, "owner": {"type": "null"}}},
    ]);
}

fn event_type_in(object: &mut Value) {
    if object["properties"].get("name").is_some() {
        set(object, "name", event_type_name());
    }
    set(
        object,
        "description",
        json!({"type": "string", "maxLength": 2000, "pattern": rules::TEXT_PATTERN}),
    );
    set(
        object,
        "group",
        json!({"type": "string", "maxLength": 100, "pattern": rules::GROUP_PATTERN}),
    );
    set(
        object,
        "schema",
        json!({"type": ["object", "null"], "propertyNames": {"pattern": rules::TEXT_PATTERN},
               "additionalProperties": {"$ref": "#/components/schemas/JsonWithoutNul"}}),
    );
    set(
        object,
        "examples",
        json!({"type": "array", "items": {"type": ["object", "array"]}, "maxItems": 20}),
    );
    // Validation needs a schema to validate against.
    object["anyOf"] = json!([
        {"properties": {"validate": {"const": false}}},
        {"required": ["schema"], "properties": {"schema": {"type": "object"}}},
    ]);
}

/// The event type name in `/v1/event-types/{name}` follows the naming rule.
fn name_param(doc: &mut Value) {
    let Some(item) = doc["paths"].get_mut("/v1/event-types/{name}") else {
        return;
    };
    let Some(operations) = item.as_object_mut() else {
        return;
    };
    for operation in operations.values_mut() {
        let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        for parameter in parameters.iter_mut().filter(|p| p["name"] == "name") {
            parameter["schema"] = event_type_name();
        }
    }
}

/// Links from a created endpoint, message or delivery to what can be done
/// with it next, for clients and for stateful testing.
fn links(doc: &mut Value) {
    let endpoint = |op: &str| json!({"operationId": op, "parameters": {"id": "$response.body#/id"}});
    let endpoint_links = json!({
        "GetEndpoint": endpoint("endpoint_get"),
        "UpdateEndpoint": endpoint("endpoint_update"),
        "DeleteEndpoint": endpoint("endpoint_delete"),
        "GetEndpointSecret": endpoint("endpoint_secret_get"),
        "RotateEndpointSecret": endpoint("endpoint_secret_rotate"),
        "GetEndpointStats": endpoint("endpoint_stats"),
        "RecoverEndpoint": endpoint("endpoint_recover"),
        "ListEndpointDeliveries": {"operationId": "delivery_list", "parameters": {"endpoint_id": "$response.body#/id"}},
    });
    let message_links = json!({
        "GetMessage": {"operationId": "message_get", "parameters": {"id": "$response.body#/id"}},
    });
    let delivery_links = json!({
        "RetryDelivery": {"operationId": "delivery_retry", "parameters": {"id": "$response.body#/id"}},
    });
    add_links(doc, "/v1/endpoints", "post", "201", endpoint_links.clone());
    add_links(doc, "/v1/endpoints/{id}", "get", "200", endpoint_links.clone());
    add_links(doc, "/v1/endpoints/{id}", "patch", "200", endpoint_links);
    add_links(doc, "/v1/messages", "post", "201", message_links.clone());
    add_links(doc, "/v1/messages", "post", "200", message_links);
    add_links(doc, "/v1/deliveries/{id}", "get", "200", delivery_links);
    add_links(
        doc,
        "/v1/event-types/{name}",
        "put",
        "200",
        json!({
            "GetEventType": {"operationId": "event_type_get", "parameters": {"name": "$request.path.name"}},
            "DeleteEventType": {"operationId": "event_type_delete", "parameters": {"name": "$request.path.name"}},
        }),
    );
    add_links(
        doc,
        "/v1/public-keys",
        "get",
        "200",
        json!({"GetPublicKey": {"operationId": "public_key_pem", "parameters": {"key": "$response.body#/keys/0/kid"}}}),
    );
}

fn add_links(doc: &mut Value, path: &str, method: &str, status: &str, links: Value) {
    let Some(response) = doc["paths"]
        .get_mut(path)
        .and_then(|p| p.get_mut(method))
        .and_then(|o| o.get_mut("responses"))
        .and_then(|r| r.get_mut(status))
    else {
        return;
    };
    response["links"] = links;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refined() -> Value {
        crate::openapi::openapi()
    }

    #[test]
    fn every_link_names_an_operation_of_the_document() {
        let doc = refined();
        let ids: Vec<String> = doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
            .filter_map(Value::as_object)
            .flat_map(|o| o.values())
            .filter_map(|o| o["operationId"].as_str().map(str::to_owned))
            .collect();
        let mut seen = 0;
        for item in doc["paths"].as_object().into_iter().flat_map(|p| p.values()) {
            for operation in item.as_object().into_iter().flat_map(|o| o.values()) {
                for response in operation["responses"].as_object().into_iter().flat_map(|r| r.values()) {
                    for link in response["links"].as_object().into_iter().flat_map(|l| l.values()) {
                        let target = link["operationId"].as_str().unwrap_or_default();
                        assert!(ids.iter().any(|id| id == target), "no operation {target}");
                        seen += 1;
                    }
                }
            }
        }
        assert!(seen >= 10, "only {seen} links");
    }

    #[test]
    fn every_scheme_has_a_branch_and_hmac_two() {
        let branches = scheme_branches();
        assert_eq!(branches.len(), Scheme::NAMES.len() + 2);
        for name in Scheme::NAMES {
            assert!(
                branches.iter().any(|b| b["properties"]["scheme"]["const"] == *name),
                "{name}"
            );
        }
    }
}
