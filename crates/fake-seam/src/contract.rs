//! Seam's published API definition (`openapi/seam-openapi-subset.json`,
//! from `@seamapi/types` 1.721.0, unchanged) as a contract, checked two ways:
//!
//! - **As Seam checks a request** ([`Contract::refusals`]): the request body
//!   against the route's schema, as Seam's zod schemas do. Members the schema
//!   does not define are not refused (zod strips them).
//! - **Strictly** ([`Contract::check_request`], [`Contract::check_response`],
//!   [`Contract::check_event`]): the schema as above, and also every member
//!   the definition does not define, at any depth. This is what tests hold
//!   the fake's answers and events, and keysmith's requests, to: a member Seam
//!   does not define is a misreading of the docs, whoever sent it.
//!
//! The definition is OpenAPI 3.0; its schemas become JSON Schema 2020-12 by
//! three rewrites: `nullable: true` admits `null`; a boolean
//! `exclusiveMinimum`/`exclusiveMaximum` becomes the number it qualifies;
//! and `oneOf` becomes `anyOf`. Seam generates the definition from zod
//! schemas, whose unions take the first branch that matches: a `oneOf` of
//! `{type: string}` and `{type: string, format: date-time}` (`/events/list`'s
//! `between`) accepts a date, where JSON Schema's `oneOf` would refuse it
//! for matching both.
//! `$ref`s resolve within the document. Formats (`uuid`, `date-time`,
//! `email`, `uri`) are checked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

/// Seam's definition, as published.
const DEFINITION: &str = include_str!("../openapi/seam-openapi-subset.json");

/// One issue: where in the JSON (a JSON pointer, `""` for the root) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// The definition, ready to check JSON against.
pub struct Contract {
    /// The definition as published (for `$ref`s and member lists).
    raw: Value,
    /// `components` rewritten to JSON Schema.
    components: Value,
    validators: parking_lot::Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The schema of a route's request body or answer, by JSON pointer.
fn escape(route: &str) -> String {
    route.replace('~', "~0").replace('/', "~1")
}

impl Contract {
    /// Seam's definition (parsed once per process).
    pub fn seam() -> &'static Contract {
        static CONTRACT: OnceLock<Contract> = OnceLock::new();
        CONTRACT.get_or_init(|| {
            let raw: Value = serde_json::from_str(DEFINITION)
                .unwrap_or_else(|e| panic!("openapi/seam-openapi-subset.json: {e}"));
            let mut components = raw["components"].clone();
            to_json_schema(&mut components);
            Contract {
                raw,
                components,
                validators: parking_lot::Mutex::new(HashMap::new()),
            }
        })
    }

    /// The HTTP methods the definition lists for `route`, upper case
    /// (`["GET", "POST"]`); `None` for a route it does not define.
    pub fn methods(&self, route: &str) -> Option<Vec<String>> {
        let ops = self.raw["paths"].get(route)?.as_object()?;
        Some(ops.keys().map(|m| m.to_ascii_uppercase()).collect())
    }

    /// Pointer to the request body schema of `route` (its POST operation's:
    /// the other methods of a route take the same parameters).
    fn request_pointer(&self, route: &str) -> Option<String> {
        let pointer = format!(
            "/paths/{}/post/requestBody/content/application~1json/schema",
            escape(route)
        );
        self.raw.pointer(&pointer).map(|_| pointer)
    }

    /// Pointer to the schema of `route`'s 200 answer.
    fn response_pointer(&self, route: &str) -> Option<String> {
        let ops = self.raw["paths"].get(route)?.as_object()?;
        let method = if ops.contains_key("post") {
            "post"
        } else {
            ops.keys().next()?
        };
        let pointer = format!(
            "/paths/{}/{method}/responses/200/content/application~1json/schema",
            escape(route)
        );
        self.raw.pointer(&pointer).map(|_| pointer)
    }

    /// A validator for the schema at `pointer` of the definition.
    fn validator(&self, pointer: &str) -> Arc<jsonschema::Validator> {
        if let Some(v) = self.validators.lock().get(pointer) {
            return v.clone();
        }
        let mut target = self.raw.pointer(pointer).cloned().unwrap_or(Value::Null);
        to_json_schema(&mut target);
        // The target beside the components its `$ref`s name.
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.components,
            "$defs": { "target": target },
            "$ref": "#/$defs/target",
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("Seam's schema at {pointer} does not compile: {e}"));
        let validator = Arc::new(validator);
        self.validators
            .lock()
            .insert(pointer.to_string(), validator.clone());
        validator
    }

    /// What the schema at `pointer` refuses in `instance`.
    fn schema_issues(&self, pointer: &str, instance: &Value) -> Vec<Issue> {
        let mut out = Vec::new();
        for e in self.validator(pointer).iter_errors(instance) {
            issues_of(&e, &mut out);
        }
        out
    }

    /// Strict: the schema's issues and every member it does not define.
    fn strict_issues(&self, pointer: &str, instance: &Value) -> Vec<Issue> {
        let mut issues = self.schema_issues(pointer, instance);
        if let Some(schema) = self.raw.pointer(pointer) {
            self.undefined_members(&[schema], instance, "", &mut issues);
        }
        issues
    }

    /// What Seam refuses in a request body to `route`, as its schema says
    /// (members it does not define are ignored, as zod strips them). A route
    /// without a request schema takes anything.
    pub fn refusals(&self, route: &str, body: &Value) -> Vec<Issue> {
        match self.request_pointer(route) {
            Some(pointer) => self.schema_issues(&pointer, body),
            None => Vec::new(),
        }
    }

    /// A request body to `route`, strictly.
    pub fn check_request(&self, route: &str, body: &Value) -> Vec<Issue> {
        match self.request_pointer(route) {
            Some(pointer) => self.strict_issues(&pointer, body),
            None => vec![Issue {
                pointer: String::new(),
                message: format!("Seam's definition has no request schema for {route}"),
            }],
        }
    }

    /// A 200 answer of `route`, strictly.
    pub fn check_response(&self, route: &str, body: &Value) -> Vec<Issue> {
        match self.response_pointer(route) {
            Some(pointer) => self.strict_issues(&pointer, body),
            None => vec![Issue {
                pointer: String::new(),
                message: format!("Seam's definition has no answer schema for {route}"),
            }],
        }
    }

    /// An event (as `/events/list` lists it and webhooks deliver it), strictly.
    pub fn check_event(&self, event: &Value) -> Vec<Issue> {
        self.strict_issues("/components/schemas/event", event)
    }

    /// The schema a query-string parameter of `route` has, for reading GET
    /// requests: the member of that name in the request body schema (GET
    /// takes the same parameters, in the query string).
    pub fn parameter_schema(&self, route: &str, name: &str) -> Option<&Value> {
        let pointer = self.request_pointer(route)?;
        let schema = self.raw.pointer(&pointer)?;
        let mut found = None;
        self.each_member_schema(schema, &mut |member, s| {
            if member == name && found.is_none() {
                found = Some(s);
            }
        });
        found.map(|s| self.resolve(s))
    }

    /// Calls `f` with every member a schema (and its combinators) declares.
    fn each_member_schema<'a>(&'a self, schema: &'a Value, f: &mut dyn FnMut(&str, &'a Value)) {
        let schema = self.resolve(schema);
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, s) in props {
                f(k, s);
            }
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for part in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.each_member_schema(part, f);
            }
        }
    }

    /// Follows `$ref`s within the definition.
    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|p| self.raw.pointer(p))
            {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    /// Whether `branch` of a `oneOf`/`anyOf` is the one `instance` is: its
    /// required members are there and its enum members (discriminators such
    /// as `event_type`, `warning_code`) have one of their values.
    fn fits(&self, branch: &Value, instance: &Value) -> bool {
        let branch = self.resolve(branch);
        let Some(obj) = instance.as_object() else {
            return true;
        };
        let required_present = branch
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .all(|k| obj.contains_key(k));
        let enums_match = branch
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .all(
                |(k, s)| match (s.get("enum").and_then(Value::as_array), obj.get(k)) {
                    (Some(allowed), Some(v)) => allowed.contains(v),
                    _ => true,
                },
            );
        required_present && enums_match
    }

    /// Collects what `schema` says about the members of the object
    /// `instance`: declared members, schemas of extra members, and whether
    /// any member is allowed (a free-form object).
    fn collect_members<'a>(
        &'a self,
        schema: &'a Value,
        instance: &Value,
        declared: &mut BTreeMap<String, Vec<&'a Value>>,
        extra: &mut Vec<&'a Value>,
        open: &mut bool,
    ) {
        let schema = self.resolve(schema);
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, s) in props.into_iter().flatten() {
            declared.entry(k.clone()).or_default().push(s);
        }
        match schema.get("additionalProperties") {
            Some(Value::Bool(true)) => *open = true,
            Some(s @ Value::Object(_)) => extra.push(s),
            _ => {}
        }
        let mut combined = false;
        if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
            combined = true;
            for part in parts {
                self.collect_members(part, instance, declared, extra, open);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                combined = true;
                let fitting: Vec<&Value> =
                    branches.iter().filter(|b| self.fits(b, instance)).collect();
                // None fits: the schema check reports it; judge members by all.
                let chosen = if fitting.is_empty() {
                    branches.iter().collect()
                } else {
                    fitting
                };
                for b in chosen {
                    self.collect_members(b, instance, declared, extra, open);
                }
            }
        }
        // An object schema that names no member at all is free-form.
        if props.is_none() && !combined && schema.get("additionalProperties").is_none() {
            *open = true;
        }
    }

    /// The item schemas of array schemas (and their combinators).
    fn collect_items<'a>(&'a self, schema: &'a Value, out: &mut Vec<&'a Value>) {
        let schema = self.resolve(schema);
        if let Some(items) = schema.get("items") {
            out.push(items);
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for part in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.collect_items(part, out);
            }
        }
    }

    /// Every member of `instance`, at any depth, that `schemas` do not define.
    fn undefined_members(
        &self,
        schemas: &[&Value],
        instance: &Value,
        pointer: &str,
        out: &mut Vec<Issue>,
    ) {
        match instance {
            Value::Object(map) => {
                let mut declared = BTreeMap::new();
                let mut extra = Vec::new();
                let mut open = false;
                for s in schemas {
                    self.collect_members(s, instance, &mut declared, &mut extra, &mut open);
                }
                for (k, v) in map {
                    let at = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                    if let Some(sub) = declared.get(k) {
                        self.undefined_members(sub, v, &at, out);
                    } else if !extra.is_empty() {
                        self.undefined_members(&extra, v, &at, out);
                    } else if !open {
                        out.push(Issue {
                            pointer: at,
                            message: "not defined by Seam's API definition".into(),
                        });
                    }
                }
            }
            Value::Array(items) => {
                let mut item_schemas = Vec::new();
                for s in schemas {
                    self.collect_items(s, &mut item_schemas);
                }
                if item_schemas.is_empty() {
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    self.undefined_members(&item_schemas, item, &format!("{pointer}/{i}"), out);
                }
            }
            _ => {}
        }
    }
}

/// The issues of one validation error, worded as zod words them (what
/// Seam's `validation_errors` say), never quoting the value: it may be a
/// secret (a PIN `code`), and messages travel into clients' errors and logs.
/// A `oneOf`/`anyOf` that no branch matches is reported through the branch
/// the value meant (the one whose required members it has), so that
/// `{"user_identity_id": "x"}` reads "Invalid uuid", not "matches nothing".
fn issues_of(e: &jsonschema::ValidationError<'_>, out: &mut Vec<Issue>) {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let at = e.instance_path().as_str().to_string();
    let message = match e.kind() {
        K::OneOfNotValid { context } | K::AnyOf { context } => {
            let meant: Vec<&Vec<jsonschema::ValidationError<'static>>> = context
                .iter()
                .filter(|branch| {
                    !branch.iter().any(|b| {
                        matches!(b.kind(), K::Required { .. }) && b.instance_path().as_str() == at
                    })
                })
                .collect();
            if let [branch] = meant.as_slice() {
                for b in branch.iter() {
                    issues_of(b, out);
                }
                return;
            }
            "Invalid input".to_string()
        }
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            out.push(Issue {
                pointer: format!("{at}/{}", name.replace('~', "~0").replace('/', "~1")),
                message: "Required".into(),
            });
            return;
        }
        K::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                // zod names a nullable string's type "string".
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| t.to_string())
                    .filter(|t| t != "null")
                    .collect::<Vec<_>>()
                    .join(" | "),
            };
            format!("Expected {expected}, received {}", type_name(e.instance()))
        }
        K::Enum { options } => {
            let expected = options
                .as_array()
                .map(|o| {
                    o.iter()
                        .map(|v| format!("'{}'", v.as_str().unwrap_or("null")))
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .unwrap_or_default();
            format!("Invalid enum value. Expected {expected}")
        }
        K::Format { format } => match format.as_str() {
            "date-time" => "Invalid datetime".into(),
            other => format!("Invalid {other}"),
        },
        K::MinLength { limit } => format!("String must contain at least {limit} character(s)"),
        K::MaxLength { limit } => format!("String must contain at most {limit} character(s)"),
        K::MinItems { limit } => format!("Array must contain at least {limit} element(s)"),
        K::MaxItems { limit } => format!("Array must contain at most {limit} element(s)"),
        K::Minimum { limit } => format!("Number must be greater than or equal to {limit}"),
        K::ExclusiveMinimum { limit } => format!("Number must be greater than {limit}"),
        K::Maximum { limit } => format!("Number must be less than or equal to {limit}"),
        K::Pattern { .. } => "Invalid".into(),
        _ => format!("Invalid input ({})", e.kind().keyword()),
    };
    out.push(Issue {
        pointer: at,
        message,
    });
}

/// zod's name of a JSON value's type.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Rewrites OpenAPI 3.0 schema keywords to JSON Schema 2020-12, in place.
fn to_json_schema(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(to_json_schema),
        Value::Object(m) => {
            for (_, child) in m.iter_mut() {
                to_json_schema(child);
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if let Some(Value::Bool(exclusive)) = m.get(flag).cloned() {
                    m.remove(flag);
                    if exclusive {
                        if let Some(limit) = m.remove(bound) {
                            m.insert(flag.to_string(), limit);
                        }
                    }
                }
            }
            if let Some(branches) = m.remove("oneOf") {
                m.insert("anyOf".into(), branches);
            }
            // Keywords only: a member named so is an object, not a flag.
            if let Some(Value::Bool(nullable)) = m.get("nullable").cloned() {
                m.remove("nullable");
                if nullable {
                    admit_null(m);
                }
            }
        }
        _ => {}
    }
}

/// Makes a schema also accept `null`.
fn admit_null(m: &mut Map<String, Value>) {
    if let Some(Value::Array(allowed)) = m.get_mut("enum") {
        if !allowed.contains(&Value::Null) {
            allowed.push(Value::Null);
        }
    }
    match m.get("type").cloned() {
        Some(Value::String(t)) => {
            m.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(mut ts)) => {
            if !ts.contains(&json!("null")) {
                ts.push(json!("null"));
            }
            m.insert("type".into(), Value::Array(ts));
        }
        _ => {
            let inner = Value::Object(std::mem::take(m));
            m.insert("anyOf".into(), json!([inner, { "type": "null" }]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_and_boolean_exclusive_bounds_become_json_schema() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "ends_at": { "type": "string", "nullable": true },
                "limit": { "type": "integer", "minimum": 0, "exclusiveMinimum": true },
                "mode": { "type": "string", "enum": ["a"], "nullable": true },
            },
        });
        to_json_schema(&mut s);
        assert_eq!(
            s["properties"]["ends_at"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(s["properties"]["limit"]["exclusiveMinimum"], 0);
        assert!(s["properties"]["limit"].get("minimum").is_none());
        assert_eq!(s["properties"]["mode"]["enum"], json!(["a", null]));
    }

    #[test]
    fn an_undefined_member_a_missing_required_one_and_a_foreign_enum_value_are_issues() {
        let c = Contract::seam();
        let ok = json!({
            "event_id": "00000008-0000-4000-8000-000000000001",
            "event_type": "access_method.issued",
            "workspace_id": "00000011-0000-4000-8000-000000000001",
            "created_at": "2030-01-01T00:00:00.000Z",
            "occurred_at": "2030-01-01T00:00:00.000Z",
            "access_method_id": "00000006-0000-4000-8000-000000000001",
            "access_grant_ids": ["00000005-0000-4000-8000-000000000001"],
            "access_grant_keys": ["k1"],
        });
        assert_eq!(c.check_event(&ok), vec![]);

        let mut singular = ok.clone();
        singular["access_grant_id"] = json!("00000005-0000-4000-8000-000000000001");
        let issues = c.check_event(&singular);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].pointer, "/access_grant_id");

        let mut missing = ok.clone();
        missing.as_object_mut().unwrap().remove("access_grant_ids");
        assert!(!c.check_event(&missing).is_empty());

        let mut created = ok.clone();
        created["event_type"] = json!("access_method.created");
        assert!(!c.check_event(&created).is_empty());

        let mut not_uuid = ok;
        not_uuid["workspace_id"] = json!("ws_demo");
        assert!(!c.check_event(&not_uuid).is_empty());
    }

    #[test]
    fn requests_are_refused_as_seam_refuses_them_and_checked_strictly() {
        let c = Contract::seam();
        let body = json!({
            "user_identity_id": "00000004-0000-4000-8000-000000000001",
            "acs_entrance_ids": ["00000002-0000-4000-8000-000000000001"],
            "requested_access_methods": [{ "mode": "code", "code": "1234" }],
            "starts_at": "2030-01-01T00:00:00Z",
            "reservation_key": "stay-1",
        });
        assert_eq!(c.refusals("/access_grants/create", &body), vec![]);
        assert_eq!(c.check_request("/access_grants/create", &body), vec![]);

        let mut unknown = body.clone();
        unknown["holder"] = json!("x");
        // Seam ignores what it does not define; the strict check does not.
        assert_eq!(c.refusals("/access_grants/create", &unknown), vec![]);
        assert_eq!(c.check_request("/access_grants/create", &unknown).len(), 1);

        let mut bad_mode = body;
        bad_mode["requested_access_methods"][0]["mode"] = json!("pin");
        let issues = c.refusals("/access_grants/create", &bad_mode);
        assert_eq!(issues[0].pointer, "/requested_access_methods/0/mode");
    }

    #[test]
    fn query_parameters_take_the_body_schemas_member_types() {
        let c = Contract::seam();
        let limit = c.parameter_schema("/acs/encoders/list", "limit").unwrap();
        assert_eq!(limit["type"], "number");
        let ids = c
            .parameter_schema("/acs/encoders/list", "acs_encoder_ids")
            .unwrap();
        assert_eq!(ids["type"], "array");
        assert_eq!(
            c.methods("/access_grants/update"),
            Some(vec!["PATCH".into(), "POST".into()])
        );
    }
}
